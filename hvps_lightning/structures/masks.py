"""Masks: pycocotools compressed RLEs, the one mask type of the project, and every conversion.

A mask is an :data:`RLE`, ``{"size": [H, W], "counts": str}``: pycocotools' compressed
run-length encoding of the Fortran-ordered mask, with ``counts`` as an ASCII ``str`` so that
it is JSON and MOTS txt as it is. Every conversion lives here, once: bool arrays or tensors ->
RLE (:func:`encode_mask`, :func:`encode_masks`), RLE -> pixels (:func:`decode_mask`), area,
boxes, IoU, union and intersection, the pycocotools form (:func:`to_coco`: ``counts`` as
``bytes``) and a check that an RLE read from a file is well formed (:func:`check_rle`).

The tracker must hand out masks that never overlap within a frame (MOTS and STEP require
it). Decoding every mask of a 1920x1080 frame to pixels costs milliseconds; the run-length
form costs microseconds. pycocotools gives area, bounding box, IoU, union and intersection
on RLEs but no difference, so :func:`rle_subtract` computes ``A minus B`` as ``A and not (A
and B)``: the overlap ``A and B`` is small, so its complement is cheap to build from its
run lengths (which :func:`decode_counts` reads from the compressed string).

Example:
    >>> import numpy as np
    >>> a = np.zeros((4, 4), np.uint8); a[:, :3] = 1
    >>> b = np.zeros((4, 4), np.uint8); b[1:3, 1:] = 1
    >>> diff = rle_subtract(encode_mask(a), encode_mask(b))
    >>> bool((decode_mask(diff) == (a & ~b)).all()), mask_area(diff)
    (True, 8)
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils

from hvps_lightning.errors import HVPSError

#: a compressed RLE: ``{"size": [H, W], "counts": str}`` (``counts`` may be bytes in pycocotools' form)
RLE = dict[str, Any]


def to_coco(rle: RLE) -> RLE:
    """Return ``rle`` in the form pycocotools functions take (``counts`` as bytes)."""
    counts = rle["counts"]
    if isinstance(counts, str):
        counts = counts.encode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def from_coco(rle: RLE) -> RLE:
    """Return a pycocotools RLE in the project's form (``counts`` as an ASCII str)."""
    counts = rle["counts"]
    if isinstance(counts, bytes):
        counts = counts.decode("ascii")
    return {"size": [int(rle["size"][0]), int(rle["size"][1])], "counts": counts}


def encode_mask(mask: Any) -> RLE:
    """Encode one binary (H, W) mask (numpy array or tensor, any dtype; non-zero = inside).

    Raises:
        ValueError: if the mask is not 2-D.
    """
    array = _as_array(mask)
    if array.ndim != 2:
        raise ValueError(f"a mask is 2-D, got shape {array.shape}")
    return from_coco(mask_utils.encode(np.asfortranarray(array != 0, dtype=np.uint8)))


def encode_masks(masks: Any) -> list[RLE]:
    """Encode a stack of binary (N, H, W) masks (numpy array or tensor) in one pycocotools call."""
    array = _as_array(masks)
    if array.ndim != 3:
        raise ValueError(f"a mask stack is (N, H, W), got shape {array.shape}")
    if array.shape[0] == 0:
        return []
    stacked = np.asfortranarray(np.moveaxis(array != 0, 0, -1), dtype=np.uint8)
    return [from_coco(r) for r in mask_utils.encode(stacked)]


def _as_array(mask: Any) -> np.ndarray:
    if hasattr(mask, "detach"):  # a torch tensor, without importing torch here
        mask = mask.detach().cpu().numpy()
    return np.asarray(mask)


def decode_mask(rle: RLE) -> np.ndarray:
    """Decode a compressed RLE (counts as str or bytes) into a C-ordered uint8 (H, W) mask."""
    with warnings.catch_warnings():
        # pycocotools' Cython decoder trips NumPy 2's copy-keyword deprecation; harmless noise.
        warnings.simplefilter("ignore", DeprecationWarning)
        mask = mask_utils.decode(to_coco(rle))
    return np.ascontiguousarray(mask, dtype=np.uint8)


