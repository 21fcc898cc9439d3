"""``hvps data``: check a dataset root (``hvps data check``), write a resized copy (``hvps data cache``).

A command module of :mod:`hvps_lightning.cli`: :func:`build_parser` and :func:`run`. The
readers (OpenCV, PIL) are imported when a subcommand runs, so ``--help`` stays fast.
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

from jsonargparse import ArgumentParser, Namespace

from hvps_lightning.cli.progress import add_quiet_argument, progress_bar
from hvps_lightning.errors import HVPSError
from hvps_lightning.structures.specs import SPECS, DatasetSpec, get_spec

if TYPE_CHECKING:
    from hvps_lightning.data.check import CheckReport

__all__: list[str] = ["build_parser", "run"]


def build_parser() -> ArgumentParser:
    """Parser of ``hvps data`` (subcommands ``check`` and ``cache``)."""
    parser = ArgumentParser(prog="hvps data", description="Dataset tools.")
    subcommands = parser.add_subcommands(dest="subcommand")
    check = ArgumentParser(
        description=(
            "Check a dataset root: walks it with the dataset's layout (data/README.md), reads every "
            "image, panoptic map and MOTS txt file, and prints what it found. Exit 0 when it is "
            "fine (missing official sequences are warnings), 2 with one line per bad file."
        )
    )
    check.add_argument(
        "--dataset", required=True, choices=sorted(SPECS), help="the dataset (and layout) of the root"
    )
    check.add_argument("--root", required=True, type=str, help="the dataset root folder")
    check.add_argument(
        "--splits",
        nargs="+",
        default=None,
        metavar="FOLDER",
        help="check only these split folders (e.g. train val)",
    )
    check.add_argument("--workers", type=int, default=2, help="threads reading files")
    add_quiet_argument(check)
    subcommands.add_subcommand("check", check, help="check a dataset root")
    subcommands.add_subcommand("cache", _cache_parser(), help="write a resized copy of a dataset root")
    return parser


def _cache_parser() -> ArgumentParser:
    cache = ArgumentParser(
        description=(
            "Write a copy of a dataset root resized to --size, in the same official layout: frames "
            "resized bilinearly (as the DataModule does), panoptic maps and MOTS masks with nearest "
            "neighbours, every file checked on the way. Train on it with the same image_size to skip "
            "decoding and resizing full-size frames every epoch. The copy appears at --out whole or "
            "not at all."
        )
    )
    cache.add_argument(
        "--dataset", required=True, choices=sorted(SPECS), help="the dataset (and layout) of the root"
    )
    cache.add_argument("--root", required=True, type=str, help="the dataset root folder")
    cache.add_argument(
        "--size", required=True, type=int, nargs=2, metavar=("H", "W"), help="height and width of the copy"
    )
    cache.add_argument("--out", required=True, type=str, help="the copy's root folder (new or empty)")
    cache.add_argument(
        "--splits", nargs="+", default=None, metavar="FOLDER", help="copy only these split folders"
    )
    cache.add_argument("--workers", type=int, default=2, help="threads reading and writing files")
    cache.add_argument("--jpeg-quality", type=int, default=95, help="quality of re-encoded JPEG frames")
    cache.add_argument("--overwrite", action="store_true", help="replace a non-empty --out")
    add_quiet_argument(cache)
    return cache


def _print_summary(spec: DatasetSpec, root: str, report: CheckReport) -> None:
    from rich.console import Console
    from rich.table import Table

    from hvps_lightning.data.loaders import MOTS_CLASSES

    console = Console(file=sys.stdout, width=110, highlight=False)
    mots = report.layout in ("mots20", "kitti_mots")
    names = MOTS_CLASSES if mots else dict(enumerate(spec.class_names))
    table = Table(title=f"{spec.name} ({report.layout} layout) at {root}")
    sequences = "images" if report.layout == "coco_panoptic" else "sequences"
    for column in ("split", sequences, "frames", "labelled", "instances", "classes found"):
        table.add_column(column, justify="left" if column in ("split", "classes found") else "right")
    for s in report.summary:
        classes = ", ".join(names.get(c, str(c)) for c in sorted(s.classes)) or "-"
        table.add_row(
            s.folder, str(s.sequences), str(s.frames), str(s.labelled_frames), str(len(s.instances)), classes
        )
    console.print(table)


def _check_options(options: Namespace) -> DatasetSpec:
    """The spec of ``--dataset``, after checking ``--workers`` and ``--splits``."""
    from hvps_lightning.data.layout import layout_splits

    spec = get_spec(options.dataset)
    if options.workers < 1:
        raise HVPSError(f"--workers must be >= 1, got {options.workers}")
    if options.splits:
        known = sorted({split.folder for split in layout_splits(spec, options.root).values()})
        unknown = [folder for folder in options.splits if folder not in known]
        if unknown:
            raise HVPSError(
                f"--splits: unknown split folder {', '.join(unknown)}; "
                f"folders of this layout: {', '.join(known)}"
            )
    return spec


def run(cfg: Namespace) -> int:
    """Run ``hvps data check`` or ``hvps data cache``."""
    subcommand = cfg.get("subcommand")
    if subcommand == "cache":
        return _run_cache(cfg.cache)
    if subcommand != "check":
        raise HVPSError("usage: hvps data check|cache --dataset NAME --root DIR ...")
    return _run_check(cfg.check)


def _run_cache(options: Namespace) -> int:
    """Write the resized copy; one summary line on stdout."""
    from hvps_lightning.data.cache import write_resized_copy

    spec = _check_options(options)
    try:
        with progress_bar(options.quiet, unit="seq", desc="data cache") as progress:
            summary = write_resized_copy(
                spec,
                options.root,
                options.out,
                options.size,
                folders=options.splits,
                workers=options.workers,
                jpeg_quality=options.jpeg_quality,
                overwrite=options.overwrite,
                progress=progress,
            )
    except OSError as exc:  # a full disk, an unwritable folder: one line, no traceback
        raise HVPSError(f"{exc.filename or options.out}: {exc.strerror or exc}") from None
    height, width = options.size
    print(
        f"hvps data cache: wrote {summary.frames} frames of {summary.sequences} sequences at "
        f"{height}x{width} to {summary.out} in {summary.seconds:.1f} s"
    )
    return 0


def _run_check(options: Namespace) -> int:
    """Run ``hvps data check``; print the summary (stdout) or the problems (stderr)."""
    from hvps_lightning.data.check import check_dataset

    spec = _check_options(options)
    try:
        with progress_bar(options.quiet, unit="seq", desc="data check") as progress:
            report = check_dataset(
                spec, options.root, options.splits, workers=options.workers, progress=progress
            )
    except OSError as exc:  # an unreadable folder (permissions...): one line, no traceback
        raise HVPSError(f"{exc.filename or options.root}: {exc.strerror or exc}") from None
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if report.summary:
        _print_summary(spec, options.root, report)
    if report.problems:
        for problem in report.problems:
            print(problem, file=sys.stderr)
        count = len(report.problems)
        print(
            f"hvps data check: {count} problem{'s' if count != 1 else ''} in {options.root}", file=sys.stderr
        )
        return 2
    print(f"hvps data check: {options.root} is a valid {spec.name} root")
    return 0
