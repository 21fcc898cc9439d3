"""STQ update throughput at 1920x1080 per input dtype: the project's ``STQ.update`` vs deeplab2's NumPy STQ.

The reference is deeplab2's own ``STQuality`` (``evaluation/numpy/segmentation_and_tracking_
quality.py``, the official STEP implementation) when ``$DEEPLAB2_DIR`` points at a checkout of
google-research/deeplab2 (only that file is loaded; nothing of it is copied here), otherwise
the textbook NumPy implementation below (np.unique per statistic, Python dicts), which is
slower than deeplab2's. The JSON says which one ran.

The frames look like MOTChallenge-STEP: large stuff regions (sky, building, vegetation,
sidewalk) with ragged boundaries, 27 people (body + head silhouettes with track ids that
persist and move across frames, STEP's void rings around them, a crowd region) and a
prediction made from the ground truth with shifted masks, identity switches, missed and false
people, mislabelled stuff and 0.3 % salt noise. For each dtype (int64 = torch.long, int32,
uint16) the project gets (1, H, W, 2) (semantic, instance) tensors of that dtype (zero-copy
views of the arrays); the reference gets the same labels as its panoptic maps ``semantic << 16
| instance`` (int64, or int32 where the input is narrower); the limit is one read of the
project's input (``max`` over the target and prediction arrays, vectorised and memory-bound).

Timing: one thread; every pass over the frames is timed with the thread's CPU clock (other
agents share this machine's cores: wall time would measure their load, CPU time measures the
work), the three sides interleaved pass by pass, medians of ``--repeats`` passes. Before
timing, the script asserts that the project and the reference give the same STQ, AQ, IoU and
per-sequence numbers (to 1e-12 against the internal reference; to 1e-6 against deeplab2,
whose areas and AQ terms are float32).

Run: ``python benchmarks/stq_throughput.py [--frames 8] [--repeats 5]`` (``DEEPLAB2_DIR=...``
for the official reference). The last line printed is
``{"reference": "deeplab2"|"internal", "int64": {"ratio": .., "limit_ratio": .., ...},
"int32": {...}, "uint16": {...}}`` with ``ratio`` = project / reference frames per second and
``limit_ratio`` = project / single-read frames per second.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import math
import os
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

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


def make_sequence(
    num_frames: int, seed: int = 0, num_people: int | None = None
) -> list[tuple[np.ndarray, np.ndarray]]:
    """(target, prediction) pairs, each an (H, W, 2) int32 array of (semantic, instance)."""
    rng = np.random.default_rng(seed)
    num_people = int(rng.integers(10, 31)) if num_people is None else num_people
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
# deeplab2
# ---------------------------------------------------------------------------------------------
DEEPLAB2_FILE = Path("evaluation") / "numpy" / "segmentation_and_tracking_quality.py"
LABEL_BIT_SHIFT = 16


def load_deeplab2(checkout: str) -> Any:
    """deeplab2's NumPy STQ module, loaded from its one file (it needs NumPy only)."""
    path = Path(checkout) / DEEPLAB2_FILE
    if not path.is_file():
        raise SystemExit(f"$DEEPLAB2_DIR={checkout}: no {DEEPLAB2_FILE} there")
    spec = importlib.util.spec_from_file_location("deeplab2_numpy_stq", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


class Deeplab2Reference:
    """deeplab2's ``STQuality`` fed panoptic maps ``semantic << 16 | instance``."""

    def __init__(self, module: Any) -> None:
        self.metric = module.STQuality(NUM_CLASSES, list(THINGS), IGNORE, LABEL_BIT_SHIFT, 2**32)

    @staticmethod
    def panoptic(labels: np.ndarray) -> np.ndarray:
        wide = np.int64 if labels.dtype == np.int64 else np.int32
        return (labels[..., 0].astype(wide) << LABEL_BIT_SHIFT) | labels[..., 1].astype(wide)

    def update(self, target: np.ndarray, prediction: np.ndarray, sequence: str) -> None:
        self.metric.update_state(target, prediction, sequence)

    def result(self) -> dict[str, Any]:
        result = self.metric.result()
        per_sequence = {
            sequence: (float(aq), float(iou))
            for sequence, aq, iou in zip(
                result["ID_per_seq"], result["AQ_per_seq"], result["IoU_per_seq"], strict=True
            )
        }
        return {
            "stq": float(result["STQ"]),
            "aq": float(result["AQ"]),
            "iou": float(result["IoU"]),
            "per_sequence": per_sequence,
        }


@dataclass(frozen=True)
class Reference:
    """A reference implementation: its name, a fresh instance, its input and how close it must agree."""

    name: str
    make: Callable[[], Any]
    convert: Callable[[np.ndarray], np.ndarray]
    tolerance: float


def reference_from_environment() -> Reference:
    """deeplab2's STQ if ``$DEEPLAB2_DIR`` is set, else the internal textbook one."""
    checkout = os.environ.get("DEEPLAB2_DIR")
    if checkout:
        module = load_deeplab2(checkout)
        return Reference("deeplab2", lambda: Deeplab2Reference(module), Deeplab2Reference.panoptic, 1e-6)
    return Reference("internal", NumpyReferenceSTQ, lambda labels: labels, 1e-12)


# ---------------------------------------------------------------------------------------------
# Timing
# ---------------------------------------------------------------------------------------------
Frames = list[tuple[np.ndarray, np.ndarray]]
SEQUENCE = "0002"


def run_project(frames: Frames) -> tuple[float, STQ]:
    metric = STQ(NUM_CLASSES, THINGS, IGNORE, DIVISOR)
    tensors = [(torch.from_numpy(t)[None], torch.from_numpy(p)[None]) for t, p in frames]
    start = time.thread_time()
    for target, prediction in tensors:
        metric.update(prediction, target, [SEQUENCE])
    return time.thread_time() - start, metric


def run_reference(make: Callable[[], Any], inputs: Frames) -> tuple[float, Any]:
    reference = make()
    start = time.thread_time()
    for target, prediction in inputs:
        reference.update(target, prediction, SEQUENCE)
    return time.thread_time() - start, reference


def run_read(frames: Frames) -> tuple[float, None]:
    start = time.thread_time()
    for target, prediction in frames:
        target.max()
        prediction.max()
    return time.thread_time() - start, None


def assert_identical(metric: STQ, reference: Any, tolerance: float) -> None:
    ours, theirs = metric.compute(), reference.result()
    for key, their_key in (("stq", "stq"), ("aq", "aq"), ("sq", "iou")):
        assert abs(ours[key] - theirs[their_key]) <= tolerance, (key, ours[key], theirs[their_key])
    assert set(ours["per_sequence"]) == set(theirs["per_sequence"])
    for sequence, (aq, iou) in theirs["per_sequence"].items():
        assert abs(ours["per_sequence"][sequence]["aq"] - aq) <= tolerance, (sequence, "aq")
        assert abs(ours["per_sequence"][sequence]["sq"] - iou) <= tolerance, (sequence, "sq")


def measure(frames: Frames, reference: Reference, repeats: int) -> dict:
    """Frames per second of the project, the reference and one read, after checking equal results."""
    reference_inputs = [(reference.convert(t), reference.convert(p)) for t, p in frames]
    _, metric = run_project(frames)  # also the warm-up
    _, filled = run_reference(reference.make, reference_inputs)
    assert_identical(metric, filled, reference.tolerance)
    times: dict[str, list[float]] = {"project": [], "reference": [], "read": []}
    for _ in range(repeats):  # interleaved, so that load on the machine hits every side alike
        times["project"].append(run_project(frames)[0])
        times["reference"].append(run_reference(reference.make, reference_inputs)[0])
        times["read"].append(run_read(frames)[0])
    fps = {side: len(frames) / statistics.median(values) for side, values in times.items()}
    return {
        "ratio": fps["project"] / fps["reference"],
        "limit_ratio": fps["project"] / fps["read"],
        "frames_per_s": fps["project"],
        "reference_frames_per_s": fps["reference"],
        "limit_frames_per_s": fps["read"],
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=8, help="frames per pass")
    parser.add_argument("--repeats", type=int, default=5, help="timed passes per side (median)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    reference = reference_from_environment()
    name = reference.name
    frames32 = make_sequence(args.frames, num_people=27)
    people = len(np.unique(frames32[0][0][..., 1])) - 1
    runs = sum(
        int(np.count_nonzero(np.any(np.diff(np.concatenate([t, p], -1).reshape(-1, 4), axis=0) != 0, axis=1)))
        for t, p in frames32
    ) / (len(frames32) * HEIGHT * WIDTH)
    print(
        f"{len(frames32)} frames {WIDTH}x{HEIGHT}, {people} people in frame 0, runs/pixels {runs:.4f}; "
        f"reference: {name}; clock: thread CPU time, one thread"
    )
    summary: dict[str, Any] = {"reference": name}
    for dtype in (np.int64, np.int32, np.uint16):
        frames = [(t.astype(dtype), p.astype(dtype)) for t, p in frames32]
        numbers = measure(frames, reference, args.repeats)
        summary[np.dtype(dtype).name] = numbers
        print(
            f"{np.dtype(dtype).name:>6}: project {1000 / numbers['frames_per_s']:6.2f} ms/frame, "
            f"{name} {1000 / numbers['reference_frames_per_s']:6.2f} ms/frame, "
            f"one read {1000 / numbers['limit_frames_per_s']:5.2f} ms/frame; ratio {numbers['ratio']:.1f}, "
            f"limit ratio {numbers['limit_ratio']:.2f} (identical numbers)"
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
