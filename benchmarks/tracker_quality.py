"""Tracker quality: IDF1, IDSW, HOTA, AssA on the hard simulated workloads, and frames/s.

Two workloads of :mod:`hvps_lightning.data.synthetic.tracking_workloads` (1,000 frames at 1080x1920 each):
``crowd`` (~30 people per frame crossing under a slowly panning camera, low walls) and
``occlusion`` (people hidden 10-60 frames behind pillars, crossing paths, false positives next
to people with embeddings near theirs). Detections carry 128-d embeddings with a shared
direction, look-alike groups, drift and occlusion mixing, and RLE masks that overlap.

Configs, side by side in one run on identical detections:

* ``default``: ``TrackerConfig()``;
* ``previous``: the shipped config ``tracker/previous_release``, the release before the joint
  association (cascade, loose retrieval gate 0.7, one-shot re-ID, appearance always updated);
* ``motion_only``: ``TrackerConfig(use_embeddings=False)`` (IoU/motion association only).

Metrics come from the project's MOTS metrics (:mod:`hvps_lightning.metrics.mots`, TrackEval
semantics), on the masks (``idf1``, ``hota``, ...) and on the boxes of the same objects
(``box`` entry: IoU of the tracked box and the ground-truth mask's box). Speed: frames per
second of ``track_sequence`` (masks made disjoint, backfill included) on one thread, CPU time
of the benchmark thread (``time.thread_time``), median of ``--runs`` runs.

Prints one line per workload and config, then one JSON line:
``{"workloads": {"crowd": {"idf1": .., "hota": .., "idsw": .., "fps": .., "previous": {..}}, ...}}``.
"""

from __future__ import annotations

import os

for _name in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ[_name] = "1"

import argparse  # noqa: E402 (thread limits must be set before numpy loads)
import json  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

from hvps_lightning.data.synthetic.detections import GTFrame  # noqa: E402
from hvps_lightning.data.synthetic.tracking_workloads import WORKLOADS, Scene, simulate_scene  # noqa: E402
from hvps_lightning.formats.mots_txt import MOTSObject  # noqa: E402
from hvps_lightning.io import CONFIGS_DIR  # noqa: E402
from hvps_lightning.metrics.mots import (  # noqa: E402
    SequenceMatches,
    _relabel,
    evaluate_mots,
    sequence_counts,
)
from hvps_lightning.structures.detections import TrackedObject  # noqa: E402
from hvps_lightning.structures.masks import mask_boxes  # noqa: E402
from hvps_lightning.tracking.config import TrackerConfig  # noqa: E402
from hvps_lightning.tracking.tracker import track_sequence  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
PREVIOUS = CONFIGS_DIR / "tracker" / "previous_release.yaml"
#: MOTS class id of pedestrians: objects are written as 2000 + id.
PEDESTRIAN = 2


def _objects(frames: list[list[Any]]) -> list[MOTSObject]:
    return [
        MOTSObject(index, PEDESTRIAN * 1000 + track_id, PEDESTRIAN, rle)
        for index, items in enumerate(frames)
        for track_id, rle in items
    ]


def mask_metrics(gt: list[GTFrame], tracks: list[list[TrackedObject]]) -> dict[str, float | int]:
    """MOTS metrics on masks (TrackEval semantics)."""
    gt_objects = _objects([list(zip(f.identities.tolist(), f.rles, strict=True)) for f in gt])
    pred_objects = _objects([[(o.track_id, o.rle) for o in objects] for objects in tracks])
    return evaluate_mots({"s": gt_objects}, {"s": pred_objects})["combined"]


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    if len(a) == 0 or len(b) == 0:
        return np.zeros((len(a), len(b)))
    low = np.maximum(a[:, None, :2], b[None, :, :2])
    high = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.prod(np.clip(high - low, 0, None), axis=2)
    area_a, area_b = np.prod(a[:, 2:] - a[:, :2], 1), np.prod(b[:, 2:] - b[:, :2], 1)
    return inter / np.maximum(area_a[:, None] + area_b[None, :] - inter, 1e-9)


def box_metrics(gt: list[GTFrame], tracks: list[list[TrackedObject]]) -> dict[str, float | int]:
    """The same metrics on boxes (the ground-truth mask's box against the tracked box)."""
    gt_ids, pred_ids, similarity = [], [], []
    for frame, objects in zip(gt, tracks, strict=True):
        gt_ids.append(frame.identities.astype(np.int64))
        pred_ids.append(np.array([o.track_id for o in objects], np.int64))
        pred_boxes = np.array([o.box for o in objects], np.float64).reshape(-1, 4)
        similarity.append(_box_iou(mask_boxes(frame.rles).astype(np.float64), pred_boxes))
    data = SequenceMatches(similarity=similarity)
    data.gt_ids, data.num_gt_ids = _relabel(gt_ids)
    data.pred_ids, data.num_pred_ids = _relabel(pred_ids)
    return sequence_counts(data).metrics()


def measure(scene: Scene, config: TrackerConfig, runs: int) -> dict[str, Any]:
    """Quality on masks and boxes, and frames/s of ``track_sequence`` on one thread."""
    times = []
    tracks: list[list[TrackedObject]] = []
    for _ in range(runs):
        start = time.thread_time()
        tracks = track_sequence(scene.detections, config)
        times.append(time.thread_time() - start)
    masks = mask_metrics(scene.gt, tracks)
    boxes = box_metrics(scene.gt, tracks)
    pick = ("IDF1", "HOTA", "AssA", "DetA", "IDSW", "MOTSA")
    return {
        "idf1": round(masks["IDF1"], 4),
        "hota": round(masks["HOTA"], 4),
        "assa": round(masks["AssA"], 4),
        "idsw": int(masks["IDSW"]),
        "motsa": round(masks["MOTSA"], 4),
        "fps": round(len(scene.detections) / statistics.median(times), 1),
        "box": {
            k.lower(): (round(v, 4) if isinstance(v, float) else v) for k, v in boxes.items() if k in pick
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=1000)
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--seed", type=int, default=0, help="scene seed (the defaults were tuned on others)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs per config (median)")
    parser.add_argument("--workloads", nargs="+", default=list(WORKLOADS), choices=list(WORKLOADS))
    args = parser.parse_args()

    configs = {
        "default": TrackerConfig(),
        "previous": TrackerConfig.from_yaml(PREVIOUS),
        "motion_only": TrackerConfig(use_embeddings=False, long_term_enabled=False),
    }
    result: dict[str, Any] = {}
    for name in args.workloads:
        spec = WORKLOADS[name].replace(num_frames=args.frames, height=args.height, width=args.width)
        scene = simulate_scene(spec, seed=args.seed)
        people = sum(len(f) for f in scene.gt) / max(len(scene.gt), 1)
        entry: dict[str, Any] = {}
        for label, config in configs.items():
            numbers = measure(scene, config, args.runs)
            print(f"{name:10s} {label:12s} {json.dumps(numbers)}", file=sys.stderr)
            if label == "default":
                entry.update(numbers)
            else:
                entry[label] = numbers
        entry["people_per_frame"] = round(people, 1)
        entry["frames"] = len(scene.gt)
        result[name] = entry
    print(json.dumps({"workloads": result, "image_size": [args.height, args.width], "seed": args.seed}))


if __name__ == "__main__":
    main()
