"""Clip-consistent augmentation: one albumentations draw applied to every frame of a clip and its labels.

A clip (T frames) and the panoptic map of its target frame go through one
``albumentations.Compose`` call: the frames as ``images`` (albumentations applies the same
sampled parameters to each) and the panoptic map (``semantic * divisor + instance``, int32)
as ``mask`` with nearest-neighbour resampling. Instances, boxes and masks are then derived
from the transformed map (:func:`panoptic_targets`), so boxes always fit the masks and an
instance cropped away entirely simply disappears.

The DataModule owns resizing and normalisation; the models get normalised float tensors
and must not resize or normalise again.

Example:
    >>> import numpy as np
    >>> transform = ClipTransform(image_size=(32, 48), train=False, ignore_value=255000)
    >>> frames, panoptic = transform(np.zeros((3, 64, 96, 3), np.uint8), np.zeros((64, 96), np.int32))
    >>> frames.shape, panoptic.shape
    ((3, 32, 48, 3), (32, 48))
"""

from __future__ import annotations

from collections.abc import Sequence

import albumentations as A
import cv2
import numpy as np
import torch

from hvps_lightning.structures.specs import DatasetSpec

#: ImageNet statistics used to normalise frames (the backbones are ImageNet-style).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: padding colour of images: the mean colour, so padded pixels normalise to about zero.
_PAD_COLOUR = tuple(round(255 * m) for m in IMAGENET_MEAN)


