"""STQ: published reference cases, the reference quirks, random cases against a slow reference."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from stq_random import random_stq_frames

from hvps_lightning.metrics import STQ, functional_stq, segmentation_and_tracking_quality, sequence_key
from hvps_lightning.metrics.functional_stq import stq_batch_statistics
from hvps_lightning.metrics.stq_inputs import STQInputError, STQLabelSpace

CASES = json.loads((Path(__file__).parents[1] / "data" / "stq_published_cases.json").read_text())["cases"]


def frame(semantic: list[list[int]], instance: list[list[int]]) -> np.ndarray:
    return np.stack([np.asarray(semantic), np.asarray(instance)], axis=-1)


def batch(*frames: np.ndarray, dtype: torch.dtype = torch.int64) -> torch.Tensor:
    return torch.from_numpy(np.stack(frames)).to(dtype)


@pytest.mark.parametrize("case", CASES, ids=[c["name"] for c in CASES])
def test_published_cases(case: dict) -> None:
    metric = STQ(case["num_classes"], case["things"], case["ignore_label"], class_names=case["class_names"])
    for sequence in case["sequences"]:
        for f in sequence["frames"]:
            target = frame(f["gt_semantic"], f["gt_instance"])
            preds = frame(f["pred_semantic"], f["pred_instance"])
            metric.update(batch(preds), batch(target), [sequence["sequence_id"]])
    result = metric.compute()
    expected = case["expected"]
    assert result["stq"] == pytest.approx(expected["stq"], abs=1e-6)
    assert result["aq"] == pytest.approx(expected["aq"], abs=1e-6)
    assert result["sq"] == pytest.approx(expected["iou"], abs=1e-6)
    # one sequence: its numbers are the overall ones
    (only,) = result["per_sequence"].values()
    assert only["stq"] == pytest.approx(result["stq"], abs=1e-12)


def test_published_cases_as_sequences_of_one_metric(reference_stq) -> None:
    """All published cases as sequences of one metric: per-sequence numbers keep their values."""
    metric = STQ(3, [2], 255)
    frames = []
    for number, case in enumerate(CASES):
        # the basic cases use class 0 as the thing: move it to class 2, the thing of complex_example
        move = case["things"] == [0]
        for f in case["sequences"][0]["frames"]:
            gt_semantic, pred_semantic = np.asarray(f["gt_semantic"]), np.asarray(f["pred_semantic"])
            if move:
                gt_semantic, pred_semantic = (
                    np.where(gt_semantic == 0, 2, gt_semantic),
                    np.where(pred_semantic == 0, 2, pred_semantic),
                )
            target, preds = frame(gt_semantic, f["gt_instance"]), frame(pred_semantic, f["pred_instance"])
            metric.update(batch(preds), batch(target), f"case-{number}")
            frames.append((f"case-{number}", target, preds))
    result = metric.compute()
    expected = reference_stq(frames, 3, [2], 255)
    assert result["aq"] == pytest.approx(expected["aq"], abs=1e-12)
    for number, case in enumerate(CASES):
        assert result["per_sequence"][f"case-{number}"]["aq"] == pytest.approx(
            case["expected"]["aq"], abs=1e-6
        )


def test_aq_is_weighted_by_tubes_not_by_sequences() -> None:
    two_tubes = frame([[1, 1, 1, 1]], [[1, 1, 2, 2]])  # predicted perfectly: AQ 1
    one_tube = frame([[1, 1, 1, 1]], [[1, 1, 1, 1]])
    split = frame([[1, 1, 1, 1]], [[1, 2, 3, 4]])  # four 1 px segments: AQ 4 * (1 * 1/4) / 4
    metric = STQ(2, [1], 255)
    metric.update(batch(two_tubes, split), batch(two_tubes, one_tube), ["a", "b"])
    result = metric.compute()
    assert result["per_sequence"]["a"]["aq"] == pytest.approx(1.0)
    assert result["per_sequence"]["b"]["aq"] == pytest.approx(0.25)
    assert result["aq"] == pytest.approx((2 * 1.0 + 1 * 0.25) / 3)


def test_crowd_is_removed_from_ground_truth_and_prediction() -> None:
    # class 1 is a thing; GT instance 0 on a thing = crowd
    target = frame([[1, 1, 1, 1]], [[0, 0, 7, 7]])
    preds = frame([[1, 1, 1, 1]], [[3, 3, 3, 3]])
    result = segmentation_and_tracking_quality(batch(preds), batch(target), [0], num_classes=2, things=[1])
    # the crowd pixels vanish from the predicted segment: tube 7 (2 px) vs segment 3 (2 px left)
    assert result["aq"] == pytest.approx(1.0)
    assert result["sq"] == pytest.approx(1.0)


def test_predicted_things_on_void_and_stuff_count_as_false_positives() -> None:
    # GT: stuff(0), void, tube (1, 5), tube (1, 5); prediction: one segment over all four pixels
    target = frame([[0, 255, 1, 1]], [[0, 0, 5, 5]])
    preds = frame([[1, 1, 1, 1]], [[9, 9, 9, 9]])
    result = segmentation_and_tracking_quality(batch(preds), batch(target), [0], num_classes=2, things=[1])
    # TPA = 2, |p| = 4, |g| = 2: AQ = (1/2) * 2 * 2 / 4
    assert result["aq"] == pytest.approx(0.5)


def test_predicted_things_with_instance_zero_form_a_segment() -> None:
    target = frame([[1, 1, 1, 1]], [[5, 5, 5, 5]])
    preds = frame([[1, 1, 1, 1]], [[0, 0, 2, 2]])
    result = segmentation_and_tracking_quality(batch(preds), batch(target), [0], num_classes=2, things=[1])
    # two segments of 2 px each over one 4 px tube: (1/4) * (2 * 2/4 + 2 * 2/4)
    assert result["aq"] == pytest.approx(0.5)


def test_matching_ignores_the_class() -> None:
    target = frame([[1, 1, 2, 2]], [[5, 5, 5, 5]])  # two tubes: (1, 5) and (2, 5)
    preds = frame([[2, 2, 2, 2]], [[5, 5, 5, 5]])  # one segment (2, 5) over both
    result = segmentation_and_tracking_quality(batch(preds), batch(target), [0], num_classes=3, things=[1, 2])
    # each tube: TPA 2, union 4 -> (1/2) * 2 * 2/4 = 0.5
    assert result["aq"] == pytest.approx(0.5)


def test_void_column_quirk_adds_a_class_with_iou_zero() -> None:
    target = frame([[0, 0, 1, 1]], [[0, 0, 0, 0]])
    preds = frame([[0, 0, 1, 255]], [[0, 0, 0, 0]])
    metric = STQ(2, [], 255, class_names=["road", "sky"])
    metric.update(batch(preds), batch(target), ["s"])
    result = metric.compute()
    # road 1, sky 1/2, void column 0 -> mean over three "classes"
    assert result["sq"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert result["iou_per_class"] == {"road": 1.0, "sky": 0.5}
    assert result["aq"] == 0.0  # no tubes anywhere
    assert result["stq"] == 0.0


def test_prediction_on_ground_truth_void_does_not_count() -> None:
    target = frame([[0, 0, 255, 255]], [[0, 0, 0, 0]])
    preds = frame([[0, 0, 1, 1]], [[0, 0, 0, 0]])
    result = segmentation_and_tracking_quality(batch(preds), batch(target), [0], num_classes=2, things=[])
    assert result["sq"] == pytest.approx(1.0)
    assert math.isnan(result["iou_per_class"]["1"])


def test_all_void_sequence_has_nan_iou_and_stq() -> None:
    void = frame([[255, 255]], [[0, 0]])
    good = frame([[0, 1]], [[0, 4]])
    metric = STQ(2, [1], 255)
    metric.update(batch(void, good), batch(void, good), ["empty", "full"])
    result = metric.compute()
    assert math.isnan(result["per_sequence"]["empty"]["sq"])
    assert math.isnan(result["per_sequence"]["empty"]["stq"])
    assert result["per_sequence"]["empty"]["aq"] == 0.0
    assert result["per_sequence"]["full"] == {"stq": 1.0, "aq": 1.0, "sq": 1.0}
    assert result["stq"] == pytest.approx(1.0)


def test_track_ids_are_per_sequence() -> None:
    f1 = frame([[1, 1]], [[3, 3]])
    f2 = frame([[1, 1]], [[3, 3]])
    pred = frame([[1, 1]], [[8, 8]])
    metric = STQ(2, [1], 255)
    # same GT and predicted ids in two sequences: two tubes, each perfectly matched
    metric.update(batch(pred, pred), batch(f1, f2), ["a", "b"])
    assert metric.compute()["aq"] == pytest.approx(1.0)
    # in one sequence, the same two frames make one tube: still 1.0; but a second predicted id breaks it
    metric = STQ(2, [1], 255)
    metric.update(batch(pred, frame([[1, 1]], [[9, 9]])), batch(f1, f2), ["a", "a"])
    assert metric.compute()["aq"] == pytest.approx(0.5)  # tube of 4 px: 2 * (2 * 2/4) / 4


def test_int_and_str_sequence_ids_are_distinct() -> None:
    assert sequence_key(1) != sequence_key("1")
    metric = STQ(2, [1], 255)
    f = frame([[1, 0]], [[2, 0]])
    metric.update(batch(f, f), batch(f, f), [1, "1"])
    result = metric.compute()
    assert list(result["per_sequence"]) == [1, "1"]
    assert result["num_frames"] == 2


def test_ignore_label_inside_the_class_range(reference_stq) -> None:
    # ignore label 0 is a class index: its row is dropped, its column kept
    target = frame([[0, 1, 2, 2]], [[0, 0, 1, 1]])
    preds = frame([[1, 1, 2, 0]], [[0, 0, 1, 0]])
    frames = [("s", target, preds)]
    from_metric = segmentation_and_tracking_quality(
        batch(preds), batch(target), ["s"], 3, [2], ignore_label=0
    )
    expected = reference_stq(frames, 3, [2], 0)
    assert from_metric["sq"] == pytest.approx(expected["sq"])
    assert from_metric["aq"] == pytest.approx(expected["aq"])


@pytest.mark.parametrize("use_numpy", [True, False], ids=["numpy", "torch"])
@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16, torch.uint16, torch.int32, torch.int64])
def test_input_dtypes_give_equal_results(
    dtype: torch.dtype, use_numpy: bool, reference_stq, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(functional_stq, "USE_NUMPY_ON_CPU", use_numpy)
    rng = np.random.default_rng(3)
    target = np.stack([rng.choice([0, 1, 2, 255], (2, 5, 7)), rng.integers(0, 4, (2, 5, 7))], -1)
    preds = np.stack([rng.choice([0, 1, 2, 255], (2, 5, 7)), rng.integers(0, 4, (2, 5, 7))], -1)
    metric = STQ(3, [1, 2], 255)
    metric.update(torch.from_numpy(preds).to(dtype), torch.from_numpy(target).to(dtype), ["a", "b"])
    expected = reference_stq([("a", target[0], preds[0]), ("b", target[1], preds[1])], 3, [1, 2], 255)
    result = metric.compute()
    for key in ("stq", "aq", "sq"):
        assert result[key] == pytest.approx(expected[key], abs=1e-12)


def test_runs_do_not_cross_batch_items() -> None:
    """Equal last pixel of one item and first pixel of the next: still two sequences' pixels."""
    space = STQLabelSpace(2, (1,), 255)
    same = frame([[1, 1], [1, 1]], [[3, 3], [3, 3]])
    confusion, pairs, frames = stq_batch_statistics(batch(same, same), batch(same, same), [0, 1], 2, space)
    assert frames.tolist() == [1, 1]
    assert confusion[:, 1, 1].tolist() == [4, 4]
    assert sorted(pairs.tolist()) == [
        [0, 1 * 65536 + 3, 1 * 65536 + 3, 4],
        [1, 1 * 65536 + 3, 1 * 65536 + 3, 4],
    ]


