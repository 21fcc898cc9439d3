"""STQ statistics of tensors on their own device (CUDA or any other): the torch twin of the NumPy path.

Same algorithm and results as :mod:`hvps_lightning.metrics.functional_stq` (runs along the
flattened pixels, then histograms over runs), written in device-agnostic torch so that frames
never leave the device: the pixel pass, the run starts and the per-run statistics all run
there, and the only value read back per update is one small tensor (the number of runs and
the counts of invalid labels), read in one synchronisation before the run starts are listed
with ``torch.nonzero_static``. Label validity is checked per pixel for that reason (cheap on
an accelerator), before any lookup table is indexed. The (tube, segment) rows are left
ungrouped (one per run, 0 pixels where the run touches no thing): grouping them needs their
number on the host, so the metric groups them when it coalesces its state.

Tests run this path on CPU tensors (``functional_stq.USE_NUMPY_ON_CPU = False``); CPU data
normally takes the NumPy path, which is faster single-threaded.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from hvps_lightning.metrics.stq_inputs import (
    LabelMaps,
    STQInputError,
    STQLabelSpace,
    instance_error,
    semantic_error,
)

#: element size -> the integer that holds a pixel's two channels in one word.
_PAIR_WORD = {1: torch.int16, 2: torch.int32, 4: torch.int64}
#: unsigned dtypes -> the signed dtype of the same size (comparisons and gathers of the wide
#: unsigned types are not implemented on every device) and the mask that restores the value.
_UNSIGNED = {
    torch.uint16: (torch.int16, 0xFFFF),
    torch.uint32: (torch.int32, 0xFFFFFFFF),
    torch.uint64: (torch.int64, None),  # ids >= 2**63 read as negative: invalid either way
}


def to_device(array: np.ndarray, device: torch.device) -> Tensor:
    """A host array on ``device`` without waiting for the device (pinned, non-blocking on CUDA)."""
    tensor = torch.from_numpy(np.ascontiguousarray(array))
    if device.type == "cpu":
        return tensor
    if device.type == "cuda":
        return tensor.pin_memory().to(device, non_blocking=True)
    return tensor.to(device)


_TABLES: dict[tuple[STQLabelSpace, str], dict[str, Tensor]] = {}


def _tables(space: STQLabelSpace, device: torch.device) -> dict[str, Tensor]:
    """The label space's lookup tables on ``device`` (copied once per device)."""
    key = (space, str(device))
    if key not in _TABLES:
        valid = np.zeros(space.table_size + 2, dtype=bool)  # index = clamp(id, -1, size) + 1
        valid[1:-1] = space.class_table >= 0
        thing = np.zeros(space.table_size + 2, dtype=bool)
        thing[1:-1] = space.thing_rank >= 0
        tables = {
            "valid": valid,
            "thing": thing,
            "class": space.class_table,
            "thing_rank": space.thing_rank,
        }
        if space.pair_info is not None:
            tables["pair_info"] = space.pair_info
        _TABLES[key] = {name: to_device(np.asarray(t), device) for name, t in tables.items()}
    return _TABLES[key]


def _signed_view(tensor: Tensor) -> Tensor:
    signed = _UNSIGNED.get(tensor.dtype)
    return tensor.view(signed[0]) if signed is not None else tensor


def _as_int64(tensor: Tensor) -> Tensor:
    signed = _UNSIGNED.get(tensor.dtype)
    if signed is None:
        return tensor.to(torch.int64)
    wide = tensor.view(signed[0]).to(torch.int64)
    return wide & signed[1] if signed[1] is not None else wide


def _changes(maps: LabelMaps) -> Tensor:
    """(B*H*W - 1,) bool: pixel ``j + 1`` differs from pixel ``j``."""
    if maps.layout == "pairs":
        labels = maps.arrays[0].contiguous()
        word = _PAIR_WORD.get(labels.element_size())
        if word is not None:
            words = labels.view(word).reshape(-1)
            return words[1:] != words[:-1]
        flat = _signed_view(labels).reshape(-1)
        # 64-bit pairs: compare each element with the one two places back; a pixel's two flags
        # read as one int16 are nonzero iff either channel differs
        return (flat[2:] != flat[:-2]).view(torch.int16) != 0
    change = None
    for array in maps.arrays:
        flat = _signed_view(array.contiguous()).reshape(-1)
        differs = flat[1:] != flat[:-1]
        change = differs if change is None else change | differs
    assert change is not None
    return change


def _pixel_labels(maps: LabelMaps) -> tuple[Tensor, Tensor]:
    """(semantic, instance) int64 per pixel, flat."""
    if maps.layout == "pairs":
        labels = maps.arrays[0]
        return _as_int64(labels[..., 0]).reshape(-1), _as_int64(labels[..., 1]).reshape(-1)
    if maps.layout == "split":
        semantic, instance = maps.arrays
        return _as_int64(semantic).reshape(-1), _as_int64(instance).reshape(-1)
    panoptic = _as_int64(maps.arrays[0]).reshape(-1)
    divisor = maps.label_divisor
    if divisor & (divisor - 1) == 0:
        return panoptic >> (divisor.bit_length() - 1), panoptic & (divisor - 1)
    semantic = torch.div(panoptic, divisor, rounding_mode="floor")
    return semantic, panoptic - semantic * divisor


def _nonzero(flags: Tensor, count: int) -> Tensor:
    """Indices of the ``count`` set flags, without a second synchronisation where the device allows."""
    try:
        return torch.nonzero_static(flags, size=count)[:, 0]
    except (NotImplementedError, RuntimeError):  # pragma: no cover - devices without nonzero_static
        return torch.nonzero(flags)[:, 0]


