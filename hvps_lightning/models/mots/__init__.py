"""The MOTS network (Mask R-CNN + temporal attention + spatial attention + embeddings) and its task.

``MOTSNet``, ``StreamingMOTS``, ``TemporalAttention`` and the heads are plain PyTorch
(``attention``, ``heads``, ``net``, ``streaming``, ``weights``); ``MOTSModule`` (the
LightningModule, ``lightning_model``) is imported on first use, so that plain-torch users do
not load Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hvps_lightning.models.mots.attention import TemporalAttention
from hvps_lightning.models.mots.heads import EmbeddingHead, MOTSRoIHeads, SpatialAttention
from hvps_lightning.models.mots.net import BatchOnlyTransform, MOTSNet
from hvps_lightning.models.mots.streaming import StreamingMOTS

if TYPE_CHECKING:
    from hvps_lightning.models.mots.lightning_model import MOTSModule

__all__ = [
    "BatchOnlyTransform",
    "EmbeddingHead",
    "MOTSModule",
    "MOTSNet",
    "MOTSRoIHeads",
    "SpatialAttention",
    "StreamingMOTS",
    "TemporalAttention",
]


def __getattr__(name: str) -> object:
    if name == "MOTSModule":
        from hvps_lightning.models.mots.lightning_model import MOTSModule

        return MOTSModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