@pytest.mark.parametrize(
    ("target_semantic", "pred_semantic", "pred_instance", "which"),
    [
        (5, 0, 0, "target"),  # semantic id outside the classes
        (0, 7, 0, "preds"),
        (0, -1, 0, "preds"),
        (0, 1, 70000, "preds"),  # instance of a thing pixel >= label_divisor
    ],
)
def test_invalid_labels_raise(
    target_semantic: int, pred_semantic: int, pred_instance: int, which: str
) -> None:
    target = frame([[target_semantic, 0]], [[0, 0]])
    preds = frame([[pred_semantic, 0]], [[pred_instance, 0]])
    metric = STQ(2, [1], 255)
    with pytest.raises(STQInputError) as info:
        metric.update(batch(preds), batch(target), ["s"])
    assert info.value.which == which


def test_bad_shapes_and_arguments_raise() -> None:
    metric = STQ(2, [1], 255)
    f = batch(frame([[0, 1]], [[0, 1]]))
    with pytest.raises(ValueError, match="one shape"):
        metric.update(f, f[:, :, :1], ["s"])
    with pytest.raises(ValueError, match="sequence ids"):
        metric.update(f, f, ["a", "b"])
    with pytest.raises(ValueError, match="integer"):
        metric.update(f.float(), f, ["a"])
    with pytest.raises(TypeError):
        metric.update(f, f, [1.5])
    with pytest.raises(ValueError, match="things"):
        STQ(2, [2], 255)
    with pytest.raises(ValueError, match="class names"):
        STQ(2, [1], 255, class_names=["a"])