def batch_statistics_torch(
    preds: LabelMaps,
    target: LabelMaps,
    slots_of_items: np.ndarray,
    num_slots: int,
    space: STQLabelSpace,
    validate: bool,
) -> tuple[Tensor, Tensor]:
    """``(confusion, pairs)`` of :func:`.functional_stq.stq_batch_statistics`, on the inputs' device.

    ``pairs`` has one row per run (rows of 0 pixels where the run has neither a tube nor a
    segment); every value stays on the device of the inputs.
    """
    device = target.device
    batch, height, width = target.shape
    item_size, total = height * width, batch * height * width
    size = space.confusion_size
    if total == 0:
        return (
            torch.zeros((num_slots, size, size), dtype=torch.int64, device=device),
            torch.zeros((0, 4), dtype=torch.int64, device=device),
        )
    tables = _tables(space, device)

    change = torch.ones(total, dtype=torch.bool, device=device)
    torch.logical_or(_changes(target), _changes(preds), out=change[1:])
    change[item_size::item_size] = True

    gt_semantic, gt_instance = _pixel_labels(target)
    pred_semantic, pred_instance = _pixel_labels(preds)
    top = space.table_size
    gt_index = gt_semantic.clamp(-1, top) + 1
    pred_index = pred_semantic.clamp(-1, top) + 1
    checks = [change.sum(), (~tables["valid"][gt_index]).sum(), (~tables["valid"][pred_index]).sum()]
    if validate:
        divisor = space.label_divisor
        gt_thing = tables["thing"][gt_index]
        crowd = gt_thing & (gt_instance == 0)
        checks.append((gt_thing & ((gt_instance < 0) | (gt_instance >= divisor))).sum())
        pred_segment = tables["thing"][pred_index] & ~crowd
        checks.append((pred_segment & ((pred_instance < 0) | (pred_instance >= divisor))).sum())
    # The one synchronisation: the number of runs and of invalid labels.
    count, *invalid = torch.stack(checks).tolist()
    if any(invalid):
        raise _input_error(invalid, tables, gt_index, pred_index, target, preds, space)

    starts = _nonzero(change, count)
    lengths = torch.diff(starts, append=starts.new_full((1,), total))
    gt_semantic, gt_instance = gt_semantic[starts], gt_instance[starts]
    pred_semantic, pred_instance = pred_semantic[starts], pred_instance[starts]
    if "pair_info" in tables:
        info = tables["pair_info"][gt_semantic * top + pred_semantic]
    else:
        gt_class, pred_class = tables["class"][gt_semantic], tables["class"][pred_semantic]
        info = (gt_class * size + pred_class) * 4
        info |= (tables["thing_rank"][gt_semantic] >= 0).to(torch.int64)
        info |= (tables["thing_rank"][pred_semantic] >= 0).to(torch.int64) << 1
    confusion_index = info >> 2
    if num_slots > 1:
        run_slots = to_device(slots_of_items, device)[starts // item_size]
        confusion_index = confusion_index + run_slots * (size * size)
    else:
        run_slots = torch.zeros_like(starts)
    confusion = torch.zeros(num_slots * size * size, dtype=torch.int64, device=device)
    confusion.index_add_(0, confusion_index, lengths)

    gt_thing, pred_thing = (info & 1) != 0, (info & 2) != 0
    tube = gt_thing & (gt_instance != 0)
    segment = pred_thing & ~(gt_thing & (gt_instance == 0))
    divisor = space.label_divisor
    none = torch.full_like(starts, -1)
    pairs = torch.stack(
        [
            run_slots,
            torch.where(tube, gt_semantic * divisor + gt_instance, none),
            torch.where(segment, pred_semantic * divisor + pred_instance, none),
            torch.where(tube | segment, lengths, torch.zeros_like(lengths)),
        ],
        dim=1,
    )
    return confusion.reshape(num_slots, size, size), pairs


def _input_error(
    invalid: list[int],
    tables: dict[str, Tensor],
    gt_index: Tensor,
    pred_index: Tensor,
    target: LabelMaps,
    preds: LabelMaps,
    space: STQLabelSpace,
) -> STQInputError:
    """The error the NumPy path raises for the same input (this path may synchronise freely)."""

    def bad_values(values: Tensor, mask: Tensor) -> np.ndarray:
        return torch.unique(values[mask]).cpu().numpy()

    gt_semantic, gt_instance = _pixel_labels(target)
    pred_semantic, pred_instance = _pixel_labels(preds)
    if invalid[0]:
        error = semantic_error(bad_values(gt_semantic, ~tables["valid"][gt_index]), space, "target")
    elif invalid[1]:
        error = semantic_error(bad_values(pred_semantic, ~tables["valid"][pred_index]), space, "preds")
    elif invalid[2]:
        gt_thing = tables["thing"][gt_index]
        error = instance_error(bad_values(gt_instance, gt_thing & (gt_instance != 0)), 1, space, "target")
    else:
        crowd = tables["thing"][gt_index] & (gt_instance == 0)
        segment = tables["thing"][pred_index] & ~crowd
        error = instance_error(bad_values(pred_instance, segment), 0, space, "preds")
    assert error is not None
    return error


def as_tensor(array: Any, device: torch.device) -> Tensor:
    """``array`` (a host array or a tensor) as an int64 tensor on ``device``."""
    if isinstance(array, Tensor):
        return array.to(device=device, dtype=torch.int64)
    return to_device(np.asarray(array, dtype=np.int64), device)
