"""STQ's inputs: the label space, the three input layouts, and the checks of label values.

Shared by the NumPy core (:mod:`hvps_lightning.metrics.functional_stq`) and the device path
(:mod:`hvps_lightning.metrics.functional_stq_torch`), so that neither imports the other's
internals: both read their inputs through :func:`as_label_maps` and report bad values with the
same :class:`STQInputError` messages.
"""

from __future__ import annotations

import functools
import sys
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np


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
            largest instance id gives the same numbers (packed input must use this value).
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

    @property
    def code_range(self) -> int:
        """Range of the tube/segment codes ``1 + thing rank * label_divisor + instance`` (0 = none)."""
        return len(self.things) * self.label_divisor + 1

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
    def thing_code_offset(self) -> np.ndarray:
        """Semantic id -> ``1 + thing rank * label_divisor`` (plus the instance: a code); 0 for stuff."""
        rank = self.thing_rank
        return np.where(rank >= 0, 1 + rank * self.label_divisor, 0)

    @functools.cached_property
    def pair_info(self) -> np.ndarray | None:
        """Table over ``gt_semantic * table_size + pred_semantic`` (None if that is too large).

        Each entry is ``confusion_index * 4 + flags`` with ``confusion_index = gt_class * C +
        pred_class`` and flags bit 1 = ground truth is a thing, bit 2 = prediction is a thing;
        -1 where either id is neither a class nor the ignore label. One gather per run replaces
        a dozen operations.
        """
        size = self.table_size
        if size > _MAX_PAIR_TABLE_SIDE:
            return None
        return self._pair_info(np.arange(size)[:, None], np.arange(size)[None, :]).reshape(-1)

    def _pair_info(self, gt_semantic: np.ndarray, pred_semantic: np.ndarray) -> np.ndarray:
        gt_class, pred_class = self.class_table[gt_semantic], self.class_table[pred_semantic]
        flags = (self.thing_rank[gt_semantic] >= 0).astype(np.int64)
        flags = flags | ((self.thing_rank[pred_semantic] >= 0).astype(np.int64) << 1)
        return np.where(
            (gt_class >= 0) & (pred_class >= 0), (gt_class * self.confusion_size + pred_class) * 4 + flags, -1
        )

    def run_info(self, gt_semantic: np.ndarray, pred_semantic: np.ndarray) -> np.ndarray:
        """:attr:`pair_info` of each (ground truth, prediction) semantic pair (ids in ``[0, table_size)``)."""
        table = self.pair_info
        if table is None:
            return self._pair_info(gt_semantic, pred_semantic)
        code = np.multiply(gt_semantic, self.table_size, dtype=np.int64, casting="unsafe")
        code += pred_semantic
        return table[code]


# ---------------------------------------------------------------------------------------------
# Inputs
# ---------------------------------------------------------------------------------------------
Layout = Literal["pairs", "split", "packed"]

_LAYOUTS_TEXT = (
    "(B, H, W, 2) (semantic, instance) pairs, a (semantic, instance) tuple of two (B, H, W) "
    "arrays, or (B, H, W) packed panoptic ids semantic * label_divisor + instance"
)


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")  # a tensor exists only once torch is imported
    return torch is not None and isinstance(value, torch.Tensor)


@dataclass(frozen=True)
class LabelMaps:
    """One side (``preds`` or ``target``) of a batch, checked and in one of the three layouts.

    Attributes:
        layout: ``"pairs"`` (one (B, H, W, 2) array), ``"split"`` (semantic and instance
            (B, H, W) arrays) or ``"packed"`` (one (B, H, W) array of panoptic ids).
        arrays: the arrays of the layout (NumPy arrays or torch tensors, all of one kind).
        shape: (B, H, W).
        label_divisor: the divisor of packed ids.
    """

    layout: Layout
    arrays: tuple[Any, ...]
    shape: tuple[int, int, int]
    label_divisor: int

    @property
    def is_tensor(self) -> bool:
        """True for torch tensors."""
        return _is_tensor(self.arrays[0])

    @property
    def device(self) -> Any:
        """The torch device of tensors; None for NumPy arrays."""
        return self.arrays[0].device if self.is_tensor else None


def _check_integer(array: Any, which: str) -> None:
    if _is_tensor(array):
        dtype = array.dtype
        if dtype.is_floating_point or dtype.is_complex or str(dtype) == "torch.bool":
            raise ValueError(f"{which} must hold integer labels, got {dtype}")
        return
    if not isinstance(array, np.ndarray):
        raise ValueError(f"{which} must be a NumPy array or a torch tensor, got {type(array).__name__}")
    if array.dtype == np.bool_ or not np.issubdtype(array.dtype, np.integer):
        raise ValueError(f"{which} must hold integer labels, got {array.dtype}")


