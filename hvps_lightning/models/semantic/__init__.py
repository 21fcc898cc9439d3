"""The semantic segmenter: smp / EfficientPS-style networks in plain PyTorch.

The task that trains them is ``SemanticModule`` in :mod:`hvps_lightning.models.semantic.lightning_model`.
"""

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
    "SemanticNet",
    "TwoWayFPN",
]
