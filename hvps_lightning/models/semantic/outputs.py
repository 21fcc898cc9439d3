"""The semantic network's logits as class maps: one conversion, for every caller.

``SemanticModule.predict_step`` and the inference pipeline
(:class:`~hvps_lightning.inference.Pipeline`) turn one frame's logits into the uint8 class map
at the frame's original size here, and into the class probabilities the fusion's ``stuff``
rule reads.

Example:
    >>> import torch
    >>> logits = torch.zeros(3, 4, 6); logits[2, :2] = 1.0
    >>> semantic_map(logits, (8, 12))[::4, 0].tolist()
    [2, 0]
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F


def _content(logits: torch.Tensor, content_size: Sequence[int] | None) -> torch.Tensor:
    """(1, C, h, w) logits of the part of a (padded) input that holds the image."""
    if logits.dim() == 3:
        logits = logits[None]
    if content_size is None:
        return logits
    return logits[:, :, : int(content_size[0]), : int(content_size[1])]


def semantic_map(
    logits: torch.Tensor, size: Sequence[int], content_size: Sequence[int] | None = None
) -> np.ndarray:
    """One frame's (C, h, w) logits -> (H, W) uint8 class ids at ``size`` (bilinear logits, argmax).

    Args:
        logits: the frame's logits, (C, h, w) or (1, C, h, w), at the network's resolution.
        size: the frame's original (height, width).
        content_size: the (height, width) of the logits that hold the image when the input
            was padded at the bottom/right (``None``: all of them).
    """
    content = _content(logits, content_size)
    full = F.interpolate(content, size=(int(size[0]), int(size[1])), mode="bilinear", align_corners=False)
    return full.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()


def class_probabilities(logits: torch.Tensor, content_size: Sequence[int] | None = None) -> np.ndarray:
    """One frame's softmax (C, h, w) float16 at the network's resolution (for the ``stuff`` fusion rule)."""
    return _content(logits, content_size).softmax(dim=1)[0].to(torch.float16).cpu().numpy()