def decode_mask_window(rle: RLE) -> tuple[tuple[slice, slice], np.ndarray] | None:
    """The mask's bounding box and the boolean mask inside it, or ``None`` for an empty mask.

    Working inside the box keeps the cost per mask proportional to its size: the box comes
    from pycocotools without decoding, and the Fortran-ordered decoding is sliced, not copied.
    """
    coco = to_coco(rle)
    x, y, w, h = (int(v) for v in np.rint(mask_utils.toBbox(coco)))
    if w == 0 or h == 0:
        return None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        decoded = mask_utils.decode(coco)
    return (slice(y, y + h), slice(x, x + w)), decoded[y : y + h, x : x + w] != 0


def mask_area(rle: RLE) -> int:
    """Number of pixels of a mask (without decoding it)."""
    return int(mask_utils.area(to_coco(rle)))


def mask_areas(rles: Sequence[RLE]) -> np.ndarray:
    """Pixel areas of several masks (int64)."""
    if not rles:
        return np.zeros(0, np.int64)
    return np.asarray(mask_utils.area([to_coco(r) for r in rles]), np.int64)


def mask_boxes(rles: Sequence[RLE]) -> np.ndarray:
    """Tight ``x1, y1, x2, y2`` boxes (N, 4) float32 of masks (an empty mask gives a zero-size box)."""
    if not rles:
        return np.zeros((0, 4), np.float32)
    xywh = np.asarray(mask_utils.toBbox([to_coco(r) for r in rles]), np.float32).reshape(-1, 4)
    return np.concatenate([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], axis=1)


def mask_iou(first: Sequence[RLE], second: Sequence[RLE], ioa: bool = False) -> np.ndarray:
    """(len(first), len(second)) mask IoU; with ``ioa``: intersection over the area of ``first``'s masks."""
    if not first or not second:
        return np.zeros((len(first), len(second)))
    coco_first = [to_coco(r) for r in first]
    coco_second = [to_coco(r) for r in second]
    return np.asarray(mask_utils.iou(coco_first, coco_second, [int(ioa)] * len(second)), np.float64)


def merge_masks(rles: Sequence[RLE], intersect: bool = False) -> RLE:
    """Union (or, with ``intersect``, intersection) of masks of one size."""
    return from_coco(mask_utils.merge([to_coco(r) for r in rles], intersect=intersect))


def check_rle(rle: RLE, size: Sequence[int] | None = None) -> str | None:
    """Return what is wrong with an RLE read from a file, or ``None`` if it is well formed.

    A well-formed RLE has a positive ``size``, equal to ``size`` when given, and ``counts``
    that decode to non-negative runs adding up to exactly height x width pixels. pycocotools
    does not check this: a truncated or foreign RLE makes its functions read past the runs or
    loop for minutes, so every RLE from a file passes here before any pycocotools call.

    Example:
        >>> check_rle({"size": [2, 2], "counts": "04"}) is None
        True
        >>> check_rle({"size": [2, 3], "counts": "04"})
        'RLE counts cover 4 pixels, not 2x3 = 6'
    """
    try:
        height, width = (int(v) for v in rle["size"])
        counts = rle["counts"]
    except (KeyError, TypeError, ValueError):
        return "an RLE needs 'size': [height, width] and 'counts'"
    if height <= 0 or width <= 0:
        return f"RLE size {height}x{width} is not positive"
    if size is not None and (height, width) != (int(size[0]), int(size[1])):
        return f"RLE size {height}x{width} differs from the image size {int(size[0])}x{int(size[1])}"
    if isinstance(counts, str):
        if not counts.isascii():
            return "RLE counts are not ASCII"
    elif not isinstance(counts, bytes):
        return f"RLE counts must be a string, got {type(counts).__name__}"
    raw = counts.encode("ascii") if isinstance(counts, str) else counts
    chars = np.frombuffer(raw, np.uint8).astype(np.int64) - 48
    if chars.size and (chars.min() < 0 or chars.max() > 63):
        return "RLE counts hold characters outside pycocotools' alphabet"
    more = (chars & 0x20) != 0  # "another 5-bit group of this value follows"
    if chars.size and more[-1]:
        return "RLE counts end in the middle of a value (truncated)"
    if more.any():
        # 12 groups of 5 bits hold any run of a 2^31-pixel image; longer values overflow int64
        ends = np.flatnonzero(~more)
        starts = np.concatenate(([0], ends[:-1] + 1))
        if int((ends - starts).max(initial=0)) >= 12:
            return "RLE counts hold a value too large for any image"
    runs = decode_counts(raw)
    if (runs < 0).any():
        return "RLE counts decode to a negative run length"
    total = int(runs.sum())
    if total != height * width:
        return f"RLE counts cover {total} pixels, not {height}x{width} = {height * width}"
    return None


