"""``hvps synth``: a synthetic street-video dataset in an official layout (``data/synthetic``)."""

from __future__ import annotations

from jsonargparse import ArgumentParser, Namespace

from hvps_lightning.cli.progress import add_quiet_argument, bars_enabled
from hvps_lightning.data.synthetic.generate import generate_dataset
from hvps_lightning.data.synthetic.scene import PRESETS


def build_parser() -> ArgumentParser:
    """The ``hvps synth`` argument parser."""
    parser = ArgumentParser(
        description="Write a synthetic street-video dataset in the official layout of KITTI panoptic, "
        "KITTI-STEP or MOTChallenge-STEP (images, panoptic maps, MOTS txt / COCO panoptic JSON). "
        "The same arguments give the same files."
    )
    parser.add_argument("--preset", required=True, choices=list(PRESETS), help="which dataset to imitate")
    parser.add_argument(
        "--out", type=str | None, default=None, help="dataset root to write (default: data/<dataset>)"
    )
    defaults = ", ".join(f"{p.name} {p.default_sequences}" for p in PRESETS.values())
    parser.add_argument(
        "--sequences",
        type=int | None,
        default=None,
        help=f"number of sequences (scenes for kitti_panoptic); default: {defaults}",
    )
    defaults = ", ".join(f"{p.name} {p.default_frames}" for p in PRESETS.values())
    parser.add_argument(
        "--frames",
        type=int | None,
        default=None,
        help=f"frames per sequence (images per scene); default: {defaults}",
    )
    parser.add_argument("--height", type=int, default=192, help="image height in pixels")
    parser.add_argument("--width", type=int, default=320, help="image width in pixels")
    parser.add_argument("--seed", type=int, default=0, help="random seed")
    parser.add_argument(
        "--overwrite", action="store_true", help="write into a non-empty folder that hvps synth did not write"
    )
    add_quiet_argument(parser)
    return parser


def run(cfg: Namespace) -> int:
    """Run ``hvps synth`` with parsed arguments; print the summary."""
    summary = generate_dataset(
        cfg.preset,
        cfg.out,
        sequences=cfg.sequences,
        frames=cfg.frames,
        height=cfg.height,
        width=cfg.width,
        seed=cfg.seed,
        overwrite=cfg.overwrite,
        progress=bars_enabled(cfg.quiet),
    )
    print(summary.format())
    return 0
