"""``hvps evaluate step`` (STQ from STEP PNGs) and ``hvps evaluate mots`` (MOTS metrics from MOTS txt).

``hvps evaluate step --gt DIR --pred DIR (--dataset NAME | --num-classes N --things I [I ...]
[--ignore-label L]) --output FILE [--workers N] [--plot PNG] [--quiet]`` reads ``<seq>/<frame>.png``
from both folders, frames matched by name, decoded by a pool of threads and scored in frame
order (:mod:`hvps_lightning.evaluation.step_folders`), and writes the JSON of docs/ARCHITECTURE.md;
``--plot`` also draws the per-class IoU as bars.

``hvps evaluate mots --gt DIR --pred DIR --output FILE [--classes car pedestrian] [--seqmap FILE]
[--output-dir DIR]`` reads the ground truth in the MOTS20, KITTI-MOTS or flat ``<seq>.txt``
layout (:mod:`hvps_lightning.evaluation.mots_folders`), writes ``{"combined": M, "per_sequence":
{seq: M}, "classes": {...}}`` and, with ``--output-dir``, TrackEval's ``<class>_summary.txt`` and
``<class>_detailed.csv``.

Both draw a progress bar (rate, ETA) on stderr when it is a terminal, unless ``--quiet``.

Both print a one-line summary; every user error (missing frame, size mismatch, unreadable
file, invalid labels, overlapping masks, an --output that cannot be written) is an
:class:`HVPSError` naming the file: exit 2. This module only parses and prints: it imports
neither torch nor the metric before a command runs, so ``--help`` and start-up are fast.
"""

from __future__ import annotations

import math
import os
import sys
import tempfile
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ArgumentParser, Namespace

from hvps_lightning.cli.progress import add_quiet_argument, progress_bar
from hvps_lightning.errors import HVPSError, file_error
from hvps_lightning.io import write_json

#: presets of ``--dataset`` (the STEP datasets).
StepPreset = Literal["kitti_step", "motchallenge_step"]


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
    step.add_argument(
        "--workers", type=int, default=None, help="PNG decoder threads beside the metric (default: the cores)"
    )
    step.add_argument(
        "--plot", type=str | None, default=None, help="also draw the per-class IoU as bars into this PNG"
    )
    add_quiet_argument(step)
    subcommands.add_subcommand("step", step, help="STQ from folders of STEP PNGs")

    mots = ArgumentParser(
        description=(
            "MOTS metrics (sMOTSA, MOTSA, MOTSP, IDF1, HOTA; TrackEval's MOTSChallenge/KittiMOTS semantics). "
            "--gt in the MOTS20 layout (<seq>/gt/gt.txt + seqinfo.ini), the KITTI-MOTS layout "
            "(instances_txt/<seq>.txt or label_02/<seq>.txt, frames from 0) or a folder of <seq>.txt; "
            "--pred a folder of <seq>.txt (or TrackEval's data/ folder of them)."
        )
    )
    mots.add_argument("--gt", required=True, type=str, help="ground truth (MOTS20, KITTI-MOTS or <seq>.txt)")
    mots.add_argument("--pred", required=True, type=str, help="prediction folder of <seq>.txt")
    mots.add_argument("--output", required=True, type=str, help="JSON file to write")
    mots.add_argument(
        "--classes",
        type=str,
        nargs="+",
        default=["pedestrian"],
        help="classes to score, each on its own (car pedestrian, or ids 1 2); the first fills the top level",
    )
    mots.add_argument(
        "--seqmap",
        type=str | None,
        default=None,
        help="seqmap choosing the sequences and their lengths (MOTS20: name + one per line; KITTI rows)",
    )
    mots.add_argument(
        "--output-dir",
        type=str | None,
        default=None,
        help="also write TrackEval's <class>_summary.txt and <class>_detailed.csv here",
    )
    mots.add_argument(
        "--sequences", type=str, default=None, nargs="+", help="evaluate only these GT sequences"
    )
    add_quiet_argument(mots)
    subcommands.add_subcommand("mots", mots, help="MOTS metrics from folders of MOTS txt files")
    return parser


