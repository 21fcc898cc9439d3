"""STQ update throughput at 1920x1080: the project's ``STQ.update`` vs a straightforward NumPy reference.

The frames look like MOTChallenge-STEP: large stuff regions (sky, building, vegetation,
sidewalk) with ragged boundaries, 10-30 people (body + head silhouettes with track ids that
persist and move across frames, STEP's void rings around them, a crowd region) and a
prediction made from the ground truth with shifted masks, identity switches, missed and false
people, mislabelled stuff and 0.3 % salt noise. Both sides get identical input: the same
(H, W, 2) int32 (semantic, instance) arrays (the torch tensors are zero-copy views of them).

The reference is the textbook implementation (as in deeplab2's STQuality): panoptic ids
``semantic * divisor + instance`` as int64, ``np.unique`` for the confusion matrix and for
the tube, segment and intersection areas, Python dicts for accumulation. Everything runs on
one thread; each side's time is the median of several passes over the frames. Before timing,
the script asserts both give identical STQ, AQ, IoU and per-sequence numbers.

Run: ``python benchmarks/stq_throughput.py [--frames 12] [--repeats 5]``. The last line printed
is ``{"frames_per_s": ..., "reference_frames_per_s": ..., "ratio": ...}``.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import time
from collections import defaultdict

os.environ.setdefault("OMP_NUM_THREADS", "1")

import numpy as np
import torch

from hvps_lightning.metrics import STQ

HEIGHT, WIDTH = 1080, 1920
SIDEWALK, BUILDING, VEGETATION, SKY, PERSON, RIDER, BICYCLE = range(7)
NUM_CLASSES, THINGS, IGNORE, DIVISOR = 7, (PERSON,), 255, 1000


# ---------------------------------------------------------------------------------------------
# Frames
# ---------------------------------------------------------------------------------------------
def _stuff(rng: np.random.Generator, phase: float) -> np.ndarray:
    """Sky / building / vegetation / sidewalk bands with ragged, slowly moving boundaries."""
    x = np.arange(WIDTH)
    skyline = (260 + 90 * np.sin(x / 170.0 + phase) + 40 * np.sign(np.sin(x / 37.0))).astype(int)
    ground = (640 + 25 * np.sin(x / 300.0 + 0.5 * phase)).astype(int)
    rows = np.arange(HEIGHT)[:, None]
    semantic = np.full((HEIGHT, WIDTH), BUILDING, np.int32)
    semantic[rows < skyline[None, :]] = SKY
    semantic[rows >= ground[None, :]] = SIDEWALK
    trees = (
        (np.sin(x / 90.0 + phase) > 0.55)[None, :] & (rows > skyline[None, :] + 80) & (rows < ground[None, :])
    )
    semantic[trees] = VEGETATION
    return semantic


def _person(center_y: int, center_x: int, height: int) -> tuple[slice, slice, np.ndarray]:
    """Body ellipse + head disc of one person: (rows, cols, mask) within its bounding box."""
    width = max(8, height // 3)
    top, left = center_y - height // 2, center_x - width // 2
    ys, xs = np.mgrid[0:height, 0:width]
    body = ((ys - 0.62 * height) / (0.38 * height)) ** 2 + ((xs - width / 2) / (width / 2)) ** 2 <= 1
    head = (ys - 0.14 * height) ** 2 + (xs - width / 2) ** 2 <= (0.12 * height) ** 2
    mask = body | head
    rows = slice(max(top, 0), min(top + height, HEIGHT))
    cols = slice(max(left, 0), min(left + width, WIDTH))
    return rows, cols, mask[rows.start - top : rows.stop - top, cols.start - left : cols.stop - left]


def _paint(
    semantic: np.ndarray, instance: np.ndarray, people: list[tuple[int, int, int, int]], ring: bool
) -> None:
    for track_id, y, x, height in sorted(people, key=lambda p: p[1] + p[3] // 2):  # far first
        rows, cols, mask = _person(y, x, height)
        if mask.size == 0:
            continue
        if ring:  # STEP annotates a thin void ring around each person
            grown = np.zeros_like(mask)
            grown[1:, :] |= mask[:-1, :]
            grown[:-1, :] |= mask[1:, :]
            grown[:, 1:] |= mask[:, :-1]
            grown[:, :-1] |= mask[:, 1:]
            semantic[rows, cols][grown & ~mask] = IGNORE
            instance[rows, cols][grown & ~mask] = 0
        semantic[rows, cols][mask] = PERSON
        instance[rows, cols][mask] = track_id


def make_sequence(num_frames: int, seed: int = 0) -> list[tuple[np.ndarray, np.ndarray]]:
    """(target, prediction) pairs, each an (H, W, 2) int32 array of (semantic, instance)."""
    rng = np.random.default_rng(seed)
    num_people = int(rng.integers(10, 31))
    people = [
        [track_id, int(rng.integers(420, 1000)), int(rng.integers(0, WIDTH)), int(rng.integers(120, 420)),
         int(rng.integers(-6, 7))]
        for track_id in range(1, num_people + 1)
    ]  # fmt: skip
    swapped = {int(t): int(rng.integers(50, 90)) for t in rng.choice(num_people, 3, replace=False) + 1}
    frames = []
    for number in range(num_frames):
        for person in people:
            person[2] = (person[2] + person[4]) % WIDTH
        gt_semantic = _stuff(rng, 0.01 * number)
        gt_instance = np.zeros((HEIGHT, WIDTH), np.int32)
        visible = [(t, y, x, h) for t, y, x, h, _ in people if rng.random() > 0.05]
        _paint(gt_semantic, gt_instance, visible, ring=True)
        crowd = (slice(900, 960), slice(100, 400))
        gt_semantic[crowd], gt_instance[crowd] = PERSON, 0

        pred_semantic = _stuff(rng, 0.01 * number + 0.02)
        pred_semantic[500:560, 800:1100] = VEGETATION  # mislabelled stuff
        pred_instance = np.zeros((HEIGHT, WIDTH), np.int32)
        predicted = []
        for track_id, y, x, height in visible:
            if rng.random() < 0.08:
                continue  # missed
            track = swapped[track_id] if track_id in swapped and number >= num_frames // 2 else track_id
            predicted.append((track, y + int(rng.integers(-4, 5)), x + int(rng.integers(-4, 5)), height))
        predicted.append((99, 700, int(rng.integers(0, WIDTH)), 200))  # a false person
        _paint(pred_semantic, pred_instance, predicted, ring=False)
        noise = rng.random((HEIGHT, WIDTH)) < 0.003
        pred_semantic[noise] = rng.integers(0, 4, int(noise.sum()))
        pred_instance[noise] = 0
        target = np.ascontiguousarray(np.stack([gt_semantic, gt_instance], -1), dtype=np.int32)
        prediction = np.ascontiguousarray(np.stack([pred_semantic, pred_instance], -1), dtype=np.int32)
        frames.append((target, prediction))
    return frames


# ---------------------------------------------------------------------------------------------
# The straightforward NumPy reference
# ---------------------------------------------------------------------------------------------
class NumpyReferenceSTQ:
    """np.unique-based STQ accumulation (deeplab2 STQuality style) for one label space."""

    def __init__(self) -> None:
        self.size = NUM_CLASSES + 1
        self.confusion: dict[str, np.ndarray] = {}
        self.tubes: dict[str, dict[int, int]] = defaultdict(dict)
        self.segments: dict[str, dict[int, int]] = defaultdict(dict)
        self.overlaps: dict[str, dict[int, int]] = defaultdict(dict)

    @staticmethod
    def _add(stats: dict[int, int], ids: np.ndarray) -> None:
        values, counts = np.unique(ids, return_counts=True)
        for value, count in zip(values.tolist(), counts.tolist(), strict=True):
            stats[value] = stats.get(value, 0) + count

    def update(self, target: np.ndarray, prediction: np.ndarray, sequence: str) -> None:
        gt_semantic = target[..., 0].astype(np.int64)
        pred_semantic = prediction[..., 0].astype(np.int64)
        gt_panoptic = gt_semantic * DIVISOR + target[..., 1]
        pred_panoptic = pred_semantic * DIVISOR + prediction[..., 1]
        gt_class = np.where(gt_semantic == IGNORE, NUM_CLASSES, gt_semantic)
        pred_class = np.where(pred_semantic == IGNORE, NUM_CLASSES, pred_semantic)
        confusion = self.confusion.setdefault(sequence, np.zeros((self.size, self.size), np.int64))
        values, counts = np.unique(gt_class * self.size + pred_class, return_counts=True)
        confusion[values // self.size, values % self.size] += counts

        gt_thing = np.isin(gt_semantic, THINGS)
        crowd = gt_thing & (target[..., 1] == 0)
        in_tube = gt_thing & ~crowd
        in_segment = np.isin(pred_semantic, THINGS) & ~crowd
        self._add(self.tubes[sequence], gt_panoptic[in_tube])
        self._add(self.segments[sequence], pred_panoptic[in_segment])
        both = in_tube & in_segment
        self._add(self.overlaps[sequence], gt_panoptic[both] * (1 << 32) + pred_panoptic[both])

    def result(self) -> dict[str, float]:
        aq_sum, tubes = 0.0, 0
        per_sequence = {}
        total = np.zeros((self.size, self.size), np.int64)
        for sequence, confusion in self.confusion.items():
            confusion = confusion.copy()
            confusion[NUM_CLASSES, :] = 0
            total += confusion
            seq_aq = 0.0
            for key, overlap in self.overlaps[sequence].items():
                gt_size, pred_size = (
                    self.tubes[sequence][key >> 32],
                    self.segments[sequence][key & (2**32 - 1)],
                )
                seq_aq += overlap * overlap / (gt_size + pred_size - overlap) / gt_size
            aq_sum += seq_aq
            tubes += len(self.tubes[sequence])
            per_sequence[sequence] = (seq_aq / max(len(self.tubes[sequence]), 1e-15), _mean_iou(confusion))
        aq, iou = aq_sum / max(tubes, 1e-15), _mean_iou(total)
        return {"stq": math.sqrt(aq * iou), "aq": aq, "iou": iou, "per_sequence": per_sequence}


def _mean_iou(confusion: np.ndarray) -> float:
    tp = np.diag(confusion).astype(np.float64)
    union = confusion.sum(0) + confusion.sum(1) - tp
    return float(np.sum(tp / np.maximum(union, 1e-15)) / np.count_nonzero(union))


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------
def time_project(frames: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, STQ]:
    metric = STQ(NUM_CLASSES, THINGS, IGNORE, DIVISOR)
    tensors = [(torch.from_numpy(t)[None], torch.from_numpy(p)[None]) for t, p in frames]
    start = time.perf_counter()
    for target, prediction in tensors:
        metric.update(prediction, target, ["0002"])
    return time.perf_counter() - start, metric


def time_reference(frames: list[tuple[np.ndarray, np.ndarray]]) -> tuple[float, NumpyReferenceSTQ]:
    reference = NumpyReferenceSTQ()
    start = time.perf_counter()
    for target, prediction in frames:
        reference.update(target, prediction, "0002")
    return time.perf_counter() - start, reference


def assert_identical(metric: STQ, reference: NumpyReferenceSTQ) -> None:
    ours, theirs = metric.compute(), reference.result()
    for key, their_key in (("stq", "stq"), ("aq", "aq"), ("sq", "iou")):
        assert abs(ours[key] - theirs[their_key]) <= 1e-12, (key, ours[key], theirs[their_key])
    for sequence, (aq, iou) in theirs["per_sequence"].items():
        assert abs(ours["per_sequence"][sequence]["aq"] - aq) <= 1e-12
        assert abs(ours["per_sequence"][sequence]["sq"] - iou) <= 1e-12


def measure(frames: list[tuple[np.ndarray, np.ndarray]], repeats: int) -> tuple[float, float, dict]:
    """(project frames/s, reference frames/s, project result) after checking equal results."""
    time_project(frames[:2])  # warm-up
    time_reference(frames[:2])
    _, metric = time_project(frames)
    _, reference = time_reference(frames)
    assert_identical(metric, reference)
    project_times, reference_times = [], []
    for _ in range(repeats):  # interleaved, so that load on the machine hits both sides alike
        project_times.append(time_project(frames)[0])
        reference_times.append(time_reference(frames)[0])
    fps = len(frames) / statistics.median(project_times)
    reference_fps = len(frames) / statistics.median(reference_times)
    return fps, reference_fps, metric.compute()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=12, help="frames per pass")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per side (median)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    frames32 = make_sequence(args.frames)
    # What `hvps evaluate step` feeds: a STEP PNG's 8-bit class and 16-bit instance as uint16.
    frames16 = [(t.astype(np.uint16), p.astype(np.uint16)) for t, p in frames32]
    people = len(np.unique(frames32[0][0][..., 1])) - 1
    runs = sum(
        int(np.count_nonzero(np.any(np.diff(np.concatenate([t, p], -1).reshape(-1, 4), axis=0) != 0, axis=1)))
        for t, p in frames32
    ) / (len(frames32) * HEIGHT * WIDTH)

    fps32, reference_fps32, _ = measure(frames32, args.repeats)
    fps, reference_fps, result = measure(frames16, args.repeats)
    print(
        f"{len(frames16)} frames {WIDTH}x{HEIGHT}, {people} people in frame 0, runs/pixels {runs:.4f}; "
        f"STQ {result['stq']:.4f} AQ {result['aq']:.4f} SQ {result['sq']:.4f} (identical to the reference)"
    )
    print(
        f"int32 input: project {1000 / fps32:.2f} ms/frame, reference {1000 / reference_fps32:.2f} ms/frame, "
        f"ratio {fps32 / reference_fps32:.2f}"
    )
    print(
        f"uint16 input (as `hvps evaluate step`): project {1000 / fps:.2f} ms/frame, "
        f"reference {1000 / reference_fps:.2f} ms/frame, ratio {fps / reference_fps:.2f}"
    )
    print(
        json.dumps(
            {"frames_per_s": fps, "reference_frames_per_s": reference_fps, "ratio": fps / reference_fps}
        )
    )


if __name__ == "__main__":
    main()
