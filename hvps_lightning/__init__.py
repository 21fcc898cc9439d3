"""hvps-lightning: human video panoptic segmentation (HVPS) in PyTorch Lightning.

``from hvps_lightning import Pipeline`` runs trained models on any video
(:class:`hvps_lightning.inference.Pipeline`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

__all__ = ["Pipeline", "__version__"]

if TYPE_CHECKING:
    from hvps_lightning.inference.pipeline import Pipeline


def __getattr__(name: str) -> Any:
    # The one lazy attribute of the package root (PEP 562): `Pipeline` is the five-line API, but
    # importing it loads torch, torchvision and the networks, while `import hvps_lightning` (every
    # `hvps` command, `hvps --help`, the light metric and format modules) must stay instant.
    if name == "Pipeline":
        from hvps_lightning.inference.pipeline import Pipeline

        return Pipeline
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
