"""Detections and tracked objects: what the MOTS network emits and what the tracker hands out.

:class:`FrameDetections` is the in-memory side of the detection cache
(:mod:`hvps_lightning.formats.detection_cache` stores a sequence of them);
:class:`TrackedObject` is one tracked object of one frame, as the tracker outputs it.

Conventions:
    * ``boxes``: (N, 4) float32, ``x1, y1, x2, y2`` in pixels of the original image.
    * ``scores``: (N,) float32 in [0, 1].
    * ``labels``: (N,) int64 semantic class ids of the dataset spec (e.g. 4 = person in
      MOTChallenge-STEP), not detector-internal indices.
    * ``masks``: N pycocotools compressed RLEs ``{"size": [H, W], "counts": str}`` at the
      original resolution (``counts`` as an ASCII ``str``).
    * ``embeddings``: (N, D) float32, L2-normalised appearance embeddings.
    * ``camera_motion``: ``None`` (unknown), or the (2, 3) affine transform that maps pixel
      coordinates of the previous frame to this frame (camera motion compensation,
      :mod:`~hvps_lightning.tracking.camera_motion`); identity for a sequence's first frame.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hvps_lightning.errors import HVPSError


@dataclass
class FrameDetections:
    """Detections of one frame (see the module docstring for the conventions)."""

    frame: str
    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    masks: list[dict[str, Any]]
    embeddings: np.ndarray
    image_size: tuple[int, int] = (0, 0)
    extra: dict[str, Any] = field(default_factory=dict)
    camera_motion: np.ndarray | None = None

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    @classmethod
    def empty(cls, frame: str, image_size: tuple[int, int], embedding_dim: int = 128) -> FrameDetections:
        """Return a frame without detections."""
        return cls(
            frame=frame,
            boxes=np.zeros((0, 4), np.float32),
            scores=np.zeros((0,), np.float32),
            labels=np.zeros((0,), np.int64),
            masks=[],
            embeddings=np.zeros((0, embedding_dim), np.float32),
            image_size=image_size,
        )

    def validate(self, where: str = "") -> None:
        """Check shapes and values; raise a clear :class:`HVPSError` naming ``where`` and the frame.

        Raises:
            HVPSError: on mismatched lengths, boxes of negative size, or non-finite values.
        """
        loc = f"{where}{': ' if where else ''}frame {self.frame}"
        if self.camera_motion is not None:
            motion = np.asarray(self.camera_motion)
            if motion.shape != (2, 3) or not np.isfinite(motion).all():
                raise HVPSError(
                    f"{loc}: camera_motion must be a finite (2, 3) affine transform, got shape {motion.shape}"
                )
        n = len(self)
        if self.boxes.ndim != 2 or self.boxes.shape[1] != 4:
            raise HVPSError(f"{loc}: boxes must have shape (N, 4), got {tuple(self.boxes.shape)}")
        lengths = {
            "scores": len(self.scores),
            "labels": len(self.labels),
            "masks": len(self.masks),
            "embeddings": len(self.embeddings),
        }
        bad = {k: v for k, v in lengths.items() if v != n}
        if bad:
            detail = ", ".join(f"{k}={v}" for k, v in bad.items())
            raise HVPSError(f"{loc}: {n} boxes but {detail}")
        if n == 0:
            return
        if self.embeddings.ndim != 2:
            raise HVPSError(f"{loc}: embeddings must have shape (N, D), got {tuple(self.embeddings.shape)}")
        if not np.isfinite(self.boxes).all():
            raise HVPSError(f"{loc}: boxes contain NaN or inf")
        if (self.boxes[:, 2] < self.boxes[:, 0]).any() or (self.boxes[:, 3] < self.boxes[:, 1]).any():
            raise HVPSError(f"{loc}: a box has negative width or height (x2 < x1 or y2 < y1)")
        if not np.isfinite(self.scores).all():
            raise HVPSError(f"{loc}: scores contain NaN or inf")
        if not np.isfinite(self.embeddings).all():
            raise HVPSError(f"{loc}: embeddings contain NaN or inf")


@dataclass(slots=True)
class TrackedObject:
    """One tracked object in one frame.

    Attributes:
        track_id: the track id, 1 .. ``max_track_id`` (unique per sequence at any time).
        label: semantic class id (spec id, e.g. 4 = person in MOTChallenge-STEP).
        score: detection score.
        box: (4,) float32 ``x1, y1, x2, y2`` of the detection.
        rle: compressed RLE ``{"size": [H, W], "counts": str}``, disjoint from the other
            objects of the frame.
        detection_index: index of the detection in the frame's :class:`FrameDetections`.
    """

    track_id: int
    label: int
    score: float
    box: np.ndarray
    rle: dict[str, Any]
    detection_index: int = -1
