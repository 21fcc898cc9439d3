"""Shared helpers of the metric tests: a slow, obviously correct STQ written from the definition in
docs/ARCHITECTURE.md "Metrics, exactly",
and small STEP folders for ``hvps evaluate step``."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Sequence
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest

from hvps_lightning.cli import main
from hvps_lightning.formats.step_png import write_step_png

Frame = tuple[Any, np.ndarray, np.ndarray]  # (sequence id, target (H, W, 2), preds (H, W, 2))


def slow_reference_stq(
    frames: Sequence[Frame], num_classes: int, things: Sequence[int], ignore_label: int
) -> dict[str, Any]:
    """STQ pixel by pixel with dicts, one rule of docs/ARCHITECTURE.md "Metrics, exactly" per line."""
    void = num_classes if ignore_label >= num_classes else ignore_label
    size = num_classes + 1 if ignore_label >= num_classes else num_classes
    confusion: dict[Any, dict[tuple[int, int], int]] = defaultdict(lambda: defaultdict(int))
    tube_area: dict[Any, dict[tuple[int, int], int]] = defaultdict(lambda: defaultdict(int))
    segment_area: dict[Any, dict[tuple[int, int], int]] = defaultdict(lambda: defaultdict(int))
    overlap: dict[Any, dict[tuple, int]] = defaultdict(lambda: defaultdict(int))
    num_frames = 0
    for sequence, target, preds in frames:
        num_frames += 1
        confusion[sequence]  # a sequence exists once it has a frame
        for (gs, gi), (ps, pi) in zip(
            target.reshape(-1, 2).tolist(), preds.reshape(-1, 2).tolist(), strict=True
        ):
            row = void if gs == ignore_label else gs
            col = void if ps == ignore_label else ps
            confusion[sequence][(row, col)] += 1
            crowd = gs in things and gi == 0
            in_tube = gs in things and not crowd
            in_segment = ps in things and not crowd
            if in_tube:
                tube_area[sequence][(gs, gi)] += 1
            if in_segment:
                segment_area[sequence][(ps, pi)] += 1
            if in_tube and in_segment:
                overlap[sequence][((gs, gi), (ps, pi))] += 1

    def mean_iou(conf: dict[tuple[int, int], int]) -> tuple[float, list[float]]:
        total, count, per_class = 0.0, 0, []
        for c in range(size):
            tp = conf.get((c, c), 0) if c != void else 0
            fp = sum(v for (g, p), v in conf.items() if p == c and g != c and g != void)
            fn = sum(v for (g, p), v in conf.items() if g == c and p != c) if c != void else 0
            union = tp + fp + fn
            per_class.append(tp / union if union else math.nan)
            if union:
                total += tp / union
                count += 1
        return (total / count if count else math.nan), per_class

    def aq_sum(sequence: Any) -> float:
        total = 0.0
        for tube, g_size in tube_area[sequence].items():
            inner = 0.0
            for segment, p_size in segment_area[sequence].items():
                tpa = overlap[sequence].get((tube, segment), 0)
                if tpa:
                    inner += tpa * tpa / (g_size + p_size - tpa)
            total += inner / g_size
        return total

    per_sequence = {}
    all_confusion: dict[tuple[int, int], int] = defaultdict(int)
    total_aq, total_tubes = 0.0, 0
    for sequence, conf in confusion.items():
        for key, value in conf.items():
            all_confusion[key] += value
        seq_iou, _ = mean_iou(conf)
        tubes = len(tube_area[sequence])
        seq_aq = aq_sum(sequence) / tubes if tubes else 0.0
        total_aq += aq_sum(sequence)
        total_tubes += tubes
        per_sequence[sequence] = {"stq": math.sqrt(seq_aq * seq_iou), "aq": seq_aq, "sq": seq_iou}
    iou, per_class = mean_iou(all_confusion)
    aq = total_aq / total_tubes if total_tubes else 0.0
    return {
        "stq": math.sqrt(aq * iou),
        "aq": aq,
        "sq": iou,
        "class_iou": per_class,
        "per_sequence": per_sequence,
        "num_frames": num_frames,
    }


def assert_close(actual: float, expected: float, tol: float = 1e-9) -> None:
    """Equal within ``tol``, NaN equal to NaN."""
    if math.isnan(expected):
        assert math.isnan(actual), f"expected NaN, got {actual}"
    else:
        assert abs(actual - expected) <= tol, f"{actual} != {expected}"


def assert_same_stq(actual: dict[str, Any], expected: dict[str, Any], tol: float = 1e-9) -> None:
    """Compare two STQ result dicts (per_sequence included)."""
    for key in ("stq", "aq", "sq"):
        assert_close(actual[key], expected[key], tol)
    assert set(actual["per_sequence"]) == set(expected["per_sequence"])
    for sequence, values in expected["per_sequence"].items():
        for key in ("stq", "aq", "sq"):
            assert_close(actual["per_sequence"][sequence][key], values[key], tol)
    assert actual["num_frames"] == expected["num_frames"]


@pytest.fixture
def reference_stq() -> Callable[..., dict[str, Any]]:
    """The slow reference STQ."""
    return slow_reference_stq


@pytest.fixture
def stq_close() -> Callable[..., None]:
    """Assert two STQ result dicts are equal within a tolerance."""
    return assert_same_stq


# ------------------------------------------------------------------ hvps evaluate step folders
PERSON = 4  # motchallenge_step


def write_step_folders(root: Path, seed: int = 0) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Two sequences of three 12 x 20 frames in gt/ and pred/; returns the (target, preds) pairs."""
    rng = np.random.default_rng(seed)
    pairs: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for sequence in ("0002", "0009"):
        for number in range(3):
            semantic = np.repeat(rng.choice([0, 1, 3, PERSON, 255], (12, 1)), 20, axis=1)
            instance = np.where(semantic == PERSON, rng.integers(1, 4, (12, 20)), 0)
            pred_semantic = np.where(
                rng.random((12, 20)) < 0.2, rng.choice([0, 2, PERSON], (12, 20)), semantic
            )
            pred_instance = np.where(pred_semantic == PERSON, rng.integers(0, 3, (12, 20)), 0)
            write_step_png(root / "gt" / sequence / f"{number:06d}.png", semantic, instance)
            write_step_png(root / "pred" / sequence / f"{number:06d}.png", pred_semantic, pred_instance)
            pairs.setdefault(sequence, []).append(
                (np.stack([semantic, instance], -1), np.stack([pred_semantic, pred_instance], -1))
            )
    return pairs


def evaluate_step(tmp_path: Path, *extra: str) -> tuple[int, Path]:
    output = tmp_path / "out" / "stq.json"
    args = ["evaluate", "step", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")]
    code = main([*args, *(extra or ("--dataset", "motchallenge_step")), "--output", str(output)])
    return code, output


def assert_user_error(capsys: pytest.CaptureFixture[str], code: int, *fragments: str) -> None:
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith("hvps evaluate: error:") and "Traceback" not in err
    assert len(err.strip().splitlines()) == 1
    for fragment in fragments:
        assert fragment in err, err


@pytest.fixture
def step_cli() -> SimpleNamespace:
    """``write_step_folders``, ``evaluate_step`` and ``assert_user_error`` for the CLI tests."""
    return SimpleNamespace(
        write_step_folders=write_step_folders,
        evaluate_step=evaluate_step,
        assert_user_error=assert_user_error,
    )
