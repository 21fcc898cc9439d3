from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pytest

from hvps_lightning.errors import HVPSError
from hvps_lightning.panoptic import (
    DEFAULT_UNCOVERED,
    PanopticInstance,
    fuse_panoptic,
)
from hvps_lightning.structures.masks import encode_mask
from hvps_lightning.structures.specs import get_spec
from hvps_lightning.tracking.tracker import TrackedObject  # the tracker's output type

SPEC = get_spec("motchallenge_step")  # 0 sidewalk 1 building 2 vegetation 3 sky 4 person* 5 rider 6 bicycle
PERSON = 4


def _mask(shape: tuple[int, int], rows: slice, cols: slice) -> np.ndarray:
    mask = np.zeros(shape, dtype=bool)
    mask[rows, cols] = True
    return mask


def test_instances_take_thing_class_and_track_id_over_semantic() -> None:
    semantic = np.zeros((4, 6), dtype=np.uint8)  # all sidewalk: the instance overrides it
    semantic[0, 0] = 255  # and void too
    mask = _mask(semantic.shape, slice(0, 2), slice(0, 3))
    fused, instance = fuse_panoptic(semantic, [(12, PERSON, 0.8, mask)], SPEC, uncovered="void")
    expected_sem = np.zeros((4, 6), np.int32)
    expected_sem[:2, :3] = PERSON
    expected_inst = np.zeros((4, 6), np.int32)
    expected_inst[:2, :3] = 12
    np.testing.assert_array_equal(fused, expected_sem)
    np.testing.assert_array_equal(instance, expected_inst)
    assert fused.dtype == np.int32 and instance.dtype == np.int32


def test_overlap_goes_to_the_higher_score_whatever_the_order() -> None:
    semantic = np.full((3, 5), PERSON, dtype=np.uint8)
    low = _mask(semantic.shape, slice(0, 3), slice(0, 3))
    high = _mask(semantic.shape, slice(0, 3), slice(2, 5))
    for order in (
        [(1, PERSON, 0.3, low), (2, PERSON, 0.9, high)],
        [(2, PERSON, 0.9, high), (1, PERSON, 0.3, low)],
    ):
        _, instance = fuse_panoptic(semantic, order, SPEC, uncovered="void")
        np.testing.assert_array_equal(instance, [[1, 1, 2, 2, 2]] * 3)


def test_equal_scores_first_listed_wins() -> None:
    semantic = np.full((1, 3), PERSON, dtype=np.uint8)
    a = np.array([[True, True, False]])
    b = np.array([[False, True, True]])
    _, instance = fuse_panoptic(semantic, [(5, PERSON, 0.5, a), (6, PERSON, 0.5, b)], SPEC)
    np.testing.assert_array_equal(instance, [[5, 5, 6]])


def _uncovered_case() -> tuple[np.ndarray, list]:
    # row 0: sky sky | person person person | building ; the instance covers only column 2
    semantic = np.array(
        [
            [3, 3, 4, 4, 4, 1],
            [3, 3, 4, 4, 4, 1],
        ],
        dtype=np.uint8,
    )
    mask = np.zeros(semantic.shape, dtype=bool)
    mask[:, 2] = True
    return semantic, [TrackedObject(7, PERSON, 0.9, None, encode_mask(mask.astype(np.uint8)))]


def test_uncovered_void() -> None:
    semantic, tracks = _uncovered_case()
    fused, instance = fuse_panoptic(semantic, tracks, SPEC, uncovered="void")
    np.testing.assert_array_equal(fused, [[3, 3, 4, 255, 255, 1]] * 2)
    np.testing.assert_array_equal(instance, [[0, 0, 7, 0, 0, 0]] * 2)


def test_uncovered_crowd() -> None:
    semantic, tracks = _uncovered_case()
    fused, instance = fuse_panoptic(semantic, tracks, SPEC, uncovered="crowd")
    np.testing.assert_array_equal(fused, [[3, 3, 4, 4, 4, 1]] * 2)
    np.testing.assert_array_equal(instance, [[0, 0, 7, 0, 0, 0]] * 2)


def test_uncovered_stuff_nearest_stuff_pixel() -> None:
    semantic, tracks = _uncovered_case()
    fused, instance = fuse_panoptic(semantic, tracks, SPEC, uncovered="stuff")
    # column 3 is nearest to... column 2 is the instance (not stuff); col 3 -> distance 2 to sky
    # (col 1) vs 2 to building (col 5): a tie; col 4 -> building (distance 1)
    assert fused[0, 4] == 1 and fused[1, 4] == 1
    assert fused[0, 3] in (1, 3)
    np.testing.assert_array_equal(fused[:, :3], [[3, 3, 4]] * 2)
    np.testing.assert_array_equal(instance, [[0, 0, 7, 0, 0, 0]] * 2)


def test_uncovered_stuff_nearest_is_unambiguous() -> None:
    semantic = np.array([[2, 4, 4, 4, 4, 4, 4, 3]], dtype=np.uint8)
    fused, _ = fuse_panoptic(semantic, [], SPEC, uncovered="stuff")
    np.testing.assert_array_equal(fused, [[2, 2, 2, 2, 3, 3, 3, 3]])


