"""Synthetic data generation speed: seconds for one sequence of ``hvps synth`` (render + write).

Default: one motchallenge_step sequence of 40 frames at 192x320 (the demo size), written to a
temporary folder (images, STEP PNGs, MOTS txt); the median over several runs, one thread.
Also times rendering alone (no files). Target: well under 2 s per 40-frame sequence.

Prints one JSON line: ``{"seconds_per_sequence": ..., "frames_per_second": ..., ...}``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from pathlib import Path

import cv2

from hvps_lightning.data.synthetic.generate import generate_dataset, sequence_rng
from hvps_lightning.data.synthetic.scene import PRESETS, render_sequence


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="motchallenge_step", choices=list(PRESETS))
    parser.add_argument("--frames", type=int, default=40)
    parser.add_argument("--height", type=int, default=192)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    cv2.setNumThreads(1)

    total, render_only = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for run in range(args.runs):
            start = time.perf_counter()
            generate_dataset(
                args.preset,
                Path(tmp) / str(run),
                sequences=1,
                frames=args.frames,
                height=args.height,
                width=args.width,
                progress=False,
            )
            total.append(time.perf_counter() - start)
            start = time.perf_counter()
            for _ in render_sequence(
                args.preset, args.height, args.width, args.frames, sequence_rng(args.preset, 0, 0)
            ):
                pass
            render_only.append(time.perf_counter() - start)
    seconds = statistics.median(total)
    print(
        json.dumps(
            {
                "benchmark": "synth_speed",
                "preset": args.preset,
                "frames": args.frames,
                "image_size": [args.height, args.width],
                "seconds_per_sequence": round(seconds, 3),
                "frames_per_second": round(args.frames / seconds, 1),
                "render_only_seconds": round(statistics.median(render_only), 3),
                "runs": args.runs,
            }
        )
    )


if __name__ == "__main__":
    main()
