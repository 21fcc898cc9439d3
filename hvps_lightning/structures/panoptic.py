"""``PanopticFrame``: one frame's STEP panoptic labels, a semantic map and an instance map.

Every producer of panoptic labels (fusion, the STEP PNG and ground-truth readers) and every
consumer (STQ, the MOTS conversion, overlays) speaks this type. Its two maps are int32 (H, W):
``semantic`` holds class ids of a dataset spec (its ignore label for void) and ``instance``
the track id of thing pixels (0 for stuff, and for crowd where the class is a thing). A frame
unpacks like the ``(semantic, instance)`` tuple it replaces.

Example:
    >>> import numpy as np
    >>> frame = PanopticFrame(np.array([[4, 0]]), np.array([[7, 0]]))
    >>> frame.ids(1000).tolist(), frame.stacked().shape
    ([[4007, 0]], (1, 2, 2))
    >>> semantic, instance = frame
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True, eq=False)
class PanopticFrame:
    """Semantic and instance maps of one frame (see the module docstring)."""

    semantic: np.ndarray
    instance: np.ndarray

    def __post_init__(self) -> None:
        semantic = np.asarray(self.semantic)
        instance = np.asarray(self.instance)
        if semantic.ndim != 2 or semantic.shape != instance.shape:
            raise ValueError(
                f"semantic {semantic.shape} and instance {instance.shape} must be equal 2-D shapes"
            )
        object.__setattr__(self, "semantic", semantic.astype(np.int32, copy=False))
        object.__setattr__(self, "instance", instance.astype(np.int32, copy=False))

    def __iter__(self) -> Iterator[np.ndarray]:
        yield self.semantic
        yield self.instance

    @property
    def shape(self) -> tuple[int, int]:
        """(height, width)."""
        return (int(self.semantic.shape[0]), int(self.semantic.shape[1]))

    def stacked(self) -> np.ndarray:
        """(H, W, 2) int32 ``(semantic, instance)`` per pixel, the layout STQ takes."""
        return np.stack([self.semantic, self.instance], axis=-1)

    def ids(self, label_divisor: int) -> np.ndarray:
        """Panoptic ids ``semantic * label_divisor + instance`` (int64)."""
        return self.semantic.astype(np.int64) * label_divisor + self.instance

    @classmethod
    def from_ids(cls, ids: np.ndarray, label_divisor: int) -> PanopticFrame:
        """The frame of panoptic ids ``semantic * label_divisor + instance``."""
        ids = np.asarray(ids, np.int64)
        return cls(ids // label_divisor, ids % label_divisor)
