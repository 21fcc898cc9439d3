"""STQ as a torchmetrics ``Metric`` that reduces correctly across DDP processes.

State design: every state is a list of flat int64 tensors reduced by concatenation, so
``sync`` (all-gather) and ``merge_state`` simply pool records and ``compute`` aggregates
them. That is what makes a sequence split over ranks, or different sequences on different
ranks, give the single-process numbers: nothing is aggregated across sequences before
``compute``, and records of one sequence from several ranks are summed there.

* ``confusion_records``: per (update, sequence) ``[sequence_key, frames, C*C confusion counts]``.
* ``pair_records``: rows ``[sequence_key, gt_id, pred_id, pixels]`` (tube/segment overlaps,
  with -1 for "no tube" / "no segment", see :func:`stq_batch_statistics`).
* ``sequence_records``: self-delimiting ``[sequence_key, kind, n, payload...]`` records that
  map a key back to the sequence id (kind 0: an int, payload its value; kind 1: a str,
  payload its UTF-8 bytes).

Sequence ids may be strings, which cannot be all-gathered; every process therefore derives
the same 63-bit ``sequence_key`` from the id (BLAKE2b of its type and value) without any
communication, and ships the id itself in ``sequence_records`` so that ``compute`` on any
rank can name sequences it never saw. Records are coalesced every ``coalesce_every`` updates
so memory grows with the number of distinct tubes, not with the number of frames.

Example:
    >>> import torch
    >>> metric = STQ(num_classes=2, things=[1], class_names=["road", "person"])
    >>> target = torch.tensor([[[[0, 0], [1, 1], [1, 1], [1, 2]]]])  # (B=1, H=1, W=4, 2)
    >>> preds = torch.tensor([[[[0, 0], [1, 5], [1, 5], [1, 5]]]])
    >>> metric.update(preds, target, ["seq-a"])
    >>> result = metric.compute()
    >>> round(result["aq"], 4), result["sq"], sorted(result["per_sequence"])
    (0.5, 1.0, ['seq-a'])
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torchmetrics import Metric
from torchmetrics.utilities.data import dim_zero_cat
from torchmetrics.utilities.distributed import gather_all_tensors

from hvps_lightning.metrics.functional_stq import (
    SequenceId,
    batch_size_of,
    check_sequence_id,
    format_stq_result,
    segmentation_and_tracking_quality,
    sequence_ids_of_batch,
    sorted_sequence_ids,
    stq_batch_statistics,
    stq_from_statistics,
)
from hvps_lightning.metrics.stq_inputs import STQLabelSpace

__all__ = ["STQ", "format_stq_result", "segmentation_and_tracking_quality", "sequence_key"]

_KIND_INT = 0
_KIND_STR = 1
_KEY_MASK = (1 << 63) - 1
_STATE_NAMES = ("sequence_records", "confusion_records", "pair_records")
#: coalesce the pair records once they hold this many rows (device inputs leave one row per run)
_MAX_PAIR_ROWS = 1 << 21


@functools.lru_cache(maxsize=4096)
def sequence_key(sequence_id: SequenceId) -> int:
    """A 63-bit key of a sequence id, equal in every process (no communication needed).

    ``1`` and ``"1"`` are different sequences, as in the reference implementation.
    """
    kind, text = _kind_and_text(sequence_id)
    digest = hashlib.blake2b(f"{kind}:{text}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & _KEY_MASK


def _kind_and_text(sequence_id: SequenceId) -> tuple[int, str]:
    value = check_sequence_id(sequence_id)
    return (_KIND_INT, str(value)) if isinstance(value, int) else (_KIND_STR, value)


def _sequence_record(sequence_id: SequenceId) -> list[int]:
    kind, _ = _kind_and_text(sequence_id)
    payload = [int(sequence_id)] if kind == _KIND_INT else list(str(sequence_id).encode("utf-8"))
    return [sequence_key(sequence_id), kind, len(payload), *payload]


def _parse_sequence_records(records: np.ndarray) -> dict[int, SequenceId]:
    names: dict[int, SequenceId] = {}
    position = 0
    while position < records.size:
        key, kind, length = (int(v) for v in records[position : position + 3])
        payload = records[position + 3 : position + 3 + length]
        position += 3 + length
        name: SequenceId = (
            int(payload[0]) if kind == _KIND_INT else bytes(payload.astype(np.uint8)).decode("utf-8")
        )
        if names.setdefault(key, name) != name:
            raise RuntimeError(f"sequence ids {names[key]!r} and {name!r} share a key; rename one of them")
    return names


class STQ(Metric):
    """Segmentation and Tracking Quality (STEP): ``sqrt(AQ * IoU)`` per sequence and overall.

    Reproduces the STEP reference implementation (see :mod:`functional_stq` for the exact
    rules, including crowd, void and the void-column quirk).

    Args:
        num_classes: number of semantic classes (void excluded).
        things: ids of the classes that have instances (tracked).
        ignore_label: the void label of ``preds`` and ``target``.
        label_divisor: panoptic id = semantic * label_divisor + instance; instance ids of
            thing pixels must be below it (it does not change the numbers).
        class_names: names of the classes for ``iou_per_class`` (default: ``"0"``, ``"1"``, ...).
        validate_args: check instance ids of thing pixels on every update (semantic ids are
            always checked).
        coalesce_every: merge accumulated records after this many updates (bounds memory).
        kwargs: passed to :class:`torchmetrics.Metric`.

    ``update(preds, target, sequence_ids)``: ``preds`` and ``target`` hold (semantic class,
    instance id) per pixel as (B, H, W, 2) integer tensors, as a ``(semantic, instance)`` tuple
    of two (B, H, W) tensors, or as one (B, H, W) tensor of packed panoptic ids
    ``semantic * label_divisor + instance`` (any integer dtype, any device; NumPy arrays too);
    ``sequence_ids`` is one str or int per item (or one for the whole batch). Frames of a
    sequence may arrive in any order and in any process. CPU inputs are reduced to statistics
    on the host; tensors on an accelerator stay there (one synchronisation per update) and so
    does the state.

    ``compute()`` returns a dict: ``stq``, ``aq``, ``sq`` (the mean IoU), floats;
    ``iou_per_class``: class name -> IoU (NaN where neither ground truth nor prediction has
    the class); ``per_sequence``: sequence id -> ``{"stq", "aq", "sq"}``; ``num_frames``: int.
    Values are identical on every process after the usual torchmetrics sync.
    """

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    sequence_records: list[Tensor]
    confusion_records: list[Tensor]
    pair_records: list[Tensor]

    def __init__(
        self,
        num_classes: int,
        things: Sequence[int],
        ignore_label: int = 255,
        label_divisor: int = 65536,
        class_names: Sequence[str] | None = None,
        validate_args: bool = True,
        coalesce_every: int = 64,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.space = STQLabelSpace(int(num_classes), tuple(things), int(ignore_label), int(label_divisor))
        if class_names is None:
            class_names = [str(i) for i in range(num_classes)]
        if len(class_names) != num_classes:
            raise ValueError(f"got {len(class_names)} class names for {num_classes} classes")
        self.class_names = tuple(str(n) for n in class_names)
        self.validate_args = validate_args
        if coalesce_every < 1:
            raise ValueError(f"coalesce_every must be positive, got {coalesce_every}")
        self.coalesce_every = coalesce_every
        self._known_keys: set[int] = set()
        for name in _STATE_NAMES:
            self.add_state(name, default=[], dist_reduce_fx="cat")

    def update(self, preds: Any, target: Any, sequence_ids: Any) -> None:
        """Add a batch of frames (see the class docstring)."""
        ids = sequence_ids_of_batch(sequence_ids, batch_size_of(preds, target, self.space.label_divisor))
        slot_ids = list(dict.fromkeys(ids))
        slot_of_id = {sequence_id: slot for slot, sequence_id in enumerate(slot_ids)}
        confusion, pairs, frames = stq_batch_statistics(
            preds,
            target,
            [slot_of_id[s] for s in ids],
            len(slot_ids),
            self.space,
            validate=self.validate_args,
        )
        confusion, pairs = torch.as_tensor(confusion), torch.as_tensor(pairs)
        device = confusion.device
        keys = np.array([sequence_key(s) for s in slot_ids], dtype=np.int64)
        new_records = [
            value
            for sequence_id, key in zip(slot_ids, keys.tolist(), strict=True)
            if key not in self._known_keys
            for value in _sequence_record(sequence_id)
        ]
        if new_records:
            self.sequence_records.append(_host_to(np.array(new_records, dtype=np.int64), device))
            self._known_keys.update(keys.tolist())
        keys_and_frames = _host_to(np.stack([keys, frames], axis=1), device)
        rows = torch.cat([keys_and_frames, confusion.reshape(len(slot_ids), -1)], dim=1)
        self.confusion_records.append(rows.reshape(-1))
        if pairs.shape[0]:
            pairs = torch.cat([keys_and_frames[:, 0][pairs[:, 0]][:, None], pairs[:, 1:]], dim=1)
            self.pair_records.append(pairs.reshape(-1))
        pair_rows = sum(int(t.numel()) for t in self.pair_records) // 4
        if (
            len(self.confusion_records) >= self.coalesce_every
            or len(self.pair_records) >= self.coalesce_every
            or pair_rows >= _MAX_PAIR_ROWS
        ):
            self._coalesce()

    def _coalesce(self) -> None:
        """Sum records with equal keys so that memory does not grow with the number of frames."""
        size = self.space.confusion_size
        if self.confusion_records:
            rows = dim_zero_cat(self.confusion_records).reshape(-1, 2 + size * size)
            self.confusion_records = [_sum_rows_by_key(rows, 1).reshape(-1)]
        if self.pair_records:
            rows = _sum_rows_by_key(dim_zero_cat(self.pair_records).reshape(-1, 4), 3)
            self.pair_records = [rows[rows[:, 3] > 0].reshape(-1)]

    def reset(self) -> None:
        """Forget all accumulated frames."""
        super().reset()
        self._known_keys = set()

    def _sync_dist(self, dist_sync_fn: Any = gather_all_tensors, process_group: Any | None = None) -> None:
        # torchmetrics fills an empty list state with a float32 tensor before the all-gather,
        # which would clash with the int64 records of other ranks; give it an int64 one (on the
        # device of the records, which follow the inputs).
        states = [getattr(self, name) for name in _STATE_NAMES]
        device = next((s[0].device for s in states if isinstance(s, list) and s), self.device)
        for state in states:
            if isinstance(state, list) and not state:
                state.append(torch.zeros(0, dtype=torch.int64, device=device))
        super()._sync_dist(dist_sync_fn, process_group)

    def compute(self) -> dict[str, Any]:
        """STQ, AQ, SQ, IoU per class and per-sequence numbers (see the class docstring)."""
        size = self.space.confusion_size
        names = _parse_sequence_records(_flat_records(self.sequence_records))
        confusion_rows = _flat_records(self.confusion_records).reshape(-1, 2 + size * size)
        pair_rows = _flat_records(self.pair_records).reshape(-1, 4)
        order = sorted_sequence_ids(list(names.values()))
        index_of_key = {sequence_key(s): i for i, s in enumerate(order)}
        missing = {int(k) for k in np.unique(np.concatenate([confusion_rows[:, 0], pair_rows[:, 0]]))}
        missing -= set(index_of_key)
        if missing:
            raise RuntimeError(
                f"STQ state holds statistics of {len(missing)} sequence(s) without a sequence record"
            )

        confusion = np.zeros((len(order), size, size), dtype=np.int64)
        if confusion_rows.shape[0]:
            rows_index = np.array([index_of_key[int(k)] for k in confusion_rows[:, 0]], dtype=np.int64)
            np.add.at(confusion, rows_index, confusion_rows[:, 2:].reshape(-1, size, size))
        num_frames = int(confusion_rows[:, 1].sum())
        pairs = pair_rows.copy()
        if pairs.shape[0]:
            keys, inverse = np.unique(pairs[:, 0], return_inverse=True)
            pairs[:, 0] = np.array([index_of_key[int(k)] for k in keys], dtype=np.int64)[inverse.reshape(-1)]
        result = stq_from_statistics(confusion, pairs, self.space)
        return format_stq_result(result, order, self.space, self.class_names, num_frames)


def _host_to(array: np.ndarray, device: torch.device) -> Tensor:
    """A small host array on ``device`` (no wait for an accelerator)."""
    from hvps_lightning.metrics.functional_stq_torch import to_device

    return to_device(array, device)


def _flat_records(state: list[Tensor] | Tensor) -> np.ndarray:
    if isinstance(state, list):
        if not state:
            return np.zeros(0, dtype=np.int64)
        state = dim_zero_cat(state)
    return state.detach().cpu().numpy().astype(np.int64, copy=False).reshape(-1)


def _sum_rows_by_key(rows: Tensor, key_columns: int) -> Tensor:
    """Rows with equal first ``key_columns`` columns summed (the rest are counts)."""
    if rows.shape[0] == 0:
        return rows
    keys, inverse = torch.unique(rows[:, :key_columns], dim=0, return_inverse=True)
    sums = torch.zeros((keys.shape[0], rows.shape[1] - key_columns), dtype=rows.dtype, device=rows.device)
    sums.index_add_(0, inverse, rows[:, key_columns:])
    return torch.cat([keys, sums], dim=1)
