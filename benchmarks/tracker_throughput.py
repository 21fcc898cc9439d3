"""Tracker throughput: frames per second of the tracker on a 1080p crowd, and the cost of camera motion.

Detections come from the hard crowd workload of :mod:`hvps_lightning.data.synthetic.tracking_workloads` at
1080x1920 (MOTChallenge-STEP size): ~30 people per frame, RLE masks that overlap where people
do (the overlap removal runs on every frame), 128-d embeddings, misses, false positives and
people hidden behind each other, so retrieval, re-ID and tracklet merges all run. Association
and mask overlap removal only: no image is read and no mask decoded. One thread; the median
over ``--runs`` runs of ``track_sequence`` over the whole sequence (tentative backfill
included), for the default config and, side by side, the previous release's
(the shipped config ``tracker/previous_release``). Target: >= 800 frames/s.

Camera motion compensation is measured apart, on 1080p frames of a panning view of a textured
scene: milliseconds per frame of :class:`~hvps_lightning.tracking.camera_motion.CameraMotionEstimator`
(downscale, corners, optical flow, RANSAC fit). Target: <= 3 ms per frame.

``fps`` divides by the CPU time of the benchmark thread (``time.thread_time``), which is the
cost on one core even when other processes share the machine; ``fps_wall`` divides by
wall-clock time and matches it on an idle machine.

Prints one JSON line: ``{"fps": ..., "fps_previous": ..., "camera_motion_ms": ..., ...}``.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402 (thread limits must be set before numpy loads)
import json  # noqa: E402
import statistics  # noqa: E402
import time  # noqa: E402

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from hvps_lightning.data.synthetic.tracking_workloads import WORKLOADS, simulate_scene  # noqa: E402
from hvps_lightning.io import CONFIGS_DIR  # noqa: E402
from hvps_lightning.tracking.camera_motion import CameraMotionEstimator  # noqa: E402
from hvps_lightning.tracking.config import TrackerConfig  # noqa: E402
from hvps_lightning.tracking.tracker import track_sequence  # noqa: E402

PREVIOUS = CONFIGS_DIR / "tracker" / "previous_release.yaml"


def tracker_fps(frames: list, config: TrackerConfig, runs: int) -> tuple[float, float, float]:
    """(frames/s on CPU time, frames/s on wall time, objects output per frame)."""
    cpu, wall = [], []
    outputs = 0
    for _ in range(runs):
        start_cpu, start_wall = time.thread_time(), time.perf_counter()
        tracks = track_sequence(frames, config)
        cpu.append(time.thread_time() - start_cpu)
        wall.append(time.perf_counter() - start_wall)
        outputs = sum(len(objects) for objects in tracks)
    return len(frames) / statistics.median(cpu), len(frames) / statistics.median(wall), outputs / len(frames)


def camera_motion_ms(height: int, width: int, count: int) -> float:
    """Median milliseconds (CPU) of one camera motion update on frames of a panning camera."""
    cv2.setNumThreads(1)
    rng = np.random.default_rng(0)
    small = (rng.random((height // 8 + 8, width // 8 + 40, 3)) * 255).astype(np.uint8)
    world = cv2.resize(small, (small.shape[1] * 8, small.shape[0] * 8), interpolation=cv2.INTER_CUBIC)
    estimator = CameraMotionEstimator()
    times = []
    for t in range(count):
        frame = np.ascontiguousarray(world[:height, 3 * t : 3 * t + width])
        start = time.thread_time()
        estimator.update(frame)
        times.append(time.thread_time() - start)
    return 1000 * statistics.median(times[1:])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=300)
    parser.add_argument("--objects", type=int, default=WORKLOADS["crowd"].people, help="walkers in the scene")
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument(
        "--motion-model", default="constant_velocity", choices=["constant_velocity", "kalman"]
    )
    args = parser.parse_args()

    spec = WORKLOADS["crowd"].replace(
        num_frames=args.frames, people=args.objects, height=args.height, width=args.width
    )
    frames = simulate_scene(spec, seed=0).detections
    default = TrackerConfig(motion_model=args.motion_model)
    previous = TrackerConfig.from_yaml(PREVIOUS).replace(motion_model=args.motion_model)
    fps, fps_wall, outputs = tracker_fps(frames, default, args.runs)
    fps_previous, _, _ = tracker_fps(frames, previous, args.runs)
    print(
        json.dumps(
            {
                "fps": round(fps, 1),
                "fps_previous": round(fps_previous, 1),
                "fps_wall": round(fps_wall, 1),
                "camera_motion_ms": round(
                    camera_motion_ms(args.height, args.width, min(args.frames, 30) + 1), 2
                ),
                "objects_per_frame": args.objects,
                "detections_per_frame": round(sum(len(f) for f in frames) / len(frames), 2),
                "outputs_per_frame": round(outputs, 2),
                "frames": len(frames),
                "image_size": [args.height, args.width],
                "motion_model": args.motion_model,
                "runs": args.runs,
            }
        )
    )


if __name__ == "__main__":
    main()
