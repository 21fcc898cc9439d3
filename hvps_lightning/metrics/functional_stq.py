"""Segmentation and Tracking Quality (STQ, Weber et al. 2021), functional core.

STQ = sqrt(AQ * IoU). This module reproduces the behaviour of the STEP reference
implementation (deeplab2 ``evaluation/numpy/segmentation_and_tracking_quality.py``), including
its quirks (DESIGN.md section 5):

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

Design for speed (``update`` is called on every frame of 1920x1080 videos): both label maps
are run-length encoded along the flattened pixels first. A pixel whose (semantic, instance)
pairs in ground truth and prediction both equal those of its left neighbour belongs to the
neighbour's run; all statistics are then histograms over runs weighted by run length. Label
maps are piecewise constant, so there are ~1-2 % as many runs as pixels, and the only full
pass over the pixels is the neighbour comparison. The (semantic, instance) pair of one pixel
is compared as one machine word by viewing the two channels as a single wider integer; on
the CPU that comparison runs through NumPy (zero-copy views), which is about twice as fast as
the equivalent torch ops single-threaded. The pass is memory-bound, so compact label dtypes
are faster: uint16 (what ``hvps evaluate step`` feeds) or int32 pack a pixel into 4 or 8
bytes, while int64 labels are compared channel by channel (about 2-3x slower). Ids are
grouped through bincount lookup tables rather than sorting.

Counts are exact int64. (The newest deeplab2 version casts counts to float32, and under
NumPy >= 2 its areas then accumulate in float32, which rounds once a tube exceeds 2**24
pixels; its earlier int64 version and this module agree exactly.)

Example:
    >>> import torch
    >>> spec = STQLabelSpace(num_classes=2, things=(1,), ignore_label=255)
    >>> target = torch.tensor([[[[0, 0], [1, 1], [1, 1], [1, 2]]]])  # (B=1, H=1, W=4, 2)
    >>> preds = torch.tensor([[[[0, 0], [1, 5], [1, 5], [1, 5]]]])
    >>> confusion, pairs, frames = stq_batch_statistics(preds, target, torch.tensor([0]), 1, spec)
    >>> result = stq_from_statistics(confusion, pairs, spec)
    >>> round(result.aq, 4), round(result.iou, 4)
    (0.5, 1.0)
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor

#: the reference's guard against division by zero (keeps "no tubes" at AQ = 0).
EPSILON = 1e-15

#: dtype whose one element holds the two channels (semantic, instance) of one pixel.
_PACKED_PIXEL_DTYPE: dict[torch.dtype, torch.dtype] = {
    torch.uint8: torch.int16,
    torch.int8: torch.int16,
    torch.int16: torch.int32,
    torch.uint16: torch.int32,
    torch.int32: torch.int64,
}


class STQInputError(ValueError):
    """Invalid label values in ``preds`` or ``target``; ``which`` says which of the two."""

    def __init__(self, which: str, message: str) -> None:
        super().__init__(f"{which}: {message}")
        self.which = which


#: largest semantic id range with pair lookup tables (side**2 entries).
_MAX_PAIR_TABLE_SIDE = 1024


@dataclass(frozen=True)
class STQLabelSpace:
    """The label space STQ is evaluated in.

    Attributes:
        num_classes: number of semantic classes (void excluded).
        things: ids of the classes that have instances (tracked).
        ignore_label: the void label.
        label_divisor: panoptic id = semantic * label_divisor + instance; instance ids of
            thing pixels must be below it. It only names tubes: any value larger than the
            largest instance id gives the same numbers.
    """

    num_classes: int
    things: tuple[int, ...]
    ignore_label: int = 255
    label_divisor: int = 65536

    def __post_init__(self) -> None:
        if self.num_classes < 1:
            raise ValueError(f"num_classes must be positive, got {self.num_classes}")
        things = tuple(int(t) for t in self.things)
        object.__setattr__(self, "things", things)
        if len(set(things)) != len(things) or any(not 0 <= t < self.num_classes for t in things):
            raise ValueError(
                f"things must be distinct class ids in [0, {self.num_classes}), got {list(things)}"
            )
        if self.ignore_label < 0:
            raise ValueError(f"ignore_label must be non-negative, got {self.ignore_label}")
        if self.ignore_label in things:
            raise ValueError(f"the ignore label {self.ignore_label} cannot be a thing class")
        if self.label_divisor < 1:
            raise ValueError(f"label_divisor must be positive, got {self.label_divisor}")
        if (max(self.num_classes, self.ignore_label) + 1) * self.label_divisor >= 2**62:
            raise ValueError(f"label_divisor {self.label_divisor} is too large for 64-bit panoptic ids")

    @property
    def confusion_size(self) -> int:
        """Side of the confusion matrix: the classes, plus a void index if the ignore label is no class."""
        return self.num_classes + 1 if self.ignore_label >= self.num_classes else self.num_classes

    @property
    def void_index(self) -> int:
        """Index of the void row/column of the confusion matrix."""
        return self.num_classes if self.ignore_label >= self.num_classes else self.ignore_label

    @property
    def table_size(self) -> int:
        """Semantic ids index lookup tables of this size (classes and the ignore label)."""
        return max(self.num_classes, self.ignore_label + 1)

    @functools.cached_property
    def class_table(self) -> np.ndarray:
        """Semantic id -> confusion index; -1 for ids that are neither a class nor the ignore label."""
        table = np.full(self.table_size, -1, dtype=np.int64)
        table[: self.num_classes] = np.arange(self.num_classes)
        table[self.ignore_label] = self.void_index
        return table

    @functools.cached_property
    def thing_rank(self) -> np.ndarray:
        """Semantic id -> index in ``things``; -1 for stuff, void and invalid ids."""
        table = np.full(self.table_size, -1, dtype=np.int64)
        table[list(self.things)] = np.arange(len(self.things))
        return table

    @functools.cached_property
    def pair_tables(self) -> tuple[np.ndarray, np.ndarray] | None:
        """Tables over ``gt_semantic * table_size + pred_semantic`` (None if that is too large).

        The first gives the flat confusion index ``gt_class * C + pred_class`` (-1 when either
        id is invalid); the second flags (uint8) bit 1 = ground truth is a thing, bit 2 =
        prediction is a thing. One gather each replaces a dozen operations per run.
        """
        size = self.table_size
        if size > _MAX_PAIR_TABLE_SIDE:
            return None
        gt_class, pred_class = self.class_table[:, None], self.class_table[None, :]
        confusion = np.where(
            (gt_class >= 0) & (pred_class >= 0), gt_class * self.confusion_size + pred_class, -1
        )
        gt_thing, pred_thing = self.thing_rank[:, None] >= 0, self.thing_rank[None, :] >= 0
        flags = (gt_thing.astype(np.uint8) | (pred_thing.astype(np.uint8) << 1)).astype(np.uint8)
        return confusion.reshape(-1), np.broadcast_to(flags, (size, size)).reshape(-1).copy()


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
    """

    stq: float
    aq: float
    iou: float
    class_iou: np.ndarray
    sequence_stq: np.ndarray
    sequence_aq: np.ndarray
    sequence_iou: np.ndarray