def test_reset_and_compute_without_data() -> None:
    metric = STQ(2, [1], 255)
    f = batch(frame([[0, 1]], [[0, 1]]))
    metric.update(f, f, ["s"])
    assert metric.compute()["stq"] == 1.0
    metric.reset()
    with pytest.warns(UserWarning):
        empty = metric.compute()
    assert empty["per_sequence"] == {} and empty["aq"] == 0.0 and math.isnan(empty["stq"])
    metric.update(f, f, ["t"])
    assert list(metric.compute()["per_sequence"]) == ["t"]


@settings(
    max_examples=100,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    seed=st.integers(0, 2**32 - 1),
    num_classes=st.integers(1, 4),
    ignore_choice=st.sampled_from(["255", "num_classes", "inside"]),
    piecewise=st.booleans(),
    batch_size=st.integers(1, 4),
    dtype=st.sampled_from([torch.int64, torch.int32, torch.uint8]),
    run_path=st.sampled_from(["numpy", "numpy-chunks-of-3", "torch"]),
)
def test_random_sequences_match_the_slow_reference(
    reference_stq,
    seed: int,
    num_classes: int,
    ignore_choice: str,
    piecewise: bool,
    batch_size: int,
    dtype: torch.dtype,
    run_path: str,
) -> None:
    """Also over input dtypes and the three ways of finding runs (the torch one is the GPU's)."""
    saved = (functional_stq.USE_NUMPY_ON_CPU, functional_stq.CPU_CHUNK_PIXELS)
    functional_stq.USE_NUMPY_ON_CPU = run_path != "torch"
    functional_stq.CPU_CHUNK_PIXELS = 3 if run_path == "numpy-chunks-of-3" else saved[1]
    try:
        check_random_sequences(reference_stq, seed, num_classes, ignore_choice, piecewise, batch_size, dtype)
    finally:
        functional_stq.USE_NUMPY_ON_CPU, functional_stq.CPU_CHUNK_PIXELS = saved


