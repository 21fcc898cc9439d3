"""Tracker throughput: frames per second of ``Tracker.update`` with 30 people per frame.

Detections are simulated from drawn ground truth at 1080x1920 (MOTChallenge-STEP size):
RLE masks dilated by 2 pixels so that neighbours overlap like a detector's masks do (the
overlap removal runs on about a dozen masks per frame), 128-d embeddings, 5% of the
detections dropped so that short-term retrieval and re-ID run too. Association only: no
image is read and no mask decoded. One thread; the median over several runs of a fresh
tracker over the whole sequence. Target (DESIGN.md section 8): at least 1,000 frames/s.

``fps`` divides by the CPU time of the benchmark thread (``time.thread_time``), which is the
cost on one core even when other processes share the machine; ``fps_wall`` divides by
wall-clock time and matches it on an idle machine.

Prints one JSON line: ``{"fps": ..., "objects_per_frame": 30, ...}``.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402 (thread limits must be set before numpy loads)
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

from hvps_lightning.tracking.config import TrackerConfig  # noqa: E402
from hvps_lightning.tracking.simulate import moving_objects_gt, simulate_detections  # noqa: E402
from hvps_lightning.tracking.tracker import Tracker  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--objects", type=int, default=30)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--dilate", type=int, default=2, help="mask dilation in pixels (0: disjoint masks)")
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument(
        "--motion-model", default="constant_velocity", choices=["constant_velocity", "kalman"]
    )
    args = parser.parse_args()

    gt = moving_objects_gt(
        args.frames, args.objects, args.height, args.width, seed=0, size_range=(0.15, 0.3), speed=0.004
    )
    frames = simulate_detections(gt, seed=0, drop_rate=0.05, erode_pixels=-args.dilate, embedding_dim=128)
    config = TrackerConfig(motion_model=args.motion_model)
    cpu, wall = [], []
    outputs = 0
    for _ in range(args.runs):
        tracker = Tracker(config)
        start_cpu, start_wall = time.thread_time(), time.perf_counter()
        for detections in frames:
            outputs += len(tracker.update(detections))
        cpu.append(time.thread_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
    print(
        json.dumps(
            {
                "fps": round(len(frames) / statistics.median(cpu), 1),
                "objects_per_frame": args.objects,
                "fps_wall": round(len(frames) / statistics.median(wall), 1),
                "detections_per_frame": round(sum(len(f) for f in frames) / len(frames), 2),
                "outputs_per_frame": round(outputs / args.runs / len(frames), 2),
                "frames": len(frames),
                "image_size": [args.height, args.width],
                "mask_dilation": args.dilate,
                "motion_model": args.motion_model,
                "runs": args.runs,
            }
        )
    )


if __name__ == "__main__":
    main()