def test_uncovered_stuff_from_probabilities() -> None:
    semantic, tracks = _uncovered_case()
    probabilities = np.zeros((SPEC.num_classes, *semantic.shape), np.float32)
    probabilities[PERSON] = 0.9  # a thing class: never chosen by the stuff rule
    probabilities[0, :, 3] = 0.1  # sidewalk best stuff at column 3
    probabilities[2, :, 4] = 0.05  # vegetation best stuff at column 4
    fused, _ = fuse_panoptic(semantic, tracks, SPEC, uncovered="stuff", stuff_probabilities=probabilities)
    np.testing.assert_array_equal(fused, [[3, 3, 4, 0, 2, 1]] * 2)


def test_uncovered_stuff_without_any_stuff_becomes_void() -> None:
    semantic = np.full((2, 2), PERSON, dtype=np.uint8)
    fused, instance = fuse_panoptic(semantic, [], SPEC, uncovered="stuff")
    np.testing.assert_array_equal(fused, np.full((2, 2), 255))
    assert not instance.any()


def test_default_rule_is_documented_choice() -> None:
    assert DEFAULT_UNCOVERED == "crowd"


@pytest.mark.parametrize("track_id", [0, -3, 1000, 1500])
def test_track_ids_outside_divisor_range_are_rejected(track_id: int) -> None:
    semantic = np.zeros((2, 2), np.uint8)
    with pytest.raises(HVPSError, match=f"track id {track_id} must lie in 1..999"):
        fuse_panoptic(semantic, [(track_id, PERSON, 0.9, np.ones((2, 2), bool))], SPEC)


def test_track_id_999_is_accepted() -> None:
    semantic = np.zeros((2, 2), np.uint8)
    _, instance = fuse_panoptic(semantic, [(999, PERSON, 0.9, np.ones((2, 2), bool))], SPEC)
    assert (instance == 999).all()


def test_bad_instances_are_errors() -> None:
    semantic = np.zeros((2, 2), np.uint8)
    ones = np.ones((2, 2), bool)
    with pytest.raises(HVPSError, match="appears twice"):
        fuse_panoptic(semantic, [(3, PERSON, 0.9, ones), (3, PERSON, 0.5, ones)], SPEC)
    with pytest.raises(HVPSError, match="not a thing class"):
        fuse_panoptic(semantic, [(3, 1, 0.9, ones)], SPEC)
    with pytest.raises(HVPSError, match=r"mask of size \(3, 2\) differs"):
        fuse_panoptic(semantic, [(3, PERSON, 0.9, np.ones((3, 2), bool))], SPEC)
    with pytest.raises(HVPSError, match="unknown rule"):
        fuse_panoptic(semantic, [], SPEC, uncovered="nearest")
    with pytest.raises(HVPSError, match=r"class ids \[9\] unknown"):
        fuse_panoptic(np.full((2, 2), 9), [], SPEC)
    with pytest.raises(HVPSError, match="cannot read an instance"):
        fuse_panoptic(semantic, [object()], SPEC)


def test_accepts_dataclass_rle_and_panoptic_instance() -> None:
    @dataclass
    class Track:
        track_id: int
        label: int
        score: float
        mask: np.ndarray

    semantic = np.zeros((2, 3), np.uint8)
    a = np.array([[1, 0, 0], [0, 0, 0]], bool)
    b = np.array([[0, 1, 0], [0, 0, 0]], bool)
    c = np.array([[0, 0, 1], [0, 0, 0]], bool)
    fused, instance = fuse_panoptic(
        semantic,
        [
            Track(1, PERSON, 0.5, a),
            PanopticInstance(2, PERSON, 0.5, encode_mask(b.astype(np.uint8))),
            (3, PERSON, 0.5, [0, 0, 0, 0], c),
        ],
        SPEC,
    )
    np.testing.assert_array_equal(instance, [[1, 2, 3], [0, 0, 0]])
    np.testing.assert_array_equal(fused, [[4, 4, 4], [0, 0, 0]])


def test_empty_and_fully_hidden_instances_leave_no_pixels() -> None:
    semantic = np.zeros((3, 4), np.uint8)
    empty = encode_mask(np.zeros((3, 4), np.uint8))
    big = np.ones((3, 4), bool)
    small = np.zeros((3, 4), bool)
    small[1, 1:3] = True
    fused, instance = fuse_panoptic(semantic, [(1, PERSON, 0.9, empty), (2, PERSON, 0.8, big),
                                               (3, PERSON, 0.1, small)], SPEC)  # fmt: skip
    assert (instance == 2).all() and (fused == PERSON).all()
    with pytest.raises(HVPSError, match=r"mask of size \(4, 4\) differs"):
        fuse_panoptic(semantic, [(1, PERSON, 0.9, encode_mask(np.ones((4, 4), np.uint8)))], SPEC)
