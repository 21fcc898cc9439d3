"""The MOTS network (Mask R-CNN + temporal attention + spatial attention + embeddings) and its task.

``MOTSNet``, ``StreamingMOTS`` and ``TemporalAttention`` are plain PyTorch; ``MOTSModule`` (the
LightningModule) is imported on first use, so that plain-torch users do not load Lightning.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from hvps_lightning.models.mots.attention import TemporalAttention
from hvps_lightning.models.mots.torch_model import MOTSNet, StreamingMOTS

if TYPE_CHECKING:
    from hvps_lightning.models.mots.lightning_model import MOTSModule

__all__ = ["MOTSModule", "MOTSNet", "StreamingMOTS", "TemporalAttention"]


def __getattr__(name: str) -> object:
    if name == "MOTSModule":
        from hvps_lightning.models.mots.lightning_model import MOTSModule

        return MOTSModule
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