def run(cfg: Namespace) -> int:
    """Run ``hvps evaluate step`` or ``hvps evaluate mots``."""
    command = cfg.get("subcommand")
    if command == "step":
        options = cfg.step
        kwargs = _step_options(options)
        if options.workers is not None and options.workers < 1:
            raise HVPSError(f"--workers must be positive, got {options.workers}")
        check_output(options.output)
        if options.plot is not None:
            check_output(options.plot, "--plot")
        import cv2

        from hvps_lightning.evaluation.step_folders import evaluate_step_folders, keep_frames_in_the_heap

        cv2.setNumThreads(1)  # the decoder pool is the parallelism; OpenCV's own threads would compete
        keep_frames_in_the_heap()
        with progress_bar(options.quiet, unit="frame", desc="evaluate step") as progress:
            result = evaluate_step_folders(**kwargs, workers=options.workers, progress=progress, warn=_warn)
        write_json(options.output, result)
        if options.plot is not None:
            from hvps_lightning.viz.plots import plot_iou_per_class

            plot_iou_per_class(result, options.plot, title=f"{options.pred} vs {options.gt}")
        print(
            f"hvps evaluate step: STQ {_percent(result['stq'])}  AQ {_percent(result['aq'])}  "
            f"SQ {_percent(result['sq'])}  ({len(result['per_sequence'])} sequences, "
            f"{result['num_frames']} frames) -> {options.output}"
        )
        return 0
    if command == "mots":
        options = cfg.mots
        check_output(options.output)
        if options.output_dir is not None:
            check_output_dir(options.output_dir)
        from hvps_lightning.evaluation.mots_folders import class_ids, evaluate_mots_folders

        class_ids(options.classes)  # an unknown class fails before any file is read
        with progress_bar(options.quiet, unit="seq", desc="evaluate mots") as progress:
            result = evaluate_mots_folders(
                options.gt,
                options.pred,
                classes=options.classes,
                sequences=options.sequences,
                seqmap=options.seqmap,
                output_dir=options.output_dir,
                progress=progress,
            )
        write_json(options.output, result)
        written = options.output + (f" and {options.output_dir}/" if options.output_dir else "")
        for name, scores in result["classes"].items():
            combined = scores["combined"]
            print(
                f"hvps evaluate mots: {name}: sMOTSA {_percent(combined['sMOTSA'])}  "
                f"MOTSA {_percent(combined['MOTSA'])}  "
                f"IDF1 {_percent(combined['IDF1'])}  HOTA {_percent(combined['HOTA'])}  "
                f"({len(scores['per_sequence'])} sequences, {result['layout']} layout)"
            )
        print(f"hvps evaluate mots: wrote {written}")
        return 0
    raise HVPSError("usage: hvps evaluate {step,mots} ...; see `hvps evaluate --help`")


def _warn(message: str) -> None:
    print(f"hvps evaluate: warning: {message}", file=sys.stderr)


def check_output(output: str, option: str = "--output") -> None:
    """Refuse an ``--output`` that is a folder or lies where no file can be written.

    Checked before any frame is evaluated; the nearest existing folder on the way is probed
    with a temporary file (``os.access`` alone says yes to root on a read-only mount).

    Raises:
        HVPSError: naming the path.
    """
    path = Path(output)
    if path.is_dir():
        raise file_error(path, f"{option} is a folder; give the path of the file to write")
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        raise file_error(path, f"{option} cannot be written: {folder} is not a folder")
    try:
        handle, probe = tempfile.mkstemp(prefix=".hvps-write-test-", dir=folder)
    except OSError as exc:
        raise file_error(path, f"{option} cannot be written in {folder} ({exc.strerror or exc})") from None
    os.close(handle)
    os.unlink(probe)


def check_output_dir(output_dir: str) -> None:
    """Refuse an ``--output-dir`` that is a file (a folder is created, files in it are replaced).

    Raises:
        HVPSError: naming the path.
    """
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise file_error(path, "--output-dir is a file; give a folder")
    check_output(str(path / "results.json"), "--output-dir")


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