#: run the pass over the pixels of CPU tensors through NumPy (faster single-threaded than torch);
#: tests switch it off to exercise the torch path that GPUs take.
USE_NUMPY_ON_CPU = True

#: pixels compared per step on the CPU: bounds the temporary arrays of large batches (a whole
#: 1080p frame is one step; smaller steps measured no faster).
CPU_CHUNK_PIXELS = 1 << 22


@dataclass(frozen=True)
class Runs:
    """Runs of pixels whose ground truth and prediction equal their left neighbour's.

    Attributes:
        starts: int64 flat pixel index (over B * H * W) where each run starts, ascending.
        gt: (N, 2) ground-truth (semantic, instance) of each run, in the input's dtype.
        pred: (N, 2) predicted (semantic, instance) of each run, in the input's dtype.
    """

    starts: np.ndarray
    gt: np.ndarray
    pred: np.ndarray


def _pixel_words(labels: Tensor) -> list[Tensor]:
    """1-D views such that two pixels have equal labels iff all their words are equal."""
    packed = _PACKED_PIXEL_DTYPE.get(labels.dtype)
    if packed is not None:
        return [labels.contiguous().view(packed).reshape(-1)]
    # 64-bit labels have no 128-bit integer to pack into: compare the channels separately.
    return [labels[..., 0].reshape(-1), labels[..., 1].reshape(-1)]


