"""``hvps export``: the bundle's networks as TorchScript or ONNX, each checked against the eager network.

Example::

    hvps export --model model.hvps --format onnx --out exported/ --image-size 384 640 --sample street.mp4

Writes ``semantic.onnx`` and ``mots_frame.onnx`` (or ``.pt`` TorchScript files) and
``export.json`` (input size, normalisation, outputs, the check's largest errors). Which exporter
serves which network, and why, is in :mod:`hvps_lightning.inference.export`. The command fails
(exit 2, nothing left under the final names) if an exported network's outputs differ from the
eager network's beyond the tolerance.
"""

from __future__ import annotations

from jsonargparse import ArgumentParser, Namespace


def build_parser() -> ArgumentParser:
    """The ``hvps export`` argument parser."""
    parser = ArgumentParser(
        description="Export the semantic network and the MOTS network's per-frame forward of a model "
        "bundle to TorchScript or ONNX, and check the exported outputs against the eager network's."
    )
    parser.add_argument(
        "--model", type=str, required=True, help="a model bundle (hvps bundle), or wandb-artifact://..."
    )
    parser.add_argument("--format", type=str, required=True, help="onnx or torchscript")
    parser.add_argument("--out", type=str, required=True, help="output folder")
    parser.add_argument(
        "--image-size",
        type=int,
        nargs=2,
        default=None,
        help="HEIGHT WIDTH of the exported inputs (default: the networks' training size)",
    )
    parser.add_argument(
        "--sample",
        type=str | None,
        default=None,
        help="video, folder or glob whose first frames the check runs on (default: fixed random frames)",
    )
    parser.add_argument("--atol", type=float, default=1e-3, help="absolute tolerance of the check")
    parser.add_argument("--rtol", type=float, default=1e-3, help="relative tolerance of the check")
    return parser


def run(cfg: Namespace) -> int:
    """Export, check, print the largest differences."""
    from hvps_lightning.errors import HVPSError
    from hvps_lightning.inference.export import EXPORT_FORMATS, export_model
    from hvps_lightning.inference.model import InferenceModel

    if cfg.format not in EXPORT_FORMATS:
        raise HVPSError(f"--format {cfg.format}: expected one of {', '.join(EXPORT_FORMATS)}")
    from hvps_lightning.wandb_io import resolve_path

    model = InferenceModel.load(resolve_path(cfg.model, "bundle", "--model"))
    size = tuple(cfg.image_size) if cfg.image_size is not None else None
    report = export_model(model, cfg.out, cfg.format, size, cfg.sample, cfg.atol, cfg.rtol)
    for name, check in report["check"].items():
        worst = ", ".join(f"{k} {v:.2g}" for k, v in check["max_abs_error"].items())
        path = f"{cfg.out}/{report['files'][name]}"
        print(f"hvps export: {path}: matches the eager network (max |diff|: {worst})")
    return 0
