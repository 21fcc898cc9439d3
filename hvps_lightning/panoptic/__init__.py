"""Panoptic fusion of semantic maps and tracked instances into STEP output."""

from hvps_lightning.panoptic.fusion import (
    DEFAULT_UNCOVERED,
    UNCOVERED_RULES,
    PanopticInstance,
    as_panoptic_instance,
    fuse_panoptic,
)

__all__ = [
    "DEFAULT_UNCOVERED",
    "UNCOVERED_RULES",
    "PanopticInstance",
    "as_panoptic_instance",
    "fuse_panoptic",
]