def find_runs(target: Tensor, preds: Tensor) -> Runs:
    """Run-length encode a batch of (ground truth, prediction) label maps along the flat pixels.

    A run continues while both (semantic, instance) pairs equal those of the left neighbour;
    every batch item starts a new run. This is the only pass over all pixels. On the CPU it
    runs in chunks through NumPy views of the tensors (zero copy); on other devices in torch,
    and only the runs come back to the host.

    Args:
        target: (B, H, W, 2) integer labels.
        preds: (B, H, W, 2) integer labels, same shape and device.

    Returns:
        The runs, as int64 host arrays.
    """
    _, height, width, _ = target.shape
    item_size = height * width
    gt_words, pred_words = _pixel_words(target), _pixel_words(preds)
    if target.device.type == "cpu" and USE_NUMPY_ON_CPU:
        return _find_runs_numpy(
            [w.numpy() for w in gt_words],
            [w.numpy() for w in pred_words],
            target.reshape(-1, 2).numpy(),
            preds.reshape(-1, 2).numpy(),
            item_size,
        )
    words = gt_words + pred_words
    change = words[0][1:] != words[0][:-1]
    for word in words[1:]:
        change |= word[1:] != word[:-1]
    change[item_size - 1 :: item_size] = True
    zero = torch.zeros(1, dtype=torch.int64, device=target.device)
    starts = torch.cat([zero, torch.nonzero(change)[:, 0] + 1])
    gt = _gather_pairs_torch(gt_words, target, starts)
    pred = _gather_pairs_torch(pred_words, preds, starts)
    return Runs(starts.cpu().numpy(), gt, pred)


def _gather_pairs_torch(words: list[Tensor], labels: Tensor, index: Tensor) -> np.ndarray:
    """(N, 2) (semantic, instance) at ``index`` as a host array.

    Gathers the packed words where there are some: GPU kernels do not cover every small
    integer dtype (uint16).
    """
    if len(words) == 1:
        packed = words[0].index_select(0, index).cpu().numpy()
        return packed.view(torch.empty(0, dtype=labels.dtype).numpy().dtype).reshape(-1, 2)
    return labels.reshape(-1, 2).index_select(0, index).cpu().numpy()