def require_rle(rle: RLE, where: str, size: Sequence[int] | None = None) -> None:
    """Raise ``HVPSError("<where>: <problem>")`` if :func:`check_rle` finds a problem."""
    problem = check_rle(rle, size)
    if problem is not None:
        raise HVPSError(f"{where}: {problem}")


#: below this many characters a plain loop decodes faster than numpy's fixed per-call costs.
_SHORT_COUNTS = 160


def decode_counts(counts: str | bytes) -> np.ndarray:
    """Decode the compressed ``counts`` string of a pycocotools RLE into run lengths (int64).

    The runs alternate background/foreground and start with background (possibly 0 long).
    This is pycocotools' ``rleFrString``: each value is written in 5-bit groups, least
    significant first, ``0x20`` marking "more groups follow" and ``0x10`` on the last group
    the sign; from the fourth value on, values are stored as differences to the value two
    places before.
    """
    raw = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    if len(raw) < _SHORT_COUNTS:
        return np.asarray(_decode_short(raw), np.int64)
    chars = np.frombuffer(raw, np.uint8).astype(np.int64) - 48
    last_of_value = (chars & 0x20) == 0
    value_index = np.concatenate(([0], np.cumsum(last_of_value)[:-1]))
    starts = np.flatnonzero(np.concatenate(([True], last_of_value[:-1])))
    position = np.arange(chars.size) - starts[value_index]
    values = np.add.reduceat((chars & 0x1F) << (5 * position), starts)
    ends = np.flatnonzero(last_of_value)
    negative = (chars[ends] & 0x10) != 0
    values[negative] -= np.left_shift(1, 5 * (position[ends[negative]] + 1))
    runs = values.copy()
    # Delta coding applies from index 3 on: runs[i] = values[i] + runs[i - 2].
    runs[2::2] = np.cumsum(values[2::2])
    runs[1::2] = np.cumsum(values[1::2])
    return runs


def _decode_short(raw: bytes) -> list[int]:
    runs: list[int] = []
    value = shift = 0
    for byte in raw:
        char = byte - 48
        value |= (char & 0x1F) << shift
        shift += 5
        if char & 0x20:
            continue
        if char & 0x10:
            value |= -1 << shift
        if len(runs) > 2:
            value += runs[-2]
        runs.append(value)
        value = shift = 0
    return runs


def rle_subtract(rle: RLE, other: RLE) -> RLE:
    """Return ``rle`` minus the pixels of ``other`` (both compressed RLEs of one size)."""
    coco = to_coco(rle)
    inside = mask_utils.merge([coco, to_coco(other)], intersect=True)
    if int(mask_utils.area(inside)) == 0:
        return from_coco(coco)
    return _remove_inside(coco, inside)


def _remove_inside(coco: RLE, inside: RLE) -> RLE:
    # ``coco and not inside`` is one pycocotools intersection with the complement of
    # ``inside``; the long RLE of ``coco`` is never decoded.
    outside = {"size": coco["size"], "counts": complement_counts(inside["counts"])}
    return from_coco(mask_utils.merge([coco, outside], intersect=True))


def complement_counts(counts: str | bytes) -> bytes:
    """Return the compressed counts of the complement of a mask, given its compressed counts.

    The complement's runs are the mask's runs with a zero-length first run added (or the
    zero-length first run removed). Because of the delta coding (each value from the fourth
    on is stored relative to the value two places before), only the first four values of
    the string change; the rest is copied as it is, so this costs microseconds whatever the
    mask.
    """
    raw = counts.encode("ascii") if isinstance(counts, str) else bytes(counts)
    values, offsets = _read_values(raw, 4)
    if len(values) < 4:  # tiny RLE: decode, shift, re-encode
        runs = decode_counts(raw).tolist()
        runs = runs[1:] if runs and runs[0] == 0 else [0, *runs]
        return b"".join(_write_value(r - runs[i - 2] if i > 2 else r) for i, r in enumerate(runs))
    first, second, third, fourth = values  # stored values; runs 0..2 are stored as they are
    if first == 0:  # runs [0, r1, r2, r3, ...] -> [r1, r2, r3, ...]; r3 = fourth + r1
        prefix = _write_value(second) + _write_value(third) + _write_value(fourth + second)
        return prefix + raw[offsets[3] :]
    # runs [r0, r1, r2, ...] -> [0, r0, r1, r2, ...]: the stored value 3 becomes r2 - r0.
    prefix = _write_value(0) + _write_value(first) + _write_value(second) + _write_value(third - first)
    return prefix + raw[offsets[2] :]


