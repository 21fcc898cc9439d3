from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hvps_lightning.data.synthetic.detections import (
    gt_frames_from_mots,
    moving_objects_gt,
    simulate_detections,
)
from hvps_lightning.formats import MOTSObject
from hvps_lightning.structures.masks import decode_mask, encode_mask, mask_boxes

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_drawn_ground_truth_is_disjoint_and_deterministic() -> None:
    gt = moving_objects_gt(6, 4, 40, 60, seed=7, hidden={2: [1, 2]})
    again = moving_objects_gt(6, 4, 40, 60, seed=7, hidden={2: [1, 2]})
    assert [f.rles for f in gt] == [f.rles for f in again]
    for frame in gt:
        stack = np.stack([decode_mask(r) for r in frame.rles]).astype(int)
        assert stack.sum(axis=0).max() <= 1
        assert frame.labels.tolist() == [4] * len(frame)
    assert 2 not in gt[1].identities and 2 not in gt[2].identities and 2 in gt[3].identities


def test_simulated_detections_err_like_a_detector() -> None:
    gt = moving_objects_gt(20, 5, 48, 64, seed=1)
    frames = simulate_detections(
        gt, seed=1, drop_rate=0.3, box_jitter=0.1, erode_pixels=1, embedding_noise=0.2
    )
    total_gt = sum(len(f) for f in gt)
    total = sum(len(f) for f in frames)
    assert 0.5 * total_gt < total < 0.9 * total_gt
    same, other = [], []
    for frame in frames:
        frame.validate("simulated")
        ids = frame.extra["identities"]
        sims = frame.embeddings @ frame.embeddings.T
        for i in range(len(frame)):
            for j in range(i + 1, len(frame)):
                (same if ids[i] == ids[j] else other).append(sims[i, j])
    first = {int(i): e for f in frames for i, e in zip(f.extra["identities"], f.embeddings, strict=True)}
    last = {
        int(i): e for f in reversed(frames) for i, e in zip(f.extra["identities"], f.embeddings, strict=True)
    }
    # one identity looks alike over time, two identities do not
    assert min(float(first[i] @ last[i]) for i in first) > 0.8
    assert max(abs(s) for s in other) < 0.5
    # eroded masks lie inside the ground truth
    for det, truth in zip(frames, gt, strict=True):
        for index, identity in enumerate(det.extra["identities"]):
            gt_mask = decode_mask(truth.rles[list(truth.identities).index(identity)]).astype(bool)
            assert not (decode_mask(det.masks[index]).astype(bool) & ~gt_mask).any()


def test_scripted_drops_and_clutter() -> None:
    gt = moving_objects_gt(4, 2, 30, 40, seed=0)
    frames = simulate_detections(gt, seed=0, drop_rate=0.0, drop={"000001": [1]}, false_positives_per_frame=3)
    assert 1 not in frames[1].extra["identities"].tolist()
    assert (np.concatenate([f.extra["identities"] for f in frames]) == -1).sum() > 0


def test_ground_truth_from_mots_objects() -> None:
    mask = np.zeros((6, 8), np.uint8)
    mask[1:3, 2:5] = 1
    objects = [
        MOTSObject(2, 2005, 2, encode_mask(mask)),
        MOTSObject(2, 10000, 10, encode_mask(mask)),
        MOTSObject(4, 1003, 1, encode_mask(mask)),
    ]
    assert [f.frame for f in gt_frames_from_mots(objects, {2: 4})] == ["000002"]  # first to last object
    frames = gt_frames_from_mots(objects, {2: 4}, frame_names=["000002", "000003"])
    assert [f.frame for f in frames] == ["000002", "000003"]
    assert frames[0].identities.tolist() == [5] and frames[0].labels.tolist() == [4]
    assert len(frames[1]) == 0 and frames[1].image_size == (6, 8)
    assert mask_boxes(frames[0].rles).tolist() == [[2.0, 1.0, 5.0, 3.0]]


def test_benchmark_script_prints_one_json_line() -> None:
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "tracker_throughput.py"
    args = ["--frames", "4", "--objects", "3", "--height", "60", "--width", "80", "--runs", "1"]
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["objects_per_frame"] == 3 and result["frames"] == 4
    assert result["fps"] > 0 and result["fps_previous"] > 0 and result["camera_motion_ms"] > 0


def test_quality_benchmark_prints_the_workloads_json() -> None:
    script = Path(__file__).resolve().parents[2] / "benchmarks" / "tracker_quality.py"
    args = ["--frames", "12", "--height", "90", "--width", "160", "--runs", "1"]
    done = subprocess.run([sys.executable, str(script), *args], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    for name in ("crowd", "occlusion"):
        entry = result["workloads"][name]
        assert {"idf1", "hota", "idsw", "fps", "assa", "box"} <= set(entry)
        assert {"idf1", "hota", "idsw", "fps"} <= set(entry["previous"]) and entry["frames"] == 12
