"""Segmentation and Tracking Quality (STQ, Weber et al. 2021), functional core (NumPy; no torch needed).

STQ = sqrt(AQ * IoU). This module reproduces the behaviour of the STEP reference
implementation (deeplab2 ``evaluation/numpy/segmentation_and_tracking_quality.py``), including
its quirks (docs/ARCHITECTURE.md "Metrics, exactly"):

* Per sequence it keeps a semantic confusion matrix (rows ground truth, columns prediction,
  the ignore label as one extra "void" index), the areas of ground-truth tubes and predicted
  segments, and their intersections. Tubes and segments are keyed by the full panoptic id
  ``semantic * label_divisor + instance``; matching ignores the class.
* Ground-truth thing pixels with instance 0 are crowd and removed from ground truth and
  prediction. Predicted segments are all other predicted thing pixels, including those on
  ground-truth void or stuff and predicted thing pixels with instance 0.
* AQ sums ``TPA * TPA / (TPA + FPA + FNA) / |g|`` over ground-truth tubes ``g`` and the
  predicted segments touching them, divided by the number of tubes of all sequences
  (tube-weighted); 0 without tubes.
* IoU drops the ground-truth void row but keeps the void column, so predicting void on valid
  ground truth adds one class with IoU 0 to the mean; the mean runs over classes whose union
  is positive, which makes the IoU (and STQ) of an all-void sequence NaN.

Label maps (``preds`` and ``target``, each in any of these layouts, any integer dtype, as NumPy
arrays or torch tensors on any device):

* ``(B, H, W, 2)``: (semantic class, instance id) per pixel, like torchmetrics' PanopticQuality;
* a ``(semantic, instance)`` tuple of two ``(B, H, W)`` arrays;
* ``(B, H, W)`` packed panoptic ids ``semantic * label_divisor + instance`` (what
  :func:`hvps_lightning.formats.step_png.read_step_panoptic` decodes a STEP PNG into).

Design for speed (``update`` is called on every frame of 1920x1080 videos): both label maps
are run-length encoded along the flattened pixels first. A pixel whose ground truth and
prediction both equal those of its left neighbour belongs to the neighbour's run; all
statistics are then histograms over runs weighted by run length. Label maps are piecewise
constant, so there are ~1-2 % as many runs as pixels, and the only pass over the pixels is the
neighbour comparison, which reads each input once: a pixel's two channels are compared as one
machine word (uint8/16 and int32 pairs viewed as one wider integer, packed ids as they are),
and 64-bit pairs, for which no wider integer exists, by comparing each element with the one
two places back (contiguous, vectorised) and reading the two resulting flags of a pixel as one
uint16. No range check or repacking pass is needed for any dtype. The pass runs in chunks
that keep the temporaries in cache. Ids are grouped through bincount lookup tables rather
than sorting. CPU data goes through NumPy (zero-copy views of CPU tensors: faster
single-threaded than the equivalent torch ops); tensors on other devices stay there
(:mod:`hvps_lightning.metrics.functional_stq_torch`).

Counts are exact int64. (The newest deeplab2 version casts counts to float32, and under
NumPy >= 2 its areas then accumulate in float32, which rounds once a tube exceeds 2**24
pixels; its earlier int64 version and this module agree exactly.)

Example:
    >>> import numpy as np
    >>> spec = STQLabelSpace(num_classes=2, things=(1,), ignore_label=255)
    >>> target = np.array([[[[0, 0], [1, 1], [1, 1], [1, 2]]]])  # (B=1, H=1, W=4, 2)
    >>> preds = np.array([[[[0, 0], [1, 5], [1, 5], [1, 5]]]])
    >>> confusion, pairs, frames = stq_batch_statistics(preds, target, [0], 1, spec)
    >>> result = stq_from_statistics(confusion, pairs, spec)
    >>> round(result.aq, 4), round(result.iou, 4)
    (0.5, 1.0)
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hvps_lightning.metrics.stq_inputs import (
    LabelMaps,
    STQLabelSpace,
    _check_pair,
    _is_tensor,
    as_label_maps,
    instance_error,
    semantic_error,
    split_panoptic,
)

#: the reference's guard against division by zero (keeps "no tubes" at AQ = 0).
EPSILON = 1e-15

SequenceId = str | int


@dataclass(frozen=True)
class STQResult:
    """STQ numbers of a set of sequences (index i of the per-sequence arrays = sequence i).

    Attributes:
        stq: sqrt(aq * iou) over all sequences.
        aq: association quality, tube-weighted over all sequences.
        iou: mean IoU of the summed confusion matrix (the "SQ" term).
        class_iou: IoU per confusion index (``confusion_size`` entries; the void index is the
            void column quirk: 0 where void was predicted on valid ground truth), NaN where
            the union is empty.
        sequence_stq: STQ per sequence.
        sequence_aq: AQ per sequence (0 for a sequence without tubes).
        sequence_iou: mean IoU per sequence (NaN for a sequence whose ground truth is all void).
        sequence_tubes: ground-truth tubes per sequence (``sequence_aq * sequence_tubes`` is a
            sequence's share of the AQ sum: what sets of sequences, or blocks of frames, add).
    """

    stq: float
    aq: float
    iou: float
    class_iou: np.ndarray
    sequence_stq: np.ndarray
    sequence_aq: np.ndarray
    sequence_iou: np.ndarray
    sequence_tubes: np.ndarray


#: run the pass over the pixels of CPU tensors through NumPy (faster single-threaded than torch);
#: tests switch it off to exercise the torch path that other devices take.
USE_NUMPY_ON_CPU = True

#: pixels compared per step on the CPU: the temporaries of one step stay in the L2 cache.
CPU_CHUNK_PIXELS = 1 << 17


def stq_batch_statistics(
    preds: Any,
    target: Any,
    item_slots: Any,
    num_slots: int,
    space: STQLabelSpace,
    validate: bool = True,
) -> tuple[Any, Any, np.ndarray]:
    """Accumulate the STQ statistics of a batch of frames, grouped by sequence slot.

    Args:
        preds: predicted label maps, in one of the layouts of the module docstring.
        target: ground truth, same (B, H, W) and kind (NumPy or torch, same device).
        item_slots: (B,) ints in ``[0, num_slots)``: the sequence slot of each item. Items
            of one slot are frames of one sequence.
        num_slots: number of slots.
        space: the label space (its ``label_divisor`` decodes packed ids).
        validate: check that instance ids of thing pixels lie in ``[0, label_divisor)``
            (ground truth: ``[1, label_divisor)``). Semantic ids are always checked (classes
            or the ignore label): they index lookup tables.

    Returns:
        ``confusion``, (num_slots, C, C) int64 semantic confusion, rows ground truth;
        ``pairs``, (N, 4) int64 rows ``(slot, gt_id, pred_id, pixels)``, where ``gt_id`` is
        the panoptic id of a ground-truth tube or -1 (pixels of a predicted segment outside
        every tube) and ``pred_id`` that of a predicted segment or -1 (rows may repeat and
        rows of 0 pixels may occur: consumers sum them); ``frames``, (num_slots,) int64
        number of items per slot (NumPy). ``confusion`` and ``pairs`` are NumPy arrays for
        NumPy input, tensors on the input's device for tensors.

    Raises:
        STQInputError: on invalid label values (``which`` is ``"preds"`` or ``"target"``).
        ValueError: on layouts, shapes, dtypes or devices that do not fit.
    """
    pred_maps = as_label_maps(preds, "preds", space.label_divisor)
    target_maps = as_label_maps(target, "target", space.label_divisor)
    _check_pair(pred_maps, target_maps)
    batch = target_maps.shape[0]
    slots_of_items = _slots_of_items(item_slots, batch, num_slots)
    frames = np.bincount(slots_of_items, minlength=num_slots)
    if target_maps.is_tensor and (target_maps.device.type != "cpu" or not USE_NUMPY_ON_CPU):
        from hvps_lightning.metrics.functional_stq_torch import batch_statistics_torch

        confusion, pairs = batch_statistics_torch(
            pred_maps, target_maps, slots_of_items, num_slots, space, validate
        )
        return confusion, pairs, frames
    confusion, pairs = _batch_statistics_numpy(
        _host(pred_maps), _host(target_maps), slots_of_items, num_slots, space, validate
    )
    if target_maps.is_tensor:
        import torch

        return torch.from_numpy(confusion), torch.from_numpy(pairs), frames
    return confusion, pairs, frames


def _slots_of_items(item_slots: Any, batch: int, num_slots: int) -> np.ndarray:
    if _is_tensor(item_slots):
        item_slots = item_slots.detach().cpu().numpy()
    slots = np.asarray(item_slots, dtype=np.int64).reshape(-1)
    if slots.size != batch:
        raise ValueError(f"got {slots.size} sequence slots for a batch of {batch}")
    if slots.size and (slots.min() < 0 or slots.max() >= num_slots):
        raise ValueError(f"sequence slots must lie in [0, {num_slots})")
    return slots


def _host(maps: LabelMaps) -> LabelMaps:
    """NumPy views of CPU tensors (zero copy), C-contiguous."""
    arrays = tuple(np.ascontiguousarray(a.detach().numpy() if _is_tensor(a) else a) for a in maps.arrays)
    return LabelMaps(maps.layout, arrays, maps.shape, maps.label_divisor)


def _batch_statistics_numpy(
    preds: LabelMaps,
    target: LabelMaps,
    slots_of_items: np.ndarray,
    num_slots: int,
    space: STQLabelSpace,
    validate: bool,
) -> tuple[np.ndarray, np.ndarray]:
    batch, height, width = target.shape
    item_size = height * width
    size = space.confusion_size
    if batch == 0 or item_size == 0:
        return np.zeros((num_slots, size, size), dtype=np.int64), np.zeros((0, 4), dtype=np.int64)
    total = batch * item_size
    starts, (gt_semantic, gt_instance), (pred_semantic, pred_instance) = find_runs(target, preds)
    lengths = np.empty(starts.size, dtype=np.float64)  # float: what bincount weights are anyway
    np.subtract(starts[1:], starts[:-1], out=lengths[:-1], casting="unsafe")
    lengths[-1] = total - starts[-1]
    run_slots = slots_of_items[starts // item_size] if num_slots > 1 else None
    confusion, pairs = _run_statistics(
        gt_semantic, gt_instance, pred_semantic, pred_instance, lengths, run_slots, num_slots, space, validate
    )
    return confusion.reshape(num_slots, size, size), pairs


#: element size -> the unsigned integer that holds a pixel's two channels in one word.
_PAIR_WORD = {1: np.uint16, 2: np.uint32, 4: np.uint64}
#: 64-bit pairs are gathered as one 16-byte item per pixel (a bit-exact copy).
_PIXEL_OF_64_BIT_PAIR = np.dtype((np.void, 16))


def _streams(maps: LabelMaps) -> list[tuple[np.ndarray, int]]:
    """1-D arrays whose elements, compared ``step`` elements apart, tell equal pixels apart.

    A pixel equals its left neighbour iff every stream has equal elements at its position
    (step 1: one element per pixel; step 2: the two channels of 64-bit pairs). The streams'
    elements at the run starts are also what the statistics need.
    """
    if maps.layout == "pairs":
        (labels,) = maps.arrays
        word = _PAIR_WORD.get(labels.dtype.itemsize)
        if word is not None:
            return [(labels.reshape(-1).view(word), 1)]
        return [(labels.reshape(-1), 2)]
    return [(array.reshape(-1), 1) for array in maps.arrays]


def _decode_streams(maps: LabelMaps, gathered: list[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(semantic, instance) per run from the gathered stream elements of :func:`_streams`."""
    if maps.layout == "pairs":
        labels_dtype = maps.arrays[0].dtype
        (words,) = gathered
        pairs = words.view(labels_dtype).reshape(-1, 2)
        return pairs[:, 0], pairs[:, 1]
    if maps.layout == "split":
        semantic, instance = gathered
        return semantic, instance
    return split_panoptic(gathered[0], maps.label_divisor)


def _or_into(flags: np.ndarray, other: np.ndarray, size: int) -> None:
    """``flags[:size] |= other[:size]`` for bool buffers, eight flags per operation (size % 8 == 0)."""
    words = flags[:size].view(np.uint64)
    np.bitwise_or(words, other[:size].view(np.uint64), out=words)


def _gather(array: np.ndarray, step: int, begin: int, end: int, local: np.ndarray) -> np.ndarray:
    if step == 1:
        return array[begin:end].take(local)
    return array[2 * begin : 2 * end].view(_PIXEL_OF_64_BIT_PAIR).take(local)


def find_runs(
    target: LabelMaps, preds: LabelMaps
) -> tuple[np.ndarray, tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """Run-length encode a batch of (B, H, W) label maps along the flattened pixels.

    A run continues while ground truth and prediction both equal their left neighbour's;
    every batch item starts a new run. This is the only pass over all pixels: per chunk of
    :data:`CPU_CHUNK_PIXELS`, the neighbour comparisons and the gathering of the labels at the
    run starts both work on data still in cache.

    Returns:
        The flat pixel indices (int64, ascending) where runs start, and (semantic, instance)
        of the target and of the prediction at those pixels, in the inputs' dtypes.
    """
    batch, height, width = target.shape
    item_size, total = height * width, batch * height * width
    target_streams, pred_streams = _streams(target), _streams(preds)
    streams = target_streams + pred_streams
    chunk = max(1, min(CPU_CHUNK_PIXELS, total))
    padded = -(-chunk // 8) * 8  # bool buffers are OR-ed eight at a time, as uint64
    change, scratch = np.zeros(padded, dtype=bool), np.zeros(padded, dtype=bool)
    with_pairs = any(step == 2 for _, step in streams)
    pair_change = np.zeros(2 * padded if with_pairs else 0, dtype=bool)
    pair_scratch = np.zeros(2 * padded if with_pairs else 0, dtype=bool)
    parts = [np.zeros(1, dtype=np.int64)]
    gathered: list[list[np.ndarray]] = [[_gather(array, step, 0, 1, parts[0])] for array, step in streams]
    for begin in range(1, total, chunk):  # pixel 0 starts a run; compare pixels begin .. end - 1
        end = min(begin + chunk, total)
        count = end - begin
        words = -(-count // 8)
        have_bool = have_pairs = False
        for array, step in streams:
            if step == 1:
                out = scratch if have_bool else change
                np.not_equal(array[begin:end], array[begin - 1 : end - 1], out=out[:count])
                if have_bool:
                    _or_into(change, scratch, 8 * words)
                have_bool = True
            else:
                out = pair_scratch if have_pairs else pair_change
                here, left = array[2 * begin : 2 * end], array[2 * begin - 2 : 2 * end - 2]
                np.not_equal(here, left, out=out[: 2 * count])
                if have_pairs:
                    _or_into(pair_change, pair_scratch, 16 * words)
                have_pairs = True
        if have_pairs:
            # the two flags of a pixel read as one uint16: nonzero iff either channel differs
            out = scratch if have_bool else change
            np.not_equal(pair_change[: 2 * count].view(np.uint16), 0, out=out[:count])
            if have_bool:
                _or_into(change, scratch, 8 * words)
        first_item = -(-begin // item_size) * item_size  # first item start >= begin
        change[first_item - begin : count : item_size] = True
        local = np.flatnonzero(change[:count])
        for values, (array, step) in zip(gathered, streams, strict=True):
            values.append(_gather(array, step, begin, end, local))
        local += begin
        parts.append(local)
    starts = np.concatenate(parts)
    columns = [np.concatenate(values) for values in gathered]
    split = len(target_streams)
    return starts, _decode_streams(target, columns[:split]), _decode_streams(preds, columns[split:])


_MAX_TABLE = 1 << 20


def _compact(codes: np.ndarray, code_range: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of ``codes`` (sorted) and each code's index among them (sort-free if small)."""
    if code_range <= _MAX_TABLE:
        values = np.flatnonzero(np.bincount(codes, minlength=code_range))
        table = np.empty(code_range, dtype=np.int64)
        table[values] = np.arange(values.size)
        return values, table[codes]
    values, inverse = np.unique(codes, return_inverse=True)
    return values, inverse.reshape(-1)


def _run_statistics(
    gt_semantic: np.ndarray,
    gt_instance: np.ndarray,
    pred_semantic: np.ndarray,
    pred_instance: np.ndarray,
    lengths: np.ndarray,
    run_slots: np.ndarray | None,
    num_slots: int,
    space: STQLabelSpace,
    validate: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Flat confusion counts and (slot, gt_id, pred_id, pixels) rows from the runs of a batch.

    All work is on runs (a few percent of the pixels) and, past the confusion matrix, on the
    runs that touch a thing: lookup tables and bincounts, no sorting unless ids span more than
    :data:`_MAX_TABLE` values.
    """
    size = space.confusion_size
    # Out-of-range ids would index the tables out of bounds (or wrap around if negative).
    in_range = all(
        values.size == 0 or (values.min() >= 0 and values.max() < space.table_size)
        for values in (gt_semantic, pred_semantic)
    )
    info = space.run_info(gt_semantic, pred_semantic) if in_range else None
    if info is None or (info.size and info.min() < 0):  # -1: neither a class nor the ignore label
        error = semantic_error(gt_semantic, space, "target") or semantic_error(pred_semantic, space, "preds")
        assert error is not None
        raise error
    confusion_index = info >> 2
    if run_slots is not None:
        confusion_index += run_slots * (size * size)
    # Float weights are exact: counts stay far below 2**53.
    confusion = np.bincount(confusion_index, weights=lengths, minlength=num_slots * size * size)

    # Only runs where either side is a thing go on.
    touching = np.flatnonzero(info & 3)
    flags = info[touching]
    gt_instance, pred_instance = gt_instance[touching], pred_instance[touching]
    gt_thing, pred_thing = (flags & 1) != 0, (flags & 2) != 0
    tube = gt_thing & (gt_instance != 0)
    segment = pred_thing & ~(gt_thing ^ tube)  # ground-truth crowd: neither tube nor segment
    if validate:
        _check_instances(gt_instance, tube, 1, space, "target")
        _check_instances(pred_instance, segment, 0, space, "preds")
    # Codes: 0 = none, else 1 + thing rank * divisor + instance (compact, unlike panoptic ids).
    offsets = space.thing_code_offset
    gt_code = np.where(tube, offsets[gt_semantic[touching]] + gt_instance.astype(np.int64), 0)
    pred_code = np.where(segment, offsets[pred_semantic[touching]] + pred_instance.astype(np.int64), 0)
    gt_values, gt_index = _compact(gt_code, space.code_range)
    pred_values, pred_index = _compact(pred_code, space.code_range)
    key = gt_index * pred_values.size + pred_index
    key_range = gt_values.size * pred_values.size
    if run_slots is not None:
        key += run_slots[touching] * key_range
    if num_slots * key_range <= _MAX_TABLE:
        counts = np.bincount(key, weights=lengths[touching], minlength=num_slots * key_range)
        key_values = np.flatnonzero(counts)
        counts = counts[key_values]
    else:
        key_values, key_index = _compact(key, num_slots * key_range)
        counts = np.bincount(key_index, weights=lengths[touching], minlength=key_values.size)

    pred_of_key = pred_values[key_values % pred_values.size]
    rest = key_values // pred_values.size
    gt_of_key = gt_values[rest % gt_values.size]
    keep = (gt_of_key > 0) | (pred_of_key > 0)  # runs on ground-truth crowd only: no row
    pairs = np.stack(
        [
            (rest // gt_values.size)[keep],
            _panoptic_of_codes(gt_of_key[keep], space),
            _panoptic_of_codes(pred_of_key[keep], space),
            counts[keep].astype(np.int64),
        ],
        axis=1,
    )
    return confusion.astype(np.int64), pairs


def _check_instances(
    instances: np.ndarray, used: np.ndarray, low: int, space: STQLabelSpace, which: str
) -> None:
    """Raise if an instance id where ``used`` lies outside ``[low, label_divisor)``.

    Tubes never hold instance 0 (that is crowd), so all ids in ``[0, label_divisor)`` pass; only
    when some id is outside does the check look at the used ones.
    """
    if instances.size == 0:
        return
    limits = np.iinfo(instances.dtype)
    if limits.min >= 0 and limits.max < space.label_divisor:
        return  # the dtype cannot hold a bad value
    if instances.min() >= 0 and instances.max() < space.label_divisor:
        return
    error = instance_error(instances[used], low, space, which)
    if error is not None:
        raise error


def _panoptic_of_codes(codes: np.ndarray, space: STQLabelSpace) -> np.ndarray:
    """Panoptic ids ``semantic * label_divisor + instance`` of compact codes; -1 for code 0."""
    things = np.asarray(space.things, dtype=np.int64)
    if things.size == 0:
        return np.full(codes.shape, -1, dtype=np.int64)
    rank, instance = np.divmod(np.maximum(codes - 1, 0), space.label_divisor)
    return np.where(codes > 0, things[rank] * space.label_divisor + instance, -1)


# ---------------------------------------------------------------------------------------------
# STQ from statistics
# ---------------------------------------------------------------------------------------------
def _to_numpy(array: Any) -> np.ndarray:
    if _is_tensor(array):
        array = array.detach().cpu().numpy()
    return np.asarray(array, dtype=np.int64)


def _group_sum(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct rows of ``keys`` (N, K), the sum of ``values`` per row, and each row's group."""
    if keys.shape[0] == 0:
        return keys, values[:0], np.zeros(0, dtype=np.int64)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    sums = np.bincount(inverse, weights=values, minlength=unique.shape[0]).astype(values.dtype)
    return unique, sums, inverse


def sum_pair_rows(rows: np.ndarray) -> np.ndarray:
    """(slot, gt_id, pred_id, pixels) rows with equal keys summed, rows of 0 pixels dropped."""
    rows = rows.reshape(-1, 4)
    keys, pixels, _ = _group_sum(rows[:, :3], rows[:, 3])
    keep = pixels > 0
    return np.concatenate([keys[keep], pixels[keep, None]], axis=1)


def _mean_iou(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean IoU over classes with a positive union and the IoU per class, over the last two axes."""
    true_positives = np.diagonal(confusion, axis1=-2, axis2=-1).astype(np.float64)
    unions = confusion.sum(axis=-1) + confusion.sum(axis=-2) - true_positives
    with np.errstate(invalid="ignore", divide="ignore"):
        ious = true_positives / np.maximum(unions, EPSILON)
        mean = ious.sum(axis=-1) / np.count_nonzero(unions, axis=-1)
        per_class = np.where(unions > 0, true_positives / np.where(unions > 0, unions, 1.0), np.nan)
    return mean, per_class


def stq_from_statistics(confusion: Any, pairs: Any, space: STQLabelSpace) -> STQResult:
    """Compute STQ, AQ and IoU from accumulated statistics.

    Args:
        confusion: (S, C, C) int64 confusion per sequence (rows ground truth); array or tensor.
        pairs: (N, 4) int64 rows ``(sequence, gt_id, pred_id, pixels)`` with ``sequence`` in
            ``[0, S)``; rows may repeat (they are summed); array or tensor.
        space: the label space.

    Returns:
        The overall and per-sequence numbers.
    """
    confusion_np = _to_numpy(confusion).copy()
    num_sequences = confusion_np.shape[0]
    # The reference removes the ground-truth void row only; the void column stays.
    confusion_np[:, space.void_index, :] = 0
    sequence_iou, _ = _mean_iou(confusion_np.astype(np.float64))
    total_iou, class_iou = _mean_iou(confusion_np.sum(axis=0).astype(np.float64))

    rows = sum_pair_rows(_to_numpy(pairs))
    keys, pixels = rows[:, :3], rows[:, 3].astype(np.float64)
    sequence, gt_id, pred_id = keys[:, 0], keys[:, 1], keys[:, 2]

    # Each row's tube (ground-truth id) and segment (predicted id), -1 where it has none.
    has_gt = gt_id >= 0
    tubes, tube_area, tube_inverse = _group_sum(keys[has_gt][:, :2], pixels[has_gt])
    row_tube = np.full(keys.shape[0], -1, dtype=np.int64)
    row_tube[has_gt] = tube_inverse
    has_pred = pred_id >= 0
    _, segment_area, segment_inverse = _group_sum(keys[has_pred][:, [0, 2]], pixels[has_pred])
    row_segment = np.full(keys.shape[0], -1, dtype=np.int64)
    row_segment[has_pred] = segment_inverse

    both = has_gt & has_pred
    tpa = pixels[both]
    gt_size = tube_area[row_tube[both]]
    pred_size = segment_area[row_segment[both]]
    # TPA * TPA / (TPA + FPA + FNA) / |g| with FPA = |p| - TPA and FNA = |g| - TPA.
    terms = tpa * (tpa / (tpa + (pred_size - tpa) + (gt_size - tpa))) / gt_size
    aq_sum = np.bincount(sequence[both], weights=terms, minlength=num_sequences)[:num_sequences]
    tube_count = np.bincount(tubes[:, 0], minlength=num_sequences)[:num_sequences].astype(np.float64)
    sequence_aq = aq_sum / np.maximum(tube_count, EPSILON)
    aq = float(aq_sum.sum() / max(float(tube_count.sum()), EPSILON))

    with np.errstate(invalid="ignore"):
        sequence_stq = np.sqrt(sequence_aq * sequence_iou)
    iou = float(total_iou)
    stq = math.sqrt(aq * iou) if not math.isnan(iou) else math.nan
    return STQResult(
        stq=stq,
        aq=aq,
        iou=iou,
        class_iou=class_iou,
        sequence_stq=sequence_stq,
        sequence_aq=sequence_aq,
        sequence_iou=sequence_iou,
        sequence_tubes=tube_count,
    )


def sorted_sequence_ids(ids: Sequence[SequenceId]) -> list[SequenceId]:
    """Integers (numerically) before strings (lexicographically): the same order on every rank."""
    return sorted(ids, key=lambda s: (0, s, "") if isinstance(s, int) else (1, 0, s))


def format_stq_result(
    result: STQResult,
    sequence_ids: Sequence[SequenceId],
    space: STQLabelSpace,
    class_names: Sequence[str],
    num_frames: int,
) -> dict[str, Any]:
    """The dict of docs/ARCHITECTURE.md "Metrics, exactly" (plus ``num_frames``) from an :class:`STQResult`.

    ``iou_per_class`` names the real classes only; the void column (predicted void on valid
    ground truth) is not a class but still counts in ``sq`` as the reference does.
    """
    iou_per_class = {
        name: float(result.class_iou[index])
        for index, name in enumerate(class_names)
        if index != space.ignore_label
    }
    per_sequence = {
        sequence_id: {
            "stq": float(result.sequence_stq[i]),
            "aq": float(result.sequence_aq[i]),
            "sq": float(result.sequence_iou[i]),
        }
        for i, sequence_id in enumerate(sequence_ids)
    }
    return {
        "stq": float(result.stq),
        "aq": float(result.aq),
        "sq": float(result.iou),
        "iou_per_class": iou_per_class,
        "per_sequence": per_sequence,
        "num_frames": int(num_frames),
    }


# ---------------------------------------------------------------------------------------------
# Accumulation on the host
# ---------------------------------------------------------------------------------------------
def check_sequence_id(sequence_id: Any) -> SequenceId:
    """A sequence id as str or int (NumPy integers become ints); ``TypeError`` otherwise."""
    if isinstance(sequence_id, (bool, np.bool_)):
        raise TypeError("a sequence id is a str or an int, not a bool")
    if isinstance(sequence_id, (int, np.integer)):
        value = int(sequence_id)
        if not -(2**63) <= value < 2**63:
            raise ValueError(f"integer sequence id {value} does not fit in 64 bits")
        return value
    if isinstance(sequence_id, str):
        return sequence_id
    raise TypeError(f"a sequence id is a str or an int, got {type(sequence_id).__name__}")


def sequence_ids_of_batch(sequence_ids: Any, batch: int) -> list[SequenceId]:
    """One checked sequence id per item: a list, a tensor of ints, or one id for the whole batch."""
    if _is_tensor(sequence_ids):
        if sequence_ids.dtype.is_floating_point or str(sequence_ids.dtype) == "torch.bool":
            raise TypeError(f"sequence ids given as a tensor must be integers, got {sequence_ids.dtype}")
        sequence_ids = sequence_ids.reshape(-1).tolist()
    elif isinstance(sequence_ids, np.ndarray):
        sequence_ids = sequence_ids.reshape(-1).tolist()
    elif isinstance(sequence_ids, (str, int, np.integer)):
        sequence_ids = [sequence_ids] * batch
    ids = [check_sequence_id(s) for s in sequence_ids]
    if len(ids) != batch:
        raise ValueError(f"got {len(ids)} sequence ids for a batch of {batch}")
    return ids


def batch_size_of(preds: Any, target: Any, label_divisor: int) -> int:
    """B of a (preds, target) batch in any layout (both sides checked)."""
    pred_maps = as_label_maps(preds, "preds", label_divisor)
    target_maps = as_label_maps(target, "target", label_divisor)
    _check_pair(pred_maps, target_maps)
    return target_maps.shape[0]


class STQAccumulator:
    """STQ over a stream of frames, accumulated on the host with NumPy only (no torch needed).

    What ``hvps evaluate step`` and :func:`segmentation_and_tracking_quality` use; the
    torchmetrics :class:`~hvps_lightning.metrics.STQ` adds DDP reduction on top of the same
    statistics and gives the same numbers. Memory grows with the number of distinct
    (tube, segment) pairs, not with the number of frames.

    Args:
        space: the label space.
        class_names: names of the classes for ``iou_per_class`` (default ``"0"``, ``"1"``, ...).
        validate: check instance ids of thing pixels (semantic ids are always checked).

    Example:
        >>> import numpy as np
        >>> stq = STQAccumulator(STQLabelSpace(2, (1,)))
        >>> frame = np.array([[[[0, 0], [1, 3]]]])
        >>> stq.update(frame, frame, "seq")
        >>> stq.compute()["stq"]
        1.0
    """

    #: merge the pair rows after this many updates.
    coalesce_every = 64

    def __init__(
        self, space: STQLabelSpace, class_names: Sequence[str] | None = None, validate: bool = True
    ) -> None:
        self.space = space
        names = [str(i) for i in range(space.num_classes)] if class_names is None else list(class_names)
        if len(names) != space.num_classes:
            raise ValueError(f"got {len(names)} class names for {space.num_classes} classes")
        self.class_names = tuple(str(n) for n in names)
        self.validate = validate
        self._index: dict[SequenceId, int] = {}
        self._confusion: list[np.ndarray] = []
        self._frames: list[int] = []
        self._pairs: list[np.ndarray] = []

    def update(self, preds: Any, target: Any, sequence_ids: Any) -> None:
        """Add a batch of frames (layouts of the module docstring; one sequence id per item, or one)."""
        batch = batch_size_of(preds, target, self.space.label_divisor)
        ids = sequence_ids_of_batch(sequence_ids, batch)
        slot_ids = list(dict.fromkeys(ids))
        slot_of_id = {sequence_id: slot for slot, sequence_id in enumerate(slot_ids)}
        confusion, pairs, frames = stq_batch_statistics(
            preds, target, [slot_of_id[s] for s in ids], len(slot_ids), self.space, self.validate
        )
        confusion, pairs = _to_numpy(confusion), _to_numpy(pairs)
        index = np.array([self._sequence_index(s) for s in slot_ids], dtype=np.int64)
        for slot, sequence in enumerate(index.tolist()):
            self._confusion[sequence] += confusion[slot]
            self._frames[sequence] += int(frames[slot])
        if pairs.size:
            pairs = pairs.copy()
            pairs[:, 0] = index[pairs[:, 0]]
            self._pairs.append(pairs)
        if len(self._pairs) >= self.coalesce_every:
            self._pairs = [sum_pair_rows(np.concatenate(self._pairs))]

    def _sequence_index(self, sequence_id: SequenceId) -> int:
        if sequence_id not in self._index:
            self._index[sequence_id] = len(self._index)
            size = self.space.confusion_size
            self._confusion.append(np.zeros((size, size), dtype=np.int64))
            self._frames.append(0)
        return self._index[sequence_id]

    @property
    def num_frames(self) -> int:
        """Frames added so far."""
        return sum(self._frames)

    def compute(self) -> dict[str, Any]:
        """``stq``, ``aq``, ``sq``, ``iou_per_class``, ``per_sequence`` and ``num_frames``."""
        order, result = self.result()
        return format_stq_result(result, order, self.space, self.class_names, self.num_frames)

    def aq_terms(self) -> dict[SequenceId, tuple[float, int]]:
        """Per sequence, its AQ sum and its number of ground-truth tubes.

        AQ over any set of sequences is the sum of their AQ sums over the sum of their tubes, so
        these are the summable statistics of AQ (e.g. of blocks of frames fed as sequences).
        """
        order, result = self.result()
        tubes = result.sequence_tubes
        return {
            sequence_id: (float(result.sequence_aq[i] * tubes[i]), int(tubes[i]))
            for i, sequence_id in enumerate(order)
        }

    def result(self) -> tuple[list[SequenceId], STQResult]:
        """The sequence ids in output order and the :class:`STQResult` of everything added so far."""
        order = sorted_sequence_ids(list(self._index))
        position = np.zeros(len(order), dtype=np.int64)
        for rank, sequence_id in enumerate(order):
            position[self._index[sequence_id]] = rank
        size = self.space.confusion_size
        confusion = np.zeros((len(order), size, size), dtype=np.int64)
        for sequence, matrix in enumerate(self._confusion):
            confusion[position[sequence]] = matrix
        pairs = np.concatenate(self._pairs) if self._pairs else np.zeros((0, 4), dtype=np.int64)
        pairs = pairs.copy()
        pairs[:, 0] = position[pairs[:, 0]]
        return order, stq_from_statistics(confusion, pairs, self.space)


def segmentation_and_tracking_quality(
    preds: Any,
    target: Any,
    sequence_ids: Any,
    num_classes: int,
    things: Sequence[int],
    ignore_label: int = 255,
    label_divisor: int = 65536,
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """STQ of one batch of frames in one call (the functional form of :class:`~hvps_lightning.metrics.STQ`).

    Example:
        >>> import numpy as np
        >>> target = np.array([[[[0, 0], [1, 1]]]])
        >>> segmentation_and_tracking_quality(target, target, [0], num_classes=2, things=[1])["stq"]
        1.0
    """
    accumulator = STQAccumulator(
        STQLabelSpace(int(num_classes), tuple(things), int(ignore_label), int(label_divisor)), class_names
    )
    accumulator.update(preds, target, sequence_ids)
    return accumulator.compute()