def check_random_sequences(
    reference_stq, seed: int, num_classes: int, ignore_choice: str, piecewise: bool, batch_size: int, dtype
) -> None:
    rng = np.random.default_rng(seed)
    ignore_label = {"255": 255, "num_classes": num_classes, "inside": num_classes - 1}[ignore_choice]
    candidates = [c for c in range(num_classes) if c != ignore_label]
    things = [c for c in candidates if rng.random() < 0.6]
    frames, rng = random_stq_frames(seed, num_classes, ignore_label, piecewise)
    metric = STQ(num_classes, things, ignore_label, coalesce_every=int(rng.integers(1, 4)))
    for start in range(0, len(frames), batch_size):
        chunk = frames[start : start + batch_size]
        metric.update(
            torch.from_numpy(np.stack([f[2] for f in chunk])).to(dtype),
            torch.from_numpy(np.stack([f[1] for f in chunk])).to(dtype),
            [f[0] for f in chunk],
        )
    result = metric.compute()
    expected = reference_stq(frames, num_classes, things, ignore_label)
    for key in ("stq", "aq", "sq"):
        _close(result[key], expected[key])
    assert set(result["per_sequence"]) == set(expected["per_sequence"])
    for sequence, values in expected["per_sequence"].items():
        for key in ("stq", "aq", "sq"):
            _close(result["per_sequence"][sequence][key], values[key])
    class_indices = [i for i in range(num_classes) if i != ignore_label]
    for index in class_indices:
        _close(result["iou_per_class"][str(index)], expected["class_iou"][index])
    assert result["num_frames"] == len(frames)


