from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from pycocotools import mask as mask_utils

from hvps_lightning.structures.masks import (
    complement_counts,
    decode_counts,
    encode_counts,
    resolve_overlaps,
    rle_areas,
    rle_subtract,
)

# pycocotools' decode under numpy 2 warns about the copy keyword; it is harmless.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


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
    assert rle_areas(rles).tolist() == [12, 12]