def as_label_maps(value: Any, which: str, label_divisor: int) -> LabelMaps:
    """Check one side of a batch and name its layout (see the module docstring).

    Args:
        value: the label maps, in one of the three layouts.
        which: ``"preds"`` or ``"target"`` (for messages).
        label_divisor: the divisor of packed panoptic ids.

    Raises:
        ValueError: one line saying what was expected and what was found.
    """
    if isinstance(value, LabelMaps):
        return value
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{which}: expected {_LAYOUTS_TEXT}; got a sequence of {len(value)} items")
        semantic, instance = value
        _check_integer(semantic, f"{which} semantic")
        _check_integer(instance, f"{which} instance")
        if _is_tensor(semantic) != _is_tensor(instance):
            raise ValueError(f"{which}: semantic and instance must both be tensors or both NumPy arrays")
        if tuple(semantic.shape) != tuple(instance.shape) or len(semantic.shape) != 3:
            raise ValueError(
                f"{which}: semantic {tuple(semantic.shape)} and instance {tuple(instance.shape)} "
                "must both be (B, H, W)"
            )
        if _is_tensor(semantic) and semantic.device != instance.device:
            raise ValueError(
                f"{which}: semantic ({semantic.device}) and instance ({instance.device}) "
                "must be on one device"
            )
        return LabelMaps("split", (semantic, instance), tuple(semantic.shape), label_divisor)
    _check_integer(value, which)
    shape = tuple(value.shape)
    if len(shape) == 4 and shape[-1] == 2:
        return LabelMaps("pairs", (value,), shape[:3], label_divisor)
    if len(shape) == 3:
        return LabelMaps("packed", (value,), shape, label_divisor)
    raise ValueError(f"{which}: expected {_LAYOUTS_TEXT}; got shape {shape}")


def _check_pair(preds: LabelMaps, target: LabelMaps) -> None:
    if preds.shape != target.shape:
        raise ValueError(f"preds {preds.shape} and target {target.shape} must have one shape (B, H, W)")
    if preds.is_tensor != target.is_tensor:
        raise ValueError("preds and target must both be torch tensors or both NumPy arrays")
    if preds.device != target.device:
        raise ValueError(f"preds ({preds.device}) and target ({target.device}) must be on one device")


# ---------------------------------------------------------------------------------------------
# Batch statistics
# ---------------------------------------------------------------------------------------------


def split_panoptic(panoptic: np.ndarray, label_divisor: int) -> tuple[np.ndarray, np.ndarray]:
    """``(panoptic // label_divisor, panoptic % label_divisor)`` (floor: negative ids, negative classes)."""
    if np.iinfo(panoptic.dtype).max < label_divisor:  # the divisor does not fit the dtype
        panoptic = panoptic.astype(np.int64)
    if label_divisor & (label_divisor - 1) == 0:  # a power of two: shift and mask
        shift = label_divisor.bit_length() - 1
        return panoptic >> shift, panoptic & (label_divisor - 1)
    return np.divmod(panoptic, label_divisor)


def semantic_error(values: np.ndarray, space: STQLabelSpace, which: str) -> STQInputError | None:
    """The error for semantic ids that are neither a class nor the ignore label, or None."""
    if values.size == 0:
        return None
    if np.issubdtype(values.dtype, np.unsignedinteger):
        outside = values >= space.table_size
    else:
        outside = (values < 0) | (values >= space.table_size)
    bad = values[outside]
    if bad.size == 0:
        bad = values[space.class_table[values.astype(np.int64)] < 0]
    if bad.size == 0:
        return None
    return STQInputError(
        which,
        f"semantic ids must lie in [0, {space.num_classes}) or be the ignore label {space.ignore_label}; "
        f"found {np.unique(bad)[:5].tolist()}",
    )


def instance_error(instances: np.ndarray, low: int, space: STQLabelSpace, which: str) -> STQInputError | None:
    """The error for instance ids of thing pixels outside ``[low, label_divisor)``, or None."""
    if instances.size == 0:
        return None
    info = np.iinfo(instances.dtype)
    if info.min >= low and info.max < space.label_divisor:
        return None  # the dtype cannot hold a bad value
    if instances.min() >= low and instances.max() < space.label_divisor:
        return None
    bad = instances[(instances < low) | (instances >= space.label_divisor)]
    return STQInputError(
        which,
        f"instance ids of thing pixels must lie in [{low}, {space.label_divisor}); "
        f"found {np.unique(bad)[:5].tolist()}",
    )


#: largest id range grouped with bincount lookup tables; larger ones are sorted (np.unique).
