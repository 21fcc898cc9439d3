"""``hvps data``: check a dataset root (``hvps data check``).

A command module of :mod:`hvps_lightning.cli`: :func:`build_parser` and :func:`run`.
"""

from __future__ import annotations

import sys

from jsonargparse import ArgumentParser, Namespace

from hvps_lightning.data.check import CheckReport, check_dataset
from hvps_lightning.data.layout import layout_splits
from hvps_lightning.data.loaders import MOTS_CLASSES
from hvps_lightning.data.specs import SPECS, DatasetSpec, get_spec
from hvps_lightning.errors import HVPSError

__all__: list[str] = ["build_parser", "run"]


def build_parser() -> ArgumentParser:
    """Parser of ``hvps data`` (subcommand ``check``)."""
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
    subcommands.add_subcommand("check", check, help="check a dataset root")
    return parser


def _print_summary(spec: DatasetSpec, root: str, report: CheckReport) -> None:
    from rich.console import Console
    from rich.table import Table

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


def run(cfg: Namespace) -> int:
    """Run ``hvps data check``; print the summary (stdout) or the problems (stderr)."""
    if cfg.get("subcommand") != "check":
        raise HVPSError("usage: hvps data check --dataset NAME --root DIR")
    options = cfg.check
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
    try:
        report = check_dataset(spec, options.root, options.splits, workers=options.workers)
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
