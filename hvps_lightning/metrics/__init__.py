"""Metrics: STQ (torchmetrics ``Metric`` + functional core) and MOTS metrics (sMOTSA, IDF1, HOTA).

Kept free of Lightning so that sweeps and scripts use them directly; the Lightning-side
logging helper lives in :mod:`hvps_lightning.metrics.logging`.
"""

from hvps_lightning.metrics.functional_stq import STQInputError, STQLabelSpace, STQResult
from hvps_lightning.metrics.stq import STQ, segmentation_and_tracking_quality, sequence_key

__all__ = [
    "STQ",
    "STQInputError",
    "STQLabelSpace",
    "STQResult",
    "segmentation_and_tracking_quality",
    "sequence_key",
]