def _close(actual: float, expected: float) -> None:
    if math.isnan(expected):
        assert math.isnan(actual)
    else:
        assert actual == pytest.approx(expected, abs=1e-9)


def test_merge_state_equals_one_metric(reference_stq) -> None:
    frames, _ = random_stq_frames(11, 3, 255, piecewise=True)
    whole, first, second = STQ(3, [1, 2], 255), STQ(3, [1, 2], 255), STQ(3, [1, 2], 255)
    for index, (name, target, preds) in enumerate(frames):
        whole.update(batch(preds), batch(target), [name])
        (first if index % 2 else second).update(batch(preds), batch(target), [name])
    first.merge_state(second)
    merged, expected = first.compute(), whole.compute()
    for key in ("stq", "aq", "sq", "num_frames"):
        _close(float(merged[key]), float(expected[key]))
    assert merged["per_sequence"].keys() == expected["per_sequence"].keys()
    for sequence, values in expected["per_sequence"].items():
        for key, value in values.items():
            _close(merged["per_sequence"][sequence][key], value)


def test_forward_returns_the_batch_value_and_accumulates() -> None:
    good = frame([[0, 1, 1]], [[0, 4, 4]])
    bad = frame([[1, 1, 0]], [[7, 7, 0]])
    metric = STQ(2, [1], 255)
    first = metric(batch(good), batch(good), ["a"])
    assert first["stq"] == 1.0 and list(first["per_sequence"]) == ["a"]
    second = metric(batch(bad), batch(good), ["a"])
    assert second["sq"] < 1.0
    accumulated = STQ(2, [1], 255)
    accumulated.update(batch(good, bad), batch(good, good), ["a", "a"])
    assert metric.compute() == accumulated.compute()


def test_memory_does_not_grow_with_frames() -> None:
    metric = STQ(2, [1], 255, coalesce_every=8)
    target = batch(frame([[1, 1, 0], [1, 1, 0]], [[4, 4, 0], [5, 5, 0]]))
    for _ in range(100):
        metric.update(target, target, ["long"])
    stored = sum(t.numel() for t in metric.pair_records) + sum(t.numel() for t in metric.confusion_records)
    assert len(metric.pair_records) < 8 and stored < 8 * 40
    assert metric.compute()["num_frames"] == 100


def test_state_is_int64_and_follows_the_device() -> None:
    metric = STQ(2, [1], 255)
    f = batch(frame([[0, 1]], [[0, 1]]), dtype=torch.int32)
    metric.update(f, f, ["s"])
    assert all(t.dtype == torch.int64 for t in metric.confusion_records + metric.pair_records)
    if torch.cuda.is_available():  # pragma: no cover - only where a GPU is lent
        gpu = STQ(2, [1], 255).cuda()
        gpu.update(f.cuda(), f.cuda(), ["s"])
        assert gpu.compute() == metric.compute()
