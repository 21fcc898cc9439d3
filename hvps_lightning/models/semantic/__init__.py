"""The semantic segmenter: smp / EfficientPS-style networks and the ``SemanticModule`` task."""

from hvps_lightning.models.semantic.lightning_model import SemanticModule
from hvps_lightning.models.semantic.torch_model import (
    EFFICIENTPS,
    SMP_ARCHITECTURES,
    DensePredictionCell,
    EfficientPSSemanticHead,
    EfficientPSSemanticNet,
    LargeScaleFeatureExtractor,
    MismatchCorrection,
    SemanticNet,
    TwoWayFPN,
)

__all__ = [
    "EFFICIENTPS",
    "SMP_ARCHITECTURES",
    "DensePredictionCell",
    "EfficientPSSemanticHead",
    "EfficientPSSemanticNet",
    "LargeScaleFeatureExtractor",
    "MismatchCorrection",
    "SemanticModule",
    "SemanticNet",
    "TwoWayFPN",
]
