"""The MOTS network: Mask R-CNN + temporal attention + spatial attention + embeddings, in plain PyTorch.

``MOTSNet``, ``StreamingMOTS``, ``TemporalAttention`` and the heads live in ``attention``,
``heads``, ``net``, ``streaming`` and ``weights``; importing them loads no Lightning. The task
that trains the network is ``MOTSModule`` in :mod:`hvps_lightning.models.mots.lightning_model`.
"""

from hvps_lightning.models.mots.attention import TemporalAttention
from hvps_lightning.models.mots.heads import EmbeddingHead, MOTSRoIHeads, SpatialAttention
from hvps_lightning.models.mots.net import BatchOnlyTransform, MOTSNet
from hvps_lightning.models.mots.streaming import StreamingMOTS

__all__ = [
    "BatchOnlyTransform",
    "EmbeddingHead",
    "MOTSNet",
    "MOTSRoIHeads",
    "SpatialAttention",
    "StreamingMOTS",
    "TemporalAttention",
]
