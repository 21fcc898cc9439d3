"""Panoptic fusion of semantic maps and tracked instances into STEP output, and the semantic cache."""

from hvps_lightning.panoptic.fusion import (
    DEFAULT_UNCOVERED,
    UNCOVERED_RULES,
    PanopticInstance,
    as_panoptic_instance,
    fuse_panoptic,
    fuse_sequence,
)
from hvps_lightning.panoptic.semantic_cache import (
    list_cached_frames,
    read_probabilities,
    read_semantic_map,
    write_semantic_map,
)

__all__ = [
    "DEFAULT_UNCOVERED",
    "UNCOVERED_RULES",
    "PanopticInstance",
    "as_panoptic_instance",
    "fuse_panoptic",
    "fuse_sequence",
    "list_cached_frames",
    "read_probabilities",
    "read_semantic_map",
    "write_semantic_map",
]
