"""Metrics: STQ (torchmetrics ``Metric`` + functional core) and MOTS metrics (sMOTSA, IDF1, HOTA).

Kept free of Lightning so that sweeps and scripts use them directly; the Lightning-side
logging helper lives in :mod:`hvps_lightning.lightning.metric_logging`.
"""

from __future__ import annotations

import importlib
from typing import Any

#: public name -> submodule; imported on first use (PEP 562) so that `hvps evaluate` does not
#: load torch and torchmetrics: the functional core and STQAccumulator need NumPy only
_EXPORTS = {
    "STQ": "stq",
    "STQAccumulator": "functional_stq",
    "STQInputError": "stq_inputs",
    "STQLabelSpace": "stq_inputs",
    "STQResult": "functional_stq",
    "segmentation_and_tracking_quality": "functional_stq",
    "sequence_key": "stq",
}

__all__ = [
    "STQ",
    "STQAccumulator",
    "STQInputError",
    "STQLabelSpace",
    "STQResult",
    "segmentation_and_tracking_quality",
    "sequence_key",
]


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
