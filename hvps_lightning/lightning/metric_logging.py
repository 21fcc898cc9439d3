"""Logging STQ results from LightningModules and callbacks, with the right ``sync_dist`` behaviour.

Why ``sync_dist=False``: :class:`~hvps_lightning.metrics.STQ` is a torchmetrics ``Metric``;
its ``compute()`` all-gathers the states of every process before computing, so each rank
already holds the global numbers. ``sync_dist=True`` would all-reduce them once more: a wasted
collective per value, and a mean of per-rank values instead of the global value as soon as
anything differs between ranks (e.g. a NaN IoU of a class). Lightning warns
(``PossibleUserWarning``) about epoch-level values logged without ``sync_dist`` under DDP; this
helper silences that warning for the keys it logs, and only for them.

Why ``rank_zero_only`` is a choice: when every rank called ``compute()`` (the usual torchmetrics
flow; the call is collective), every rank should log (``rank_zero_only=False``, the default) so
that callbacks that monitor a value (``ModelCheckpoint(monitor="val/stq")``, early stopping)
see it on every rank. When only rank 0 computed the results (e.g. an offline evaluation run
under ``if trainer.is_global_zero``), pass ``rank_zero_only=True``: Lightning then logs from
rank 0 alone, and such values cannot be monitored; broadcast the results first if they must be.

Example:
    >>> results = {"stq": 0.5, "aq": 0.25, "sq": 1.0, "iou_per_class": {"person": 1.0, "rider": float("nan")},
    ...            "per_sequence": {"0002": {"stq": 0.5, "aq": 0.25, "sq": 1.0}}, "num_frames": 3}
    >>> sorted(stq_log_dict(results, "val"))
    ['val/aq', 'val/iou/person', 'val/sq', 'val/stq']
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Mapping
from typing import Any, Protocol


class _Loggable(Protocol):
    def log(self, name: str, value: Any, *args: Any, **kwargs: Any) -> None: ...


def _key(prefix: str, name: str) -> str:
    return f"{prefix.rstrip('/')}/{name}" if prefix else name


def stq_log_dict(
    results: Mapping[str, Any],
    prefix: str = "val",
    per_class: bool = True,
    per_sequence: bool = False,
) -> dict[str, float]:
    """Flatten STQ results into ``{"<prefix>/stq": ..., "<prefix>/iou/<class>": ...}``.

    Args:
        results: what :meth:`STQ.compute` returns.
        prefix: key prefix (``val``, ``test``); empty for none.
        per_class: add ``<prefix>/iou/<class name>`` (classes absent from both ground truth and
            prediction, whose IoU is NaN, are left out).
        per_sequence: add ``<prefix>/seq/<sequence>/{stq,aq,sq}``.
    """
    values = {_key(prefix, name): float(results[name]) for name in ("stq", "aq", "sq")}
    if per_class:
        for name, value in results.get("iou_per_class", {}).items():
            if value is not None and not math.isnan(float(value)):
                values[_key(prefix, f"iou/{name}")] = float(value)
    if per_sequence:
        for sequence, numbers in results.get("per_sequence", {}).items():
            for name in ("stq", "aq", "sq"):
                values[_key(prefix, f"seq/{sequence}/{name}")] = float(numbers[name])
    return values


def log_stq(
    module: _Loggable,
    results: Mapping[str, Any],
    prefix: str = "val",
    per_class: bool = True,
    per_sequence: bool = False,
    rank_zero_only: bool = False,
    prog_bar: bool = True,
) -> dict[str, float]:
    """Log STQ results through ``module.log`` (a LightningModule; from a callback, pass ``pl_module``).

    Values are logged at epoch level with ``sync_dist=False`` (see the module docstring); call
    this from an epoch-end hook after ``STQ.compute()``.

    Args:
        module: the LightningModule that logs.
        results: what :meth:`STQ.compute` returns.
        prefix: key prefix, e.g. ``val`` gives ``val/stq``, ``val/aq``, ``val/sq``, ``val/iou/<class>``.
        per_class: also log the IoU of each class present.
        per_sequence: also log ``<prefix>/seq/<sequence>/{stq,aq,sq}``.
        rank_zero_only: set when only rank 0 computed ``results`` (see the module docstring).
        prog_bar: show ``stq`` in the progress bar.

    Returns:
        The logged ``{key: value}``.
    """
    values = stq_log_dict(results, prefix, per_class=per_class, per_sequence=per_sequence)
    _silence_sync_dist_warning(values)
    main_key = _key(prefix, "stq")
    for key, value in values.items():
        module.log(
            key,
            value,
            on_step=False,
            on_epoch=True,
            sync_dist=False,
            rank_zero_only=rank_zero_only,
            prog_bar=prog_bar and key == main_key,
            batch_size=1,
        )
    return values


def _silence_sync_dist_warning(values: Mapping[str, float]) -> None:
    """Ignore Lightning's "use sync_dist=True" hint for these already reduced keys only."""
    names = "|".join(re.escape(key) for key in values)
    warnings.filterwarnings("ignore", message=rf"It is recommended to use `self\.log\('(?:{names})'")
