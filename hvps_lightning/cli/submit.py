"""``hvps submit step|mots``: predictions checked complete and packed as a benchmark server wants them.

``hvps submit step --pred DIR --out FILE.zip`` packs STEP PNGs ``<seq>/<frame>.png`` (``hvps
track``'s ``step/``) for the MOTChallenge-STEP (default) or KITTI-STEP test server; ``hvps submit
mots --pred DIR --out FILE.zip`` packs MOTS txt files ``<seq>.txt`` (``hvps track``'s ``mots/``)
for the MOTS20 test server. A missing sequence or frame, an extra frame or a malformed file is
one line naming it, and nothing is written. Layouts and their sources:
:mod:`hvps_lightning.formats.submission`.
"""

from __future__ import annotations

from jsonargparse import ArgumentParser, Namespace

from hvps_lightning.formats.submission import (
    MOTS_BENCHMARKS,
    STEP_BENCHMARKS,
    pack_mots_submission,
    pack_step_submission,
)


def _common(parser: ArgumentParser, what: str, benchmarks: list[str]) -> None:
    parser.add_argument("--pred", type=str, required=True, help=what)
    parser.add_argument("--out", type=str, required=True, help="the zip to write (never half-written)")
    parser.add_argument("--benchmark", type=str, default=benchmarks[0],
                        help=f"the test server: {', '.join(benchmarks)}")  # fmt: skip
    parser.add_argument("--root", type=str, default=None,
                        help="the dataset root: read the test frames from its images (default: the "
                             "official sequence lengths)")  # fmt: skip
    parser.add_argument("--sequences", type=list[str] | None, default=None,
                        help="pack these sequences instead of the benchmark's test sequences")  # fmt: skip


def build_parser() -> ArgumentParser:
    """The ``hvps submit`` argument parser."""
    description = "Predictions checked complete and packed in a benchmark server's layout."
    parser = ArgumentParser(prog="hvps submit", description=description)
    commands = parser.add_subcommands(dest="format")
    step = ArgumentParser(description="pack STEP panoptic PNGs <seq>/<frame>.png for a STEP test server")
    _common(step, "folder of <sequence>/<frame>.png STEP PNGs (hvps track --out's step/)",
            list(STEP_BENCHMARKS))
    step.add_argument("--workers", type=int, default=4, help="threads decoding the PNGs to check them")
    commands.add_subcommand("step", step, help="STEP PNGs for MOTChallenge-STEP / KITTI-STEP")
    mots = ArgumentParser(description="pack MOTS txt files <seq>.txt for the MOTS20 test server")
    _common(mots, "folder of <sequence>.txt MOTS files (hvps track --out's mots/)", list(MOTS_BENCHMARKS))
    commands.add_subcommand("mots", mots, help="MOTS txt for MOTS20")
    return parser


def run(cfg: Namespace) -> int:
    """Pack the submission; print one summary line; return 0."""
    args = cfg[cfg.format]
    if cfg.format == "step":
        report = pack_step_submission(args.pred, args.out, args.benchmark, args.root, args.sequences,
                                      workers=args.workers)  # fmt: skip
    else:
        report = pack_mots_submission(args.pred, args.out, args.benchmark, args.root, args.sequences)
    print(f"wrote {report.summary()}")
    return 0
