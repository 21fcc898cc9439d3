from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils

from hvps_lightning.structures.masks import (
    check_rle,
    complement_counts,
    decode_counts,
    decode_mask,
    encode_mask,
    encode_masks,
    mask_areas,
    mask_boxes,
    mask_iou,
    merge_masks,
    resolve_overlaps,
    rle_subtract,
)

# pycocotools' decode under numpy 2 warns about the copy keyword; it is harmless.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def encode_counts(runs: np.ndarray, size: tuple[int, int]) -> dict:
    # pycocotools' own encoder of uncompressed runs, the reference for decode_counts
    coco = mask_utils.frPyObjects({"size": list(size), "counts": np.asarray(runs).tolist()}, *size)
    return {"size": list(size), "counts": coco["counts"].decode()}


def encode(mask: np.ndarray) -> dict:
    rle = mask_utils.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": list(rle["size"]), "counts": rle["counts"].decode()}


def decode(rle: dict) -> np.ndarray:
    return mask_utils.decode({"size": rle["size"], "counts": rle["counts"].encode()}).astype(bool)


masks = st.integers(1, 12).flatmap(
    lambda h: st.integers(1, 12).flatmap(lambda w: st.tuples(arrays(bool, (h, w)), arrays(bool, (h, w))))
)


@settings(max_examples=200, deadline=None)
@given(masks)
def test_subtract_and_complement_match_pixel_operations_bit_exactly(
    pair: tuple[np.ndarray, np.ndarray],
) -> None:
    a, b = pair
    ra, rb = encode(a), encode(b)
    runs = decode_counts(ra["counts"])
    assert runs.sum() == a.size
    flat = a.flatten(order="F")
    assert np.array_equal(np.repeat(np.arange(len(runs)) % 2 == 1, runs), flat)
    assert encode_counts(runs, a.shape)["counts"] == ra["counts"]
    assert complement_counts(ra["counts"]).decode() == encode(~a)["counts"]
    difference = rle_subtract(ra, rb)
    assert difference["counts"] == encode(a & ~b)["counts"]  # canonical, like pycocotools' own encoding


def test_long_counts_use_the_vectorised_decoder() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((200, 300)) < 0.5
    rle = encode(mask)
    assert len(rle["counts"]) > 1000
    runs = decode_counts(rle["counts"])
    assert np.array_equal(np.repeat(np.arange(len(runs)) % 2 == 1, runs), mask.flatten(order="F"))


@settings(max_examples=100, deadline=None)
@given(st.lists(arrays(bool, (10, 9)), min_size=0, max_size=6), st.data())
def test_resolve_overlaps_gives_each_pixel_to_the_highest_priority(
    stack: list[np.ndarray], data: st.DataObject
) -> None:
    priority = np.array(data.draw(st.lists(st.floats(0, 1), min_size=len(stack), max_size=len(stack))))
    rles = [encode(m) for m in stack]
    resolved, visible = resolve_overlaps(rles, priority)
    assert len(resolved) == len(stack) and visible.shape == (len(stack),)
    order = np.argsort(-priority, kind="stable")
    taken = np.zeros((10, 9), bool)
    expected = [None] * len(stack)
    for i in order:
        expected[i] = stack[i] & ~taken
        taken |= stack[i]
    for i, rle in enumerate(resolved):
        assert np.array_equal(decode(rle), expected[i])
        area = stack[i].sum()
        assert visible[i] == pytest.approx(expected[i].sum() / area if area else 0.0)


def test_resolve_overlaps_leaves_disjoint_masks_untouched() -> None:
    a = np.zeros((6, 6), bool)
    a[:2] = True
    b = np.zeros((6, 6), bool)
    b[4:] = True
    rles = [encode(a), encode(b)]
    resolved, visible = resolve_overlaps(rles, np.array([0.1, 0.9]))
    assert resolved[0] is rles[0] and resolved[1] is rles[1]
    assert visible.tolist() == [1.0, 1.0]
    assert mask_areas(rles).tolist() == [12, 12]


@settings(max_examples=100, deadline=None)
@given(arrays(bool, st.tuples(st.integers(0, 4), st.integers(1, 9), st.integers(1, 9))))
def test_encode_decode_area_box_iou_merge_agree_with_pixels(stack: np.ndarray) -> None:
    rles = encode_masks(stack)
    assert rles == [encode_mask(m) for m in stack]
    for mask, rle in zip(stack, rles, strict=True):
        assert isinstance(rle["counts"], str) and rle["size"] == list(mask.shape)
        assert (decode_mask(rle) == mask).all()
        assert check_rle(rle, mask.shape) is None
    assert mask_areas(rles).tolist() == [int(m.sum()) for m in stack]
    for box, mask in zip(mask_boxes(rles), stack, strict=True):
        if mask.any():
            rows, cols = np.flatnonzero(mask.any(1)), np.flatnonzero(mask.any(0))
            assert box.tolist() == [cols[0], rows[0], cols[-1] + 1, rows[-1] + 1]
    if len(rles) >= 2:
        union, inter = stack[0] | stack[1], stack[0] & stack[1]
        assert (decode_mask(merge_masks(rles[:2])) == union).all()
        assert (decode_mask(merge_masks(rles[:2], intersect=True)) == inter).all()
        expected = inter.sum() / union.sum() if union.any() else 0.0
        assert mask_iou(rles[:1], rles[1:2])[0, 0] == pytest.approx(expected)


def test_encode_mask_takes_tensors() -> None:
    import torch

    mask = torch.zeros(3, 5, 4, dtype=torch.bool)
    mask[1, 1:3, 2] = True
    assert encode_masks(mask) == encode_masks(mask.numpy())
    assert encode_mask(mask[1]) == encode_masks(mask)[1]


@pytest.mark.parametrize(
    ("rle", "problem"),
    [
        ({"size": [2, 3], "counts": "04"}, "cover 4 pixels, not 2x3"),
        ({"size": [0, 3], "counts": "0"}, "not positive"),
        ({"size": [2, 2], "counts": "0\x7f"}, "alphabet"),
        ({"size": [2, 2], "counts": "0R"}, "truncated"),
        ({"size": [2, 2], "counts": "ooooooooooooooo0"}, "too large"),
        ({"size": [2, 2]}, "needs 'size'"),
        ({"size": [2, 2], "counts": 5}, "must be a string"),
    ],
)
def test_check_rle_names_the_problem(rle: dict, problem: str) -> None:
    message = check_rle(rle)
    assert message is not None and problem in message


def test_check_rle_rejects_every_truncation_of_a_real_mask() -> None:
    rng = np.random.default_rng(0)
    mask = rng.random((37, 53)) > 0.6
    rle = encode_mask(mask)
    assert check_rle(rle, (37, 53)) is None
    assert check_rle(rle, (53, 37)) is not None  # right pixel count, wrong image size
    for cut in range(len(rle["counts"])):
        assert check_rle({"size": rle["size"], "counts": rle["counts"][:cut]}) is not None
