"""``hvps evaluate step`` (STQ from STEP PNGs) and ``hvps evaluate mots`` (MOTS metrics from MOTS txt).

``hvps evaluate step --gt DIR --pred DIR (--dataset NAME | --num-classes N --things I [I ...]
[--ignore-label L]) --output FILE`` reads ``<seq>/<frame>.png`` from both folders, frames
matched by name, one frame pair at a time (the metric keeps per-tube statistics only, so
memory does not grow with the length of a sequence), and writes DESIGN.md's JSON.

``hvps evaluate mots --gt DIR --pred DIR --output FILE [--class-id 2]`` reads ``<seq>.txt``
MOTS files and writes ``{"combined": M, "per_sequence": {seq: M}}``.

Both print a one-line summary; every user error (missing frame, size mismatch, unreadable
file, invalid labels, overlapping masks) is an :class:`HVPSError` naming the file: exit 2.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ArgumentParser, Namespace

from hvps_lightning.errors import HVPSError, file_error
from hvps_lightning.io import write_json

#: presets of ``--dataset`` (the STEP datasets).
StepPreset = Literal["kitti_step", "motchallenge_step"]
#: label divisor used while evaluating PNGs: STEP PNGs hold instance ids up to 65535.
PNG_LABEL_DIVISOR = 65536


def build_parser() -> ArgumentParser:
    """Parser of ``hvps evaluate`` (subcommands ``step`` and ``mots``)."""
    parser = ArgumentParser(prog="hvps evaluate", description="Evaluate results against ground truth.")
    subcommands = parser.add_subcommands(dest="subcommand")

    step = ArgumentParser(
        description=(
            "STQ, AQ and SQ (mean IoU) of STEP panoptic PNGs. Both folders hold <seq>/<frame>.png; "
            "every ground-truth frame needs a prediction of the same name. Classes come from "
            "--dataset or from --num-classes/--things/--ignore-label."
        )
    )
    step.add_argument("--gt", required=True, type=str, help="ground-truth folder of <seq>/<frame>.png")
    step.add_argument("--pred", required=True, type=str, help="prediction folder of <seq>/<frame>.png")
    step.add_argument("--dataset", type=StepPreset | None, default=None, help="class preset")
    step.add_argument("--num-classes", type=int, default=None, help="number of semantic classes")
    step.add_argument("--things", type=int, nargs="+", default=None, metavar="I", help="thing class ids")
    step.add_argument("--ignore-label", type=int, default=None, help="void label (default 255)")
    step.add_argument("--output", required=True, type=str, help="JSON file to write")
    step.add_argument(
        "--sequences", type=str, default=None, nargs="+", help="evaluate only these GT sequences"
    )
    subcommands.add_subcommand("step", step, help="STQ from folders of STEP PNGs")

    mots = ArgumentParser(
        description=(
            "MOTS metrics (sMOTSA, MOTSA, MOTSP, IDF1, HOTA; TrackEval MOTSChallenge semantics) of "
            "folders of <seq>.txt MOTS files; every ground-truth file needs a prediction file."
        )
    )
    mots.add_argument("--gt", required=True, type=str, help="ground-truth folder of <seq>.txt")
    mots.add_argument("--pred", required=True, type=str, help="prediction folder of <seq>.txt")
    mots.add_argument("--output", required=True, type=str, help="JSON file to write")
    mots.add_argument("--class-id", type=int, default=2, help="MOTS class to evaluate (2 pedestrian, 1 car)")
    mots.add_argument(
        "--sequences", type=str, default=None, nargs="+", help="evaluate only these GT sequences"
    )
    subcommands.add_subcommand("mots", mots, help="MOTS metrics from folders of MOTS txt files")
    return parser


def run(cfg: Namespace) -> int:
    """Run ``hvps evaluate step`` or ``hvps evaluate mots``."""
    command = cfg.get("subcommand")
    if command == "step":
        result = evaluate_step_folders(**_step_options(cfg.step))
        write_json(cfg.step.output, result)
        print(
            f"hvps evaluate step: STQ {_percent(result['stq'])}  AQ {_percent(result['aq'])}  "
            f"SQ {_percent(result['sq'])}  ({len(result['per_sequence'])} sequences, "
            f"{result['num_frames']} frames) -> {cfg.step.output}"
        )
        return 0
    if command == "mots":
        from hvps_lightning.metrics.mots import evaluate_mots_folders

        options = cfg.mots
        result = evaluate_mots_folders(
            options.gt, options.pred, class_id=options.class_id, sequences=options.sequences
        )
        write_json(options.output, result)
        combined = result["combined"]
        print(
            f"hvps evaluate mots: sMOTSA {_percent(combined['sMOTSA'])}  "
            f"MOTSA {_percent(combined['MOTSA'])}  "
            f"IDF1 {_percent(combined['IDF1'])}  HOTA {_percent(combined['HOTA'])}  "
            f"({len(result['per_sequence'])} sequences) -> {options.output}"
        )
        return 0
    raise HVPSError("usage: hvps evaluate {step,mots} ...; see `hvps evaluate --help`")


def _percent(value: float) -> str:
    return "nan" if math.isnan(value) else f"{100 * value:.2f}"


def _step_options(options: Namespace) -> dict[str, Any]:
    explicit = [options.num_classes is not None, options.things is not None, options.ignore_label is not None]
    if options.dataset is not None:
        if any(explicit):
            raise HVPSError("--dataset cannot be combined with --num-classes/--things/--ignore-label")
        from hvps_lightning.structures.specs import get_spec

        spec = get_spec(options.dataset)
        return {
            "gt_dir": options.gt,
            "pred_dir": options.pred,
            "sequences": options.sequences,
            "num_classes": spec.num_classes,
            "things": list(spec.thing_ids),
            "ignore_label": spec.ignore_label,
            "class_names": list(spec.class_names),
        }
    if options.num_classes is None or options.things is None:
        raise HVPSError(
            "give --dataset NAME, or --num-classes N and --things I [I ...] (and --ignore-label L)"
        )
    if options.num_classes < 1:
        raise HVPSError(f"--num-classes must be positive, got {options.num_classes}")
    ignore_label = 255 if options.ignore_label is None else options.ignore_label
    bad = [t for t in options.things if not 0 <= t < options.num_classes or t == ignore_label]
    if bad:
        raise HVPSError(
            f"--things: {bad} are not class ids in [0, {options.num_classes}) (or are the ignore label)"
        )
    if len(set(options.things)) != len(options.things):
        raise HVPSError(f"--things: {options.things} lists a class more than once")
    if not 0 <= ignore_label <= 255:
        raise HVPSError(f"--ignore-label must lie in 0..255 (STEP PNGs are 8-bit), got {ignore_label}")
    return {
        "gt_dir": options.gt,
        "pred_dir": options.pred,
        "sequences": options.sequences,
        "num_classes": options.num_classes,
        "things": list(options.things),
        "ignore_label": ignore_label,
        "class_names": None,
    }


def _frame_pairs(
    gt_dir: Path, pred_dir: Path, only: Sequence[str] | None = None
) -> Iterator[tuple[str, Path, Path]]:
    """(sequence, gt png, pred png) of every ground-truth frame, sequences and frames sorted."""
    sequences = sorted(p for p in gt_dir.iterdir() if p.is_dir())
    if only is not None:
        unknown = [s for s in only if s not in {p.name for p in sequences}]
        if unknown:
            names = ", ".join(p.name for p in sequences)
            raise HVPSError(f"--sequences: {', '.join(unknown)} not in {gt_dir} ({names})")
        sequences = [p for p in sequences if p.name in set(only)]
    found = False
    for sequence in sequences:
        for gt_png in sorted(sequence.glob("*.png")):
            found = True
            pred_png = pred_dir / sequence.name / gt_png.name
            if not pred_png.is_file():
                raise file_error(pred_png, f"missing prediction for ground-truth frame {gt_png}")
            yield sequence.name, gt_png, pred_png
    if not found:
        raise file_error(gt_dir, "no <seq>/<frame>.png files in the ground-truth folder")


def evaluate_step_folders(
    gt_dir: str | Path,
    pred_dir: str | Path,
    num_classes: int,
    things: list[int],
    ignore_label: int = 255,
    class_names: list[str] | None = None,
    sequences: Sequence[str] | None = None,
) -> dict[str, Any]:
    """STQ of two folders of STEP PNGs (``<seq>/<frame>.png``), streaming one frame pair at a time.

    ``sequences`` restricts the evaluation to those ground-truth sequences.

    Returns:
        DESIGN.md's dict: ``stq``, ``aq``, ``sq``, ``iou_per_class``, ``per_sequence``, ``num_frames``.

    Raises:
        HVPSError: naming the file: a missing folder or prediction frame, an unreadable PNG,
            frames of different sizes, or label values outside the classes.
    """
    import torch

    from hvps_lightning.formats.step_png import read_step_png
    from hvps_lightning.metrics.functional_stq import STQInputError
    from hvps_lightning.metrics.stq import STQ

    gt_dir, pred_dir = Path(gt_dir), Path(pred_dir)
    for folder, flag in ((gt_dir, "--gt"), (pred_dir, "--pred")):
        if not folder.is_dir():
            raise file_error(folder, f"{flag} is not a folder")
    metric = STQ(num_classes, things, ignore_label, PNG_LABEL_DIVISOR, class_names)
    for sequence, gt_png, pred_png in _frame_pairs(gt_dir, pred_dir, sequences):
        gt_semantic, gt_instance = read_step_png(gt_png)
        pred_semantic, pred_instance = read_step_png(pred_png)
        if pred_semantic.shape != gt_semantic.shape:
            (h, w), (gh, gw) = pred_semantic.shape, gt_semantic.shape
            raise file_error(pred_png, f"prediction is {h}x{w} but the ground truth {gt_png} is {gh}x{gw}")
        target = torch.from_numpy(_stack(gt_semantic, gt_instance))
        preds = torch.from_numpy(_stack(pred_semantic, pred_instance))
        try:
            metric.update(preds, target, [sequence])
        except STQInputError as exc:
            path = pred_png if exc.which == "preds" else gt_png
            raise file_error(path, str(exc).split(": ", 1)[1]) from None
    return metric.compute()


def _stack(semantic: Any, instance: Any) -> Any:
    """(1, H, W, 2) uint16 labels of one frame.

    uint16 is the natural integer type of a STEP PNG (8-bit class, 16-bit instance) and halves
    the memory traffic of the metric's pass over the pixels compared with int32.
    """
    import numpy as np

    return np.stack([semantic, instance], axis=-1).astype(np.uint16)[None]
