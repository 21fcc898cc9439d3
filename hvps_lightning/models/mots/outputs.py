"""The MOTS network's detections as the tracker takes them: one conversion, for every caller.

``MOTSModule`` (validation, test and predict) and the inference pipeline
(:class:`~hvps_lightning.inference.Pipeline`) turn a frame's network output (``boxes``,
``scores``, ``labels``, ``masks`` probabilities (N, 1, H, W), ``embeddings``) into
:class:`~hvps_lightning.structures.detections.FrameDetections` here: masks thresholded and
encoded as RLEs at the size the network mapped them to (the frame's original size).

Example:
    >>> import torch
    >>> output = {"boxes": torch.tensor([[0.0, 0.0, 2.0, 1.0]]), "scores": torch.tensor([0.9]),
    ...           "labels": torch.tensor([4]), "masks": torch.tensor([[[[0.9, 0.7], [0.1, 0.2]]]]),
    ...           "embeddings": torch.ones(1, 8)}
    >>> frame = to_frame_detections(output, "000001")
    >>> frame.image_size, len(frame), frame.masks[0]["size"]
    ((2, 2), 1, [2, 2])
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
from torch import Tensor

from hvps_lightning.structures.detections import FrameDetections
from hvps_lightning.structures.masks import encode_masks

#: probability above which a mask pixel is foreground (``MOTSModule``'s ``mask_threshold`` default)
DEFAULT_MASK_THRESHOLD = 0.5


def binary_masks(detections: Mapping[str, Tensor], threshold: float = DEFAULT_MASK_THRESHOLD) -> Tensor:
    """(N, H, W) bool masks: the network's mask probabilities (N, 1, H, W) at ``threshold``."""
    return detections["masks"][:, 0] >= float(threshold)


def to_frame_detections(
    detections: Mapping[str, Tensor],
    frame: str,
    mask_threshold: float = DEFAULT_MASK_THRESHOLD,
    masks: Tensor | None = None,
) -> FrameDetections:
    """One frame's network output as :class:`FrameDetections` (RLE masks, spec labels, float32 arrays).

    Args:
        detections: the network's output for the frame (eval mode).
        frame: the frame's name.
        mask_threshold: probability above which a mask pixel is foreground.
        masks: :func:`binary_masks` of ``detections`` when the caller has them already.
    """
    if masks is None:
        masks = binary_masks(detections, mask_threshold)
    height, width = masks.shape[-2:]
    return FrameDetections(
        frame=str(frame),
        boxes=detections["boxes"].detach().float().cpu().numpy().astype(np.float32),
        scores=detections["scores"].detach().float().cpu().numpy().astype(np.float32),
        labels=detections["labels"].detach().cpu().numpy().astype(np.int64),
        masks=encode_masks(masks),
        embeddings=detections["embeddings"].detach().float().cpu().numpy().astype(np.float32),
        image_size=(int(height), int(width)),
    )
