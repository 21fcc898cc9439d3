"""MOTS metrics on hand-computed cases (values derived in each test) and against TrackEval's metrics."""

from __future__ import annotations

import numpy as np
import pytest

from hvps_lightning.errors import HVPSError
from hvps_lightning.formats.mots_txt import MOTSObject
from hvps_lightning.metrics.mots import (
    HOTA_ALPHAS,
    MOTS_METRIC_KEYS,
    MOTSCounts,
    evaluate_mots,
    metric_from_vectors,
    preprocess_sequence,
    sequence_counts,
)
from hvps_lightning.structures.masks import encode_mask

H, W = 12, 16


def box(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def obj(frame: int, obj_id: int, mask: np.ndarray, class_id: int = 2) -> MOTSObject:
    return MOTSObject(frame, obj_id, class_id, encode_mask(mask))


def ignore(frame: int, mask: np.ndarray) -> MOTSObject:
    return MOTSObject(frame, 10000, 10, encode_mask(mask))


A, B, C = box(0, 0, 4, 4), box(6, 6, 10, 10), box(0, 10, 4, 14)  # 16 px each, disjoint


def single(gt: list[MOTSObject], pred: list[MOTSObject]) -> dict:
    result = evaluate_mots({"s": gt}, {"s": pred})
    assert result["per_sequence"]["s"] == result["combined"]
    assert tuple(result["combined"]) == MOTS_METRIC_KEYS
    return result["combined"]


def test_perfect_prediction() -> None:
    gt = [obj(t, 2001, A) for t in (1, 2, 3)] + [obj(t, 2002, B) for t in (1, 2, 3)]
    pred = [obj(t, 2005, A) for t in (1, 2, 3)] + [obj(t, 2009, B) for t in (1, 2, 3)]
    m = single(gt, pred)
    assert (m["TP"], m["FP"], m["FN"], m["IDSW"]) == (6, 0, 0, 0)
    assert m["sMOTSA"] == m["MOTSA"] == m["MOTSP"] == m["IDF1"] == 1.0
    assert (
        m["HOTA"] == pytest.approx(1.0)
        and m["DetA"] == pytest.approx(1.0)
        and m["AssA"] == pytest.approx(1.0)
    )


def test_one_id_switch() -> None:
    gt = [obj(t, 2001, A) for t in (1, 2, 3, 4)]
    pred = [obj(1, 2005, A), obj(2, 2005, A), obj(3, 2006, A), obj(4, 2006, A)]
    m = single(gt, pred)
    assert (m["TP"], m["FP"], m["FN"], m["IDSW"]) == (4, 0, 0, 1)
    assert m["MOTSA"] == pytest.approx((4 - 0 - 1) / 4)
    assert m["sMOTSA"] == pytest.approx((4 * 1.0 - 0 - 1) / 4)
    # IDF1: gt 2001 <-> pred 2005 for 2 frames: IDTP 2, IDFP 2 (2006), IDFN 2
    assert m["IDF1"] == pytest.approx(2 / (2 + 0.5 * 2 + 0.5 * 2))
    # HOTA: DetA 1 at every alpha; AssA = (2 * 2/(4+2-2) + 2 * 2/(4+2-2)) / 4 = 0.5
    assert m["DetA"] == pytest.approx(1.0)
    assert m["AssA"] == pytest.approx(0.5)
    assert m["HOTA"] == pytest.approx(np.sqrt(0.5))


def test_switch_is_counted_against_the_last_match_even_after_a_gap() -> None:
    gt = [obj(t, 2001, A) for t in (1, 2, 3)]
    pred = [obj(1, 2005, A), obj(3, 2006, A)]  # frame 2 missed
    m = single(gt, pred)
    assert (m["TP"], m["FP"], m["FN"], m["IDSW"]) == (2, 0, 1, 1)
    assert m["MOTSA"] == pytest.approx((2 - 0 - 1) / 3)


def test_one_false_positive() -> None:
    gt = [obj(1, 2001, A), obj(2, 2001, A)]
    pred = [obj(1, 2005, A), obj(2, 2005, A), obj(1, 2007, C)]
    m = single(gt, pred)
    assert (m["TP"], m["FP"], m["FN"], m["IDSW"]) == (2, 1, 0, 0)
    assert m["MOTSA"] == pytest.approx((2 - 1) / 2)
    assert m["sMOTSA"] == pytest.approx((2 * 1.0 - 1) / 2)
    assert m["MOTSP"] == 1.0
    assert m["IDF1"] == pytest.approx(2 / (2 + 0.5 * 1 + 0))
    # HOTA: DetA = 2 / (2 + 0 + 1); AssA = 2 * (2 / (2 + 2 - 2)) / 2 = 1
    assert m["DetA"] == pytest.approx(2 / 3)
    assert m["HOTA"] == pytest.approx(np.sqrt(2 / 3))


def test_partial_mask_lowers_smotsa_but_not_motsa() -> None:
    gt = [obj(1, 2001, A)]  # 16 px
    pred = [obj(1, 2005, box(0, 0, 4, 3))]  # 12 of them: IoU 12/16
    m = single(gt, pred)
    assert (m["TP"], m["FP"], m["FN"]) == (1, 0, 0)
    assert m["MOTSA"] == 1.0
    assert m["sMOTSA"] == pytest.approx(0.75) and m["MOTSP"] == pytest.approx(0.75)
    # HOTA: matched for alphas <= 0.75 only
    matched = (HOTA_ALPHAS <= 0.75 + 1e-12).astype(float)
    assert m["DetA"] == pytest.approx(matched.mean())
    assert m["HOTA"] == pytest.approx(np.mean(np.sqrt(matched * matched)))


def test_prediction_inside_an_ignore_region_is_removed() -> None:
    region = box(6, 0, 12, 6)  # 36 px
    gt = [obj(1, 2001, A), ignore(1, region)]
    inside = box(6, 0, 9, 6)  # 18 px, all inside
    mostly = box(8, 4, 12, 8)  # 16 px, 8 inside: exactly half -> stays (needs more than half)
    m = single(gt, [obj(1, 2005, A), obj(1, 2006, inside)])
    assert (m["TP"], m["FP"], m["FN"]) == (1, 0, 0)
    assert m["MOTSA"] == 1.0
    m = single(gt, [obj(1, 2005, A), obj(1, 2006, mostly)])
    assert (m["TP"], m["FP"], m["FN"]) == (1, 1, 0)


def test_ignore_regions_of_a_frame_form_one_region() -> None:
    left, right = box(6, 0, 12, 3), box(6, 3, 12, 6)
    gt = [obj(1, 2001, A), ignore(1, left), ignore(1, right)]
    spanning = box(6, 1, 12, 5)  # 24 px: 12 in each part, none in one part alone > 50 %
    m = single(gt, [obj(1, 2005, A), obj(1, 2006, spanning)])
    assert m["FP"] == 0


def test_matched_prediction_in_an_ignore_region_is_kept() -> None:
    # a prediction that matches a GT object is never removed, wherever it lies
    gt = [obj(1, 2001, box(6, 0, 8, 4)), ignore(1, box(8, 0, 12, 4))]
    pred = [obj(1, 2005, box(6, 0, 10, 4))]  # IoU 8/16 = 0.5 with GT, half in the region
    m = single(gt, pred)
    assert (m["TP"], m["FP"]) == (1, 0)


def test_iou_of_exactly_half_matches() -> None:
    gt = [obj(1, 2001, A)]  # 16 px
    half = box(0, 0, 4, 2)  # 8 px inside: IoU 8 / 16 = 0.5
    m = single(gt, [obj(1, 2005, half)])
    assert (m["TP"], m["FP"], m["FN"]) == (1, 0, 0)
    assert m["sMOTSA"] == pytest.approx(0.5) and m["MOTSP"] == pytest.approx(0.5)
    below = box(0, 0, 5, 2)  # 10 px, 8 inside: IoU 8 / 18
    m = single(gt, [obj(1, 2005, below)])
    assert (m["TP"], m["FP"], m["FN"]) == (0, 1, 1)
    assert m["MOTSA"] == pytest.approx(-1 / 1)  # (0 - 1 - 0) / max(1, 0 + 1)


@pytest.mark.parametrize("order", ["previous_first", "previous_last"])
def test_tie_keeps_the_previous_match(order: str) -> None:
    gt = [obj(1, 2001, A), obj(2, 2001, A)]
    left, right = box(0, 0, 4, 2), box(0, 2, 4, 4)  # each exactly half of A: IoU 0.5 each
    second = [obj(2, 2005, left), obj(2, 2006, right)]
    pred = [obj(1, 2005, left), *(second if order == "previous_first" else second[::-1])]
    m = single(gt, pred)
    assert (m["TP"], m["FP"], m["FN"], m["IDSW"]) == (2, 1, 0, 0)
    # the other way round: the previous match is 2006
    pred = [obj(1, 2006, right), *(second if order == "previous_first" else second[::-1])]
    assert single(gt, pred)["IDSW"] == 0


def test_sequence_without_ground_truth_reports_zeros() -> None:
    gt = {"empty": [], "full": [obj(1, 2001, A), obj(2, 2001, A)]}
    pred = {"empty": [obj(1, 2003, A), obj(2, 2003, B)], "full": [obj(1, 2005, A), obj(2, 2005, A)]}
    result = evaluate_mots(gt, pred)
    empty = result["per_sequence"]["empty"]
    assert (empty["TP"], empty["FP"], empty["FN"], empty["IDSW"]) == (0, 2, 0, 0)
    assert empty["MOTSA"] == empty["sMOTSA"] == empty["MOTSP"] == empty["IDF1"] == empty["HOTA"] == 0.0
    assert result["per_sequence"]["full"]["MOTSA"] == 1.0
    combined = result["combined"]
    assert (combined["TP"], combined["FP"], combined["FN"]) == (2, 2, 0)
    assert combined["MOTSA"] == pytest.approx((2 - 2 - 0) / 2)
    assert combined["IDF1"] == pytest.approx(2 / (2 + 0.5 * 2))


def test_other_classes_are_dropped_first() -> None:
    gt = [obj(1, 2001, A), obj(1, 1001, B, class_id=1)]
    pred = [obj(1, 2005, A), obj(1, 1005, B, class_id=1), obj(1, 1006, C, class_id=1)]
    m = single(gt, pred)
    assert (m["TP"], m["FP"], m["FN"]) == (1, 0, 0)
    cars = evaluate_mots({"s": gt}, {"s": pred}, class_id=1)["combined"]
    assert (cars["TP"], cars["FP"], cars["FN"]) == (1, 1, 0)


def test_overlapping_predictions_name_sequence_and_frame() -> None:
    gt = [obj(3, 2001, A)]
    pred = [obj(3, 2005, A), obj(3, 2006, box(2, 2, 6, 6))]
    with pytest.raises(HVPSError, match=r"seq-7.*frame 3"):
        evaluate_mots({"seq-7": gt}, {"seq-7": pred})
    with pytest.raises(HVPSError, match="more than once"):
        evaluate_mots({"s": gt}, {"s": [obj(3, 2005, A), obj(3, 2005, B)]})


def test_missing_sequence_and_size_mismatch_are_errors() -> None:
    gt = [obj(1, 2001, A)]
    with pytest.raises(HVPSError, match="no predictions"):
        evaluate_mots({"s": gt}, {})
    small = MOTSObject(1, 2005, 2, encode_mask(np.ones((4, 4), np.uint8)))
    with pytest.raises(HVPSError, match="frame 1"):
        evaluate_mots({"s": gt}, {"s": [small]})


def test_empty_sequences() -> None:
    result = evaluate_mots({"s": []}, {"s": []})
    assert result["combined"]["TP"] == 0 and result["combined"]["MOTSA"] == 0.0


def random_sequence(seed: int, frames: int = 12) -> tuple[list[MOTSObject], list[MOTSObject]]:
    """Non-overlapping random boxes; predictions jittered, dropped, added and re-labelled."""
    rng = np.random.default_rng(seed)
    gt, pred = [], []
    for frame in range(1, frames + 1):
        cells = rng.permutation(6)
        for index, cell in enumerate(cells):
            y, x = 6 * (cell // 3), 5 * (cell % 3)
            if index < rng.integers(0, 6):
                gt.append(obj(frame, 2000 + int(cell), box(y, x + 1, y + 6, x + 5)))
                if rng.random() < 0.85:
                    shrink = int(rng.integers(0, 5))  # IoU from 1 down to 1/3
                    pred_id = 2100 + int(cell) + (10 if rng.random() < 0.15 else 0)
                    pred.append(obj(frame, pred_id, box(y, x + 1 + shrink // 2, y + 6 - shrink, x + 5)))
            elif rng.random() < 0.1:  # a false positive in an empty cell
                pred.append(obj(frame, 2200 + int(cell), box(y + 1, x + 1, y + 4, x + 4)))
    return gt, pred


@pytest.mark.parametrize("seed", range(6))
def test_every_field_agrees_with_trackevals_metric_classes(seed: int) -> None:
    """CLEAR (MT/PT/ML, Frag), Identity and HOTA of TrackEval itself on the same preprocessed data."""
    trackeval = pytest.importorskip("trackeval")
    gt, pred = random_sequence(seed)
    data = preprocess_sequence(gt, pred)
    theirs_input = {
        "gt_ids": data.gt_ids, "tracker_ids": data.pred_ids, "similarity_scores": data.similarity,
        "num_gt_ids": data.num_gt_ids, "num_tracker_ids": data.num_pred_ids, "num_gt_dets": data.num_gt_dets,
        "num_tracker_dets": data.num_pred_dets, "num_timesteps": data.num_frames,
    }  # fmt: skip
    ours = sequence_counts(data).fields()
    for family, metric in (("CLEAR", trackeval.metrics.CLEAR({"PRINT_CONFIG": False})),
                           ("Identity", trackeval.metrics.Identity({"PRINT_CONFIG": False})),
                           ("HOTA", trackeval.metrics.HOTA())):  # fmt: skip
        theirs = metric.eval_sequence(theirs_input)
        for name, value in theirs.items():
            np.testing.assert_allclose(ours[family][name], value, atol=1e-12, err_msg=f"{family} {name}")


def test_identity_assignment_is_global() -> None:
    """IDF1 counts the one-to-one id assignment with the most overlapping frames over the whole sequence."""
    # gt 2001 is covered by pred 2005 in frames 1-2 and by 2006 in frames 3-5; gt 2002 by 2006 in frame 1
    gt = [obj(t, 2001, A) for t in range(1, 6)] + [obj(1, 2002, B)]
    pred = [obj(1, 2005, A), obj(2, 2005, A)] + [obj(t, 2006, A) for t in (3, 4, 5)] + [obj(1, 2006, B)]
    m = single(gt, pred)
    # overlaps: (2001, 2005) 2 frames, (2001, 2006) 3, (2002, 2006) 1; the best one-to-one assignments
    # reach 3 (2001 <-> 2006, or 2001 <-> 2005 with 2002 <-> 2006): IDTP 3 of 6 GT and 6 predictions
    assert m["IDF1"] == pytest.approx(3 / (3 + 0.5 * 3 + 0.5 * 3))


@pytest.mark.parametrize("seed", range(3))
def test_counts_add_as_vectors(seed: int) -> None:
    """Sums of count vectors give the metrics of the summed counts (what the block bootstrap relies on)."""
    parts = [sequence_counts(preprocess_sequence(*random_sequence(10 * seed + k))) for k in range(3)]
    total = sum(parts, MOTSCounts())
    vectors = np.stack([p.to_vector() for p in parts]).sum(axis=0)
    assert MOTSCounts.from_vector(vectors).metrics() == pytest.approx(total.metrics())
    for key in MOTS_METRIC_KEYS:
        assert float(metric_from_vectors(vectors, key)) == pytest.approx(total.metrics()[key]), key