def _read_values(raw: bytes, count: int) -> tuple[list[int], list[int]]:
    # The first ``count`` stored values (no delta decoding) and the offset after each.
    values: list[int] = []
    offsets: list[int] = []
    value = shift = offset = 0
    while offset < len(raw) and len(values) < count:
        char = raw[offset] - 48
        offset += 1
        value |= (char & 0x1F) << shift
        shift += 5
        if char & 0x20:
            continue
        if char & 0x10:
            value |= -1 << shift
        values.append(value)
        offsets.append(offset)
        value = shift = 0
    return values, offsets


def _write_value(value: int) -> bytes:
    # pycocotools' rleToString for one stored value.
    out = bytearray()
    more = True
    while more:
        char = value & 0x1F
        value >>= 5
        more = value != -1 if char & 0x10 else value != 0
        out.append((char | (0x20 if more else 0)) + 48)
    return bytes(out)


def resolve_overlaps(rles: Sequence[RLE], priority: np.ndarray) -> tuple[list[RLE], np.ndarray]:
    """Make masks disjoint: each pixel goes to the covering mask of highest ``priority``.

    Only masks whose bounding boxes overlap are intersected, and only masks that lose
    pixels are re-encoded, so a frame without overlaps costs one ``toBbox`` call. Ties in
    ``priority`` go to the lower index.

    Args:
        rles: compressed RLEs of one frame (all of the same size).
        priority: (N,) higher wins.

    Returns:
        The disjoint RLEs (same order) and the fraction of each mask that it kept (0 for an
        empty mask, 1 for a mask that lost nothing).
    """
    count = len(rles)
    if count == 0:
        return [], np.zeros(0)
    coco = list(rles)  # pycocotools reads ``counts`` given as str too: no conversion needed
    boxes = mask_utils.toBbox(coco)  # x, y, w, h
    visible = ((boxes[:, 2] > 0) & (boxes[:, 3] > 0)).astype(np.float64)
    if count < 2:
        return list(rles), visible
    x1, y1 = boxes[:, 0], boxes[:, 1]
    x2, y2 = x1 + boxes[:, 2], y1 + boxes[:, 3]
    box_overlap = (np.minimum(x2[:, None], x2[None, :]) > np.maximum(x1[:, None], x1[None, :])) & (
        np.minimum(y2[:, None], y2[None, :]) > np.maximum(y1[:, None], y1[None, :])
    )
    np.fill_diagonal(box_overlap, False)
    if not box_overlap.any():
        return list(rles), visible
    order = np.argsort(-np.asarray(priority, np.float64), kind="stable")
    rank = np.empty(count, np.int64)
    rank[order] = np.arange(count)
    box_overlap &= rank[None, :] < rank[:, None]  # [i, j]: j outranks i and their boxes meet
    resolved = list(rles)
    trimmed, lost_areas = [], []
    for i in np.flatnonzero(box_overlap.any(axis=1)).tolist():
        winners = np.flatnonzero(box_overlap[i]).tolist()
        # Pixels of higher-priority masks, whatever they lost to others, all belong to someone
        # above i, so subtracting the union of their original masks is exact.
        union = coco[winners[0]] if len(winners) == 1 else mask_utils.merge([coco[j] for j in winners])
        inside = mask_utils.merge([coco[i], union], intersect=True)
        lost = int(mask_utils.area(inside))
        if lost:
            resolved[i] = _remove_inside(coco[i], inside)
            trimmed.append(i)
            lost_areas.append(lost)
    if trimmed:
        areas = mask_utils.area([coco[i] for i in trimmed])
        visible[trimmed] = 1.0 - np.asarray(lost_areas) / np.maximum(areas, 1)
    return resolved, visible
