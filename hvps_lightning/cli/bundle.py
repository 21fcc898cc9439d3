r"""``hvps bundle``: two trained checkpoints -> one model file that ``hvps infer`` and ``Pipeline`` run.

Example::

    hvps bundle --mots-checkpoint runs/mot_step/mots/checkpoints/*/last.ckpt \\
        --semantic-checkpoint runs/mot_step/semantic/checkpoints/*/last.ckpt \\
        --tracker-config tracker/default --out model.hvps

The bundle (:mod:`hvps_lightning.formats.bundle`) holds both networks' weights (safetensors, or
``torch.save`` state dicts read with ``weights_only=True``), their constructor arguments and
inference settings, the dataset spec, the tracker configuration, the fusion rule and a model
card; loading it needs neither Lightning, the checkpoints nor the dataset.
"""

from __future__ import annotations

from pathlib import Path

from jsonargparse import ArgumentParser, Namespace

FUSION_RULES = ("crowd", "void", "stuff")


def build_parser() -> ArgumentParser:
    """The ``hvps bundle`` argument parser."""
    parser = ArgumentParser(
        description="Write both trained networks, the dataset spec, the tracker configuration, the fusion "
        "rule and a model card into one file for `hvps infer --model` and `Pipeline.from_bundle`."
    )
    parser.add_argument(
        "--mots-checkpoint",
        type=str,
        required=True,
        help="MOTSModule checkpoint (hvps fit), or wandb-artifact://...",
    )
    parser.add_argument(
        "--semantic-checkpoint", type=str, required=True, help="SemanticModule checkpoint of the same dataset"
    )
    parser.add_argument(
        "--tracker-config", type=str | None, default=None, help="tracker YAML (default: built-in defaults)"
    )
    parser.add_argument(
        "--fusion-rule",
        type=str,
        default="crowd",
        help="what thing pixels no track covers become: crowd, void or stuff",
    )
    parser.add_argument("--out", type=str, required=True, help="the bundle file to write (model.hvps)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out file")
    parser.add_argument(
        "--weights-format",
        type=str | None,
        default=None,
        help="safetensors or torch (default: safetensors where installed)",
    )
    return parser


def run(cfg: Namespace) -> int:
    """Write the bundle; print what it holds."""
    from hvps_lightning.errors import HVPSError
    from hvps_lightning.formats.bundle import WEIGHT_FORMATS
    from hvps_lightning.inference.model import InferenceModel

    out = Path(cfg.out)
    if out.is_dir():
        raise HVPSError(f"--out {out}: is a folder; give the bundle file (e.g. {out / 'model.hvps'})")
    if out.exists() and not cfg.overwrite:
        raise HVPSError(f"--out {out}: exists; pass --overwrite to replace it")
    if cfg.fusion_rule not in FUSION_RULES:
        raise HVPSError(f"--fusion-rule {cfg.fusion_rule}: expected one of {', '.join(FUSION_RULES)}")
    if cfg.weights_format is not None and cfg.weights_format not in WEIGHT_FORMATS:
        raise HVPSError(f"--weights-format {cfg.weights_format}: expected safetensors or torch")
    if cfg.weights_format == "safetensors":
        try:
            import safetensors  # noqa: F401
        except ImportError:
            raise HVPSError("--weights-format safetensors: safetensors is not installed") from None
    from hvps_lightning.wandb_io import resolve_path

    model = InferenceModel.from_checkpoints(
        resolve_path(cfg.mots_checkpoint, "model", "--mots-checkpoint"),
        resolve_path(cfg.semantic_checkpoint, "model", "--semantic-checkpoint"),
        cfg.tracker_config,
        cfg.fusion_rule,
    )
    model.save(out, cfg.weights_format)
    size = out.stat().st_size / 1e6
    print(
        f"hvps bundle: {out} ({size:.1f} MB): MOTS {model.mots.backbone_name} + semantic "
        f"{model.semantic.arch} for {model.spec.name}, fusion {model.fusion_rule}; model card: model_card.md"
    )
    return 0