class ClipTransform:
    """Resize / random scale and crop / flip / colour jitter, identical for every frame of a clip.

    Args:
        image_size: output ``(height, width)``; ``None`` keeps the native size (then only flip
            and colour jitter are applied when training).
        train: whether to draw random augmentations (``False``: resize only).
        scale_range: random scale factors (relative to ``image_size``) before the random crop;
            ``(1.0, 1.0)`` disables scaling.
        hflip: random horizontal flip (p = 0.5).
        color_jitter: brightness/contrast/saturation strength (hue gets a quarter of it); 0 disables.
        ignore_value: the panoptic value of padded (void) pixels, ``ignore_label * divisor``.
    """

    def __init__(
        self,
        image_size: tuple[int, int] | None = None,
        train: bool = False,
        scale_range: tuple[float, float] = (0.75, 1.25),
        hflip: bool = True,
        color_jitter: float = 0.2,
        ignore_value: int = 255_000,
    ) -> None:
        if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
            raise ValueError(f"image_size must be (height, width) with positive values, got {image_size}")
        if scale_range[0] <= 0 or scale_range[0] > scale_range[1]:
            raise ValueError(f"scale_range must be (low, high) with 0 < low <= high, got {scale_range}")
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self.train = train
        steps: list[A.BasicTransform] = []
        if self.image_size is not None:
            height, width = self.image_size
            steps.append(A.Resize(height, width))
            if train and tuple(scale_range) != (1.0, 1.0):
                steps += [
                    A.RandomScale(scale_limit=(scale_range[0] - 1.0, scale_range[1] - 1.0), p=1.0),
                    A.PadIfNeeded(
                        min_height=height,
                        min_width=width,
                        border_mode=cv2.BORDER_CONSTANT,
                        fill=_PAD_COLOUR,
                        fill_mask=ignore_value,
                    ),
                    A.RandomCrop(height, width),
                ]
        if train and hflip:
            steps.append(A.HorizontalFlip(p=0.5))
        if train and color_jitter > 0:
            strength = float(color_jitter)
            steps.append(A.ColorJitter(strength, strength, strength, min(0.5, strength / 4), p=0.8))
        self.steps = steps
        self.compose = A.Compose(steps, seed=0) if steps else None

    def __call__(
        self, frames: np.ndarray, panoptic: np.ndarray, seed: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Transform a clip and the panoptic map of its target frame with one random draw.

        Args:
            frames: (T, H, W, 3) uint8 frames of one clip (all of one size).
            panoptic: (H, W) int32 panoptic map ``semantic * divisor + instance``.
            seed: seeds the random draw (training); ``None`` keeps the transform's own stream.

        Returns:
            ``(frames (T, H', W', 3) uint8, panoptic (H', W') int32)``.
        """
        if self.compose is None:
            return frames, panoptic
        if seed is not None:
            self.compose.set_random_seed(int(seed))
        out = self.compose(images=frames, mask=panoptic)
        return np.ascontiguousarray(out["images"]), np.ascontiguousarray(out["mask"])

    def __repr__(self) -> str:
        names = ", ".join(type(step).__name__ for step in self.steps) or "identity"
        return f"ClipTransform({names})"


def normalize_frames(frames: np.ndarray) -> torch.Tensor:
    """(T, H, W, 3) uint8 frames -> (T, 3, H, W) float32 normalised with IMAGENET_MEAN / IMAGENET_STD."""
    tensor = torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32).view(1, 3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32).view(1, 3, 1, 1)
    return tensor.sub_(mean).div_(std)


def denormalize_frames(frames: torch.Tensor) -> torch.Tensor:
    """Invert :func:`normalize_frames`: (..., 3, H, W) normalised -> uint8 RGB in the same layout."""
    mean = torch.tensor(IMAGENET_MEAN, dtype=frames.dtype, device=frames.device).view(3, 1, 1)
    std = torch.tensor(IMAGENET_STD, dtype=frames.dtype, device=frames.device).view(3, 1, 1)
    return (frames * std + mean).mul(255.0).round().clamp(0, 255).to(torch.uint8)


def masks_to_boxes_xyxy(masks: torch.Tensor) -> torch.Tensor:
    """Boxes (N, 4) float32 ``x1, y1, x2, y2`` enclosing each mask, with exclusive ``x2, y2``.

    ``x2 = last column + 1`` so that a one-pixel-wide mask has a box of width 1 (torchvision's
    detectors reject boxes of zero width).
    """
    if masks.numel() == 0:
        return torch.zeros((masks.shape[0], 4), dtype=torch.float32)
    rows = masks.any(dim=2)
    cols = masks.any(dim=1)
    height, width = masks.shape[1:]
    row_idx = torch.arange(height, device=masks.device)
    col_idx = torch.arange(width, device=masks.device)
    y1 = torch.where(rows, row_idx, height).amin(dim=1)
    y2 = torch.where(rows, row_idx, -1).amax(dim=1) + 1
    x1 = torch.where(cols, col_idx, width).amin(dim=1)
    x2 = torch.where(cols, col_idx, -1).amax(dim=1) + 1
    return torch.stack([x1, y1, x2, y2], dim=1).float()


def panoptic_targets(
    panoptic: np.ndarray,
    spec: DatasetSpec,
    identity_base: int = 0,
    labelled: bool = True,
) -> dict[str, torch.Tensor]:
    """Build the target dict of one frame (ARCHITECTURE.md "Batches") from its panoptic map.

    Instances are the thing-class segments with an instance id > 0 (instance 0 of a thing
    class is crowd: no instance, but its pixels keep their class in ``semantic``). They are
    ordered by panoptic id.

    Args:
        panoptic: (H, W) int map ``semantic * spec.label_divisor + instance`` (void:
            ``ignore_label * divisor``).
        spec: the spec the labels are in.
        identity_base: added to the panoptic id to make identities unique across sequences.
        labelled: ``False`` for frames without ground truth (all void, no instances).

    Returns:
        ``boxes`` float32 (N, 4) xyxy, ``labels`` int64 (N,), ``masks`` uint8 (N, H, W),
        ``track_ids`` int64 (N,), ``identities`` int64 (N,), ``semantic`` int64 (H, W),
        ``panoptic`` int64 (H, W).
    """
    pan = torch.from_numpy(np.ascontiguousarray(panoptic).astype(np.int64, copy=False))
    divisor = spec.label_divisor
    if not labelled:
        pan = torch.full_like(pan, spec.ignore_label * divisor)
    semantic = torch.div(pan, divisor, rounding_mode="floor")
    instance = pan - semantic * divisor
    is_thing = torch.isin(semantic, torch.tensor(spec.thing_ids, dtype=torch.int64)) & (instance > 0)
    ids = torch.unique(pan[is_thing]) if bool(is_thing.any()) else torch.zeros(0, dtype=torch.int64)
    masks = (pan.unsqueeze(0) == ids.view(-1, 1, 1)).to(torch.uint8)
    labels = torch.div(ids, divisor, rounding_mode="floor")
    return {
        "boxes": masks_to_boxes_xyxy(masks.bool()),
        "labels": labels,
        "masks": masks,
        "track_ids": ids - labels * divisor,
        "identities": ids + int(identity_base),
        "semantic": semantic,
        "panoptic": pan,
    }


def to_panoptic(semantic: np.ndarray, instance: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    """Pack (semantic, instance) maps into an int32 panoptic map; instance ids off thing classes become 0."""
    semantic = semantic.astype(np.int32, copy=False)
    instance = np.where(np.isin(semantic, spec.thing_ids), instance, 0).astype(np.int32)
    return semantic * np.int32(spec.label_divisor) + instance


def remap_semantic(semantic: np.ndarray, lut: Sequence[int] | np.ndarray) -> np.ndarray:
    """Map semantic ids through a 256-entry lookup table (``structures.specs.label_lut``)."""
    table = np.asarray(lut, dtype=np.int32)
    return table[np.clip(semantic, 0, len(table) - 1)]