def _find_runs_numpy(
    gt_words: list[np.ndarray],
    pred_words: list[np.ndarray],
    gt: np.ndarray,
    pred: np.ndarray,
    item_size: int,
) -> Runs:
    words = gt_words + pred_words
    total = words[0].size
    parts: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []
    for begin in range(0, total, CPU_CHUNK_PIXELS):
        end = min(begin + CPU_CHUNK_PIXELS, total)
        first = max(begin, 1)  # pixel 0 always starts a run; compare pixels first .. end - 1
        change = np.not_equal(words[0][first:end], words[0][first - 1 : end - 1])
        for array in words[1:]:
            change |= np.not_equal(array[first:end], array[first - 1 : end - 1])
        boundary = -(-first // item_size) * item_size  # first item start >= first
        change[boundary - first : end - first : item_size] = True
        starts = np.flatnonzero(change)
        starts += first
        if begin == 0:
            starts = np.concatenate([np.zeros(1, dtype=starts.dtype), starts])
        parts.append((starts, _gather_pairs(gt_words, gt, starts), _gather_pairs(pred_words, pred, starts)))
    if len(parts) == 1:
        return Runs(*parts[0])
    return Runs(*(np.concatenate([part[i] for part in parts]) for i in range(3)))


def _gather_pairs(words: list[np.ndarray], pairs: np.ndarray, index: np.ndarray) -> np.ndarray:
    """(N, 2) (semantic, instance) at ``index``: one gather of the packed words where there are some."""
    if len(words) == 1:
        return np.take(words[0], index).view(pairs.dtype).reshape(-1, 2)
    # one fancy index per channel view (ndarray.take would copy the strided view first)
    return np.stack([pairs[:, 0][index], pairs[:, 1][index]], axis=1)


def _check_input(preds: Tensor, target: Tensor) -> None:
    if preds.shape != target.shape:
        raise ValueError(f"preds {tuple(preds.shape)} and target {tuple(target.shape)} must have one shape")
    if preds.ndim != 4 or preds.shape[-1] != 2:
        raise ValueError(
            f"preds and target must be (B, H, W, 2) (semantic, instance), got {tuple(preds.shape)}"
        )
    for name, tensor in (("preds", preds), ("target", target)):
        if tensor.dtype.is_floating_point or tensor.dtype.is_complex or tensor.dtype == torch.bool:
            raise ValueError(f"{name} must hold integer labels, got {tensor.dtype}")
    if preds.device != target.device:
        raise ValueError(f"preds ({preds.device}) and target ({target.device}) must be on one device")


def stq_batch_statistics(
    preds: Tensor,
    target: Tensor,
    item_slots: Tensor | np.ndarray | list[int],
    num_slots: int,
    space: STQLabelSpace,
    validate: bool = True,
) -> tuple[Tensor, Tensor, Tensor]:
    """Accumulate the STQ statistics of a batch of frames, grouped by sequence slot.

    Args:
        preds: (B, H, W, 2) predicted (semantic, instance) per pixel, integer dtype.
        target: (B, H, W, 2) ground truth, same shape and device.
        item_slots: (B,) ints in ``[0, num_slots)``: the sequence slot of each item. Items
            of one slot are frames of one sequence.
        num_slots: number of slots.
        space: the label space.
        validate: check that instance ids of thing pixels lie in ``[0, label_divisor)``
            (ground truth: ``[1, label_divisor)``). Semantic ids are always checked (classes
            or the ignore label): they index lookup tables.

    Returns:
        On the device of the inputs: ``confusion``, (num_slots, C, C) int64 semantic
        confusion, rows ground truth; ``pairs``, (N, 4) int64 rows
        ``(slot, gt_id, pred_id, pixels)`` with distinct ``(slot, gt_id, pred_id)``, where
        ``gt_id`` is the panoptic id of a ground-truth tube or -1 (pixels of a predicted
        segment outside every tube) and ``pred_id`` that of a predicted segment or -1;
        ``frames``, (num_slots,) int64 number of items per slot.

    Raises:
        STQInputError: on invalid label values (``which`` is ``"preds"`` or ``"target"``).
        ValueError: on shapes, dtypes or devices that do not fit.
    """
    confusion, pairs, frames = batch_statistics_arrays(preds, target, item_slots, num_slots, space, validate)

    def to_device(array: np.ndarray) -> Tensor:
        return torch.from_numpy(np.ascontiguousarray(array, dtype=np.int64)).to(target.device)

    return to_device(confusion), to_device(pairs), to_device(frames)


def batch_statistics_arrays(
    preds: Tensor,
    target: Tensor,
    item_slots: Tensor | np.ndarray | list[int],
    num_slots: int,
    space: STQLabelSpace,
    validate: bool = True,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """:func:`stq_batch_statistics` returning int64 host (NumPy) arrays."""
    _check_input(preds, target)
    batch, height, width, _ = target.shape
    item_size = height * width
    size = space.confusion_size
    slots_of_items = np.asarray(
        item_slots.detach().cpu().numpy() if isinstance(item_slots, Tensor) else item_slots, dtype=np.int64
    ).reshape(-1)
    if slots_of_items.size != batch:
        raise ValueError(f"got {slots_of_items.size} sequence slots for a batch of {batch}")
    if slots_of_items.size and (slots_of_items.min() < 0 or slots_of_items.max() >= num_slots):
        raise ValueError(f"sequence slots must lie in [0, {num_slots})")
    frames = np.bincount(slots_of_items, minlength=num_slots)
    confusion = np.zeros(num_slots * size * size, dtype=np.int64)
    pairs = np.zeros((0, 4), dtype=np.int64)
    if batch and item_size:
        runs = find_runs(target, preds)
        confusion, pairs = _run_statistics(
            runs, batch * item_size, item_size, slots_of_items, num_slots, space, validate
        )
    return confusion.reshape(num_slots, size, size), pairs, frames


#: largest id range grouped with bincount lookup tables; larger ones are sorted (np.unique).
_MAX_TABLE = 1 << 20


def _raise_semantic(values: np.ndarray, space: STQLabelSpace, which: str) -> None:
    values = values.astype(np.int64)
    bad = values[(values < 0) | (values >= space.table_size)]
    if bad.size == 0:
        bad = values[space.class_table[values] < 0]
    if bad.size:
        raise STQInputError(
            which,
            f"semantic ids must lie in [0, {space.num_classes}) or be the ignore label {space.ignore_label}; "
            f"found {np.unique(bad)[:5].tolist()}",
        )


def _check_instances(instances: np.ndarray, low: int, space: STQLabelSpace, which: str) -> None:
    if instances.size and (instances.min() < low or instances.max() >= space.label_divisor):
        bad = instances[(instances < low) | (instances >= space.label_divisor)]
        raise STQInputError(
            which,
            f"instance ids of thing pixels must lie in [{low}, {space.label_divisor}); "
            f"found {np.unique(bad)[:5].tolist()}",
        )


def _compact(codes: np.ndarray, code_range: int) -> tuple[np.ndarray, np.ndarray]:
    """Distinct values of ``codes`` (sorted) and each code's index among them (sort-free if small)."""
    if code_range <= _MAX_TABLE:
        values = np.flatnonzero(np.bincount(codes, minlength=code_range))
        table = np.zeros(code_range, dtype=np.int64)
        table[values] = np.arange(values.size)
        return values, table[codes]
    values, inverse = np.unique(codes, return_inverse=True)
    return values, inverse.reshape(-1)


def _semantic_lookups(runs: Runs, space: STQLabelSpace) -> tuple[np.ndarray, np.ndarray]:
    """Flat confusion index (-1 if invalid) and thing flags (bit 1 gt, bit 2 prediction) per run."""
    gt_semantic, pred_semantic = runs.gt[:, 0], runs.pred[:, 0]
    size = space.table_size
    for values, which in ((gt_semantic, "target"), (pred_semantic, "preds")):
        # Out-of-range ids would index the tables out of bounds (or wrap around if negative).
        if values.size and (values.min() < 0 or values.max() >= size):
            _raise_semantic(values, space, which)
    tables = space.pair_tables
    if tables is not None:
        code = np.multiply(gt_semantic, size, dtype=np.int64)
        code += pred_semantic
        return tables[0][code], tables[1][code]
    gt_class, pred_class = space.class_table[gt_semantic], space.class_table[pred_semantic]
    index = np.where((gt_class >= 0) & (pred_class >= 0), gt_class * space.confusion_size + pred_class, -1)
    flags = (space.thing_rank[gt_semantic] >= 0).astype(np.uint8)
    flags |= (space.thing_rank[pred_semantic] >= 0).astype(np.uint8) << 1
    return index, flags


def _run_statistics(
    runs: Runs,
    total: int,
    item_size: int,
    slots_of_items: np.ndarray,
    num_slots: int,
    space: STQLabelSpace,
    validate: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """Confusion counts and (slot, gt_id, pred_id, pixels) rows from the runs of a batch.

    All work is on runs (a few percent of the pixels) and, past the confusion matrix, on the
    runs that touch a thing: lookup tables and bincounts, no sorting unless ids span more than
    :data:`_MAX_TABLE` values.
    """
    size, divisor = space.confusion_size, space.label_divisor
    lengths = np.diff(runs.starts, append=np.int64(total))
    confusion_index, flags = _semantic_lookups(runs, space)
    if confusion_index.size and confusion_index.min() < 0:  # neither a class nor the ignore label
        _raise_semantic(runs.gt[:, 0], space, "target")
        _raise_semantic(runs.pred[:, 0], space, "preds")
    slot = None
    if num_slots > 1:
        slot = slots_of_items[runs.starts // item_size]
        confusion_index = confusion_index + slot * (size * size)
    # Float weights are exact: counts stay far below 2**53.
    confusion = np.bincount(confusion_index, weights=lengths, minlength=num_slots * size * size).astype(
        np.int64
    )

    # Only runs where either side is a thing go on.
    touching = np.flatnonzero(flags)
    flags = flags[touching]
    gt_semantic, gt_instance = runs.gt[touching, 0], runs.gt[touching, 1].astype(np.int64)
    pred_semantic, pred_instance = runs.pred[touching, 0], runs.pred[touching, 1].astype(np.int64)
    gt_thing, pred_thing = (flags & 1).astype(bool), (flags & 2).astype(bool)
    crowd = gt_thing & (gt_instance == 0)
    in_tube = gt_thing & ~crowd
    in_segment = pred_thing & ~crowd
    if validate:
        _check_instances(gt_instance[in_tube], 1, space, "target")
        _check_instances(pred_instance[in_segment], 0, space, "preds")
    keep = np.flatnonzero(in_tube | in_segment)
    tube, segment = in_tube[keep], in_segment[keep]
    # Codes: 0 = none, else 1 + thing rank * divisor + instance (compact, unlike panoptic ids).
    gt_code = np.where(tube, space.thing_rank[gt_semantic[keep]] * divisor + gt_instance[keep] + 1, 0)
    pred_code = np.where(
        segment, space.thing_rank[pred_semantic[keep]] * divisor + pred_instance[keep] + 1, 0
    )
    code_range = len(space.things) * divisor + 1
    gt_values, gt_index = _compact(gt_code, code_range)
    pred_values, pred_index = _compact(pred_code, code_range)
    key = gt_index * pred_values.size + pred_index
    if slot is not None:
        key += slot[touching[keep]] * (gt_values.size * pred_values.size)
    key_values, key_index = _compact(key, num_slots * gt_values.size * pred_values.size)
    counts = np.bincount(key_index, weights=lengths[touching[keep]], minlength=key_values.size).astype(
        np.int64
    )

    things = np.asarray(space.things, dtype=np.int64)

    def panoptic(codes: np.ndarray) -> np.ndarray:
        rank, instance = np.divmod(np.maximum(codes - 1, 0), divisor)
        return (
            np.where(codes > 0, things[rank] * divisor + instance, -1)
            if things.size
            else -np.ones_like(codes)
        )

    pred_of_key = pred_values[key_values % pred_values.size] if pred_values.size else key_values
    rest = key_values // max(pred_values.size, 1)
    gt_of_key = gt_values[rest % gt_values.size] if gt_values.size else rest
    slot_of_key = rest // max(gt_values.size, 1)
    pairs = np.stack([slot_of_key, panoptic(gt_of_key), panoptic(pred_of_key), counts], axis=1)
    return confusion, pairs


def _group_sum(keys: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Distinct rows of ``keys`` (N, K), the sum of ``values`` per row, and each row's group."""
    if keys.shape[0] == 0:
        return keys, values[:0], np.zeros(0, dtype=np.int64)
    unique, inverse = np.unique(keys, axis=0, return_inverse=True)
    inverse = inverse.reshape(-1)
    sums = np.zeros(unique.shape[0], dtype=values.dtype)
    np.add.at(sums, inverse, values)
    return unique, sums, inverse


def _mean_iou(confusion: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Mean IoU over classes with a positive union and the IoU per class, over the last two axes."""
    true_positives = np.diagonal(confusion, axis1=-2, axis2=-1).astype(np.float64)
    unions = confusion.sum(axis=-1) + confusion.sum(axis=-2) - true_positives
    with np.errstate(invalid="ignore", divide="ignore"):
        ious = true_positives / np.maximum(unions, EPSILON)
        mean = ious.sum(axis=-1) / np.count_nonzero(unions, axis=-1)
        per_class = np.where(unions > 0, true_positives / np.where(unions > 0, unions, 1.0), np.nan)
    return mean, per_class


def stq_from_statistics(confusion: Tensor, pairs: Tensor, space: STQLabelSpace) -> STQResult:
    """Compute STQ, AQ and IoU from accumulated statistics.

    Args:
        confusion: (S, C, C) int64 confusion per sequence (rows ground truth).
        pairs: (N, 4) int64 rows ``(sequence, gt_id, pred_id, pixels)`` with ``sequence`` in
            ``[0, S)``; rows may repeat (they are summed).
        space: the label space.

    Returns:
        The overall and per-sequence numbers.
    """
    confusion_np = confusion.detach().cpu().numpy().astype(np.int64, copy=True)
    num_sequences = confusion_np.shape[0]
    # The reference removes the ground-truth void row only; the void column stays.
    confusion_np[:, space.void_index, :] = 0
    sequence_iou, _ = _mean_iou(confusion_np.astype(np.float64))
    total_iou, class_iou = _mean_iou(confusion_np.sum(axis=0).astype(np.float64))

    rows = pairs.detach().cpu().numpy().astype(np.int64).reshape(-1, 4)
    keys, pixels, _ = _group_sum(rows[:, :3], rows[:, 3])
    pixels = pixels.astype(np.float64)
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
    )
