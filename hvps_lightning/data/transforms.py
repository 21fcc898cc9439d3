"""Clip-consistent augmentation: one random draw applied to every frame of a clip and its labels.

A clip (T frames) and the label map of its target frame (the panoptic map ``semantic * divisor
+ instance``, int32, or the semantic map alone) go through one draw: a random scale, a crop
back to the output size (or centred padding when scaled down), a horizontal flip and a colour
jitter, identical for every frame. Frames are resampled bilinearly, labels with nearest
neighbours. Instances, boxes and masks are then derived from the transformed map
(:func:`panoptic_targets`), so boxes always fit the masks and an instance cropped away
entirely simply disappears.

Each step is one OpenCV call per frame (resize, slice, border, flip, a 3x4 colour matrix);
albumentations did the same work several times slower, most of it copies and the colour
jitter's four passes. The DataModule owns resizing and normalisation; the models get
normalised float tensors and must not resize or normalise again.

Example:
    >>> import numpy as np
    >>> transform = ClipTransform(image_size=(32, 48), train=False, ignore_value=255000)
    >>> frames, panoptic = transform(np.zeros((3, 64, 96, 3), np.uint8), np.zeros((64, 96), np.int32))
    >>> frames.shape, panoptic.shape
    ((3, 32, 48, 3), (32, 48))
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cache

import cv2
import numpy as np
import torch
from scipy import ndimage

from hvps_lightning.data.loaders import resize_to
from hvps_lightning.structures.specs import DatasetSpec

#: ImageNet statistics used to normalise frames (the backbones are ImageNet-style).
IMAGENET_MEAN: tuple[float, float, float] = (0.485, 0.456, 0.406)
IMAGENET_STD: tuple[float, float, float] = (0.229, 0.224, 0.225)

#: padding colour of images: the mean colour, so padded pixels normalise to about zero.
_PAD_COLOUR = tuple(round(255 * m) for m in IMAGENET_MEAN)

#: luma weights (BT.601): the grey of the saturation blend and the Y of the YIQ hue rotation.
_LUMA = np.array([0.299, 0.587, 0.114])
#: RGB -> YIQ; the I and Q rows sum to 0, so a rotation in the IQ plane keeps greys grey.
_RGB_TO_YIQ = np.array([_LUMA, [0.596, -0.274, -0.322], [0.211, -0.523, 0.312]])
_YIQ_TO_RGB = np.linalg.inv(_RGB_TO_YIQ)


@dataclass(frozen=True)
class _Axis:
    """One axis of a draw: the output size, the scaled size, and a crop start or centred padding."""

    size: int
    scaled: int
    crop: int = 0
    pad_before: int = 0
    pad_after: int = 0


@dataclass(frozen=True)
class Draw:
    """The random augmentation of one clip (see :meth:`ClipTransform.draw`).

    Attributes:
        rows: the vertical axis: output height, scaled height, crop or padding.
        cols: the horizontal axis.
        flip: a horizontal flip.
        colour: the colour jitter's 3x3 gain and contrast weight, or ``None``.
    """

    rows: _Axis
    cols: _Axis
    flip: bool
    colour: tuple[np.ndarray, float] | None

    @property
    def scaled_size(self) -> tuple[int, int]:
        """(height, width) the frames are resized to before the crop or padding."""
        return self.rows.scaled, self.cols.scaled


class ClipTransform:
    """Resize / random scale and crop / flip / colour jitter, identical for every frame of a clip.

    Calling the transform resizes a clip to ``image_size`` and, when training, applies one random
    draw. A loader that knows the draw beforehand (:meth:`draw`) can resize the decoded frames
    straight to :attr:`Draw.scaled_size` and call :meth:`apply`: one resize instead of two.

    Args:
        image_size: output ``(height, width)``; ``None`` keeps each clip's native size (the
            random scale then crops or pads back to it).
        train: whether to draw random augmentations (``False``: resize only).
        scale_range: random scale factors (relative to the output size) before the crop;
            ``(1.0, 1.0)`` disables scaling.
        hflip: random horizontal flip (p = 0.5).
        color_jitter: brightness/contrast/saturation strength (hue gets a quarter of it), applied
            with p = 0.8 as one colour matrix per clip; 0 disables.
        ignore_value: the label value of padded (void) pixels, ``ignore_label * divisor`` for
            panoptic maps; a call may give another (``ignore_label`` for semantic maps).
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
        if color_jitter < 0:
            raise ValueError(f"color_jitter must be >= 0, got {color_jitter}")
        self.image_size = None if image_size is None else (int(image_size[0]), int(image_size[1]))
        self.train = train
        self.scale_range = (float(scale_range[0]), float(scale_range[1]))
        self.hflip = hflip
        self.color_jitter = float(color_jitter)
        self.ignore_value = int(ignore_value)
        self._rng = np.random.default_rng(0)

    def __call__(
        self,
        frames: np.ndarray,
        labels: np.ndarray,
        seed: int | None = None,
        ignore_value: int | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """Transform a clip and the label map of its target frame with one random draw.

        Args:
            frames: (T, H, W, 3) uint8 frames of one clip (all of one size).
            labels: (H, W) int32 label map (panoptic ``semantic * divisor + instance``, or semantic).
            seed: seeds the random draw (training); ``None`` keeps the transform's own stream.
            ignore_value: the value of padded label pixels (default: the constructor's).

        Returns:
            ``(frames (T, H', W', 3) uint8, labels (H', W') int32)``.
        """
        if self.image_size is not None and tuple(frames.shape[1:3]) != self.image_size:
            frames = np.stack([resize_to(frame, self.image_size) for frame in frames])
        labels = resize_to(labels, self.image_size, nearest=True)
        if not self.train:
            return frames, labels
        draw = self.draw(seed, frames.shape[1], frames.shape[2])
        if draw.scaled_size != tuple(frames.shape[1:3]):
            frames = np.stack([resize_to(frame, draw.scaled_size) for frame in frames])
            labels = resize_to(labels, draw.scaled_size, nearest=True)
        return self.apply(frames, labels, draw, ignore_value)

    def draw(self, seed: int | None, height: int, width: int) -> Draw:
        """Draw the augmentation of one clip whose output is (height, width).

        Args:
            seed: seeds the draw; ``None`` takes it from the transform's own stream.
            height: the output height (``image_size``, or the clip's native height).
            width: the output width.
        """
        rng = self._rng if seed is None else np.random.default_rng(int(seed))
        if self.scale_range == (1.0, 1.0):
            rows, cols = _Axis(height, height), _Axis(width, width)
        else:
            scale = float(rng.uniform(*self.scale_range))
            rows, cols = _draw_axis(rng, height, scale), _draw_axis(rng, width, scale)
        flip = self.hflip and bool(rng.random() < 0.5)
        return Draw(rows, cols, flip, self._draw_colour(rng))

    def apply(
        self, frames: np.ndarray, labels: np.ndarray, draw: Draw, ignore_value: int | None = None
    ) -> tuple[np.ndarray, np.ndarray]:
        """Apply a draw to a clip already resized to ``draw.scaled_size``: crop or pad, flip, colours.

        Returns:
            ``(frames (T, H, W, 3) uint8, labels (H, W) int32)`` at the draw's output size.
        """
        if tuple(frames.shape[1:3]) != draw.scaled_size or tuple(labels.shape) != draw.scaled_size:
            got = (tuple(frames.shape), tuple(labels.shape))
            raise ValueError(f"apply needs a clip of size {draw.scaled_size}, got frames and labels of {got}")
        fill = self.ignore_value if ignore_value is None else int(ignore_value)
        out = np.empty((len(frames), draw.rows.size, draw.cols.size, 3), dtype=np.uint8)
        for frame, slot in zip(frames, out, strict=True):  # each step writes the next one's input
            if draw.colour is None:
                _place(frame, draw, _PAD_COLOUR, slot)
            else:
                _apply_colour(_place(frame, draw, _PAD_COLOUR), *draw.colour, slot)
        return out, np.ascontiguousarray(_place(labels, draw, (fill,) * 4))

    def _draw_colour(self, rng: np.random.Generator) -> tuple[np.ndarray, float] | None:
        """Draw brightness, contrast, saturation and hue: one 3x3 gain and the contrast's weight."""
        strength = self.color_jitter
        if strength <= 0 or rng.random() >= 0.8:
            return None
        low, high = max(0.0, 1.0 - strength), 1.0 + strength
        brightness, contrast, saturation = (float(rng.uniform(low, high)) for _ in range(3))
        hue = float(rng.uniform(-1.0, 1.0)) * min(0.5, strength / 4)
        grey_blend = saturation * np.eye(3) + (1.0 - saturation) * np.outer(np.ones(3), _LUMA)
        angle = 2.0 * np.pi * hue
        rotation = np.array(
            [[1.0, 0.0, 0.0], [0.0, np.cos(angle), -np.sin(angle)], [0.0, np.sin(angle), np.cos(angle)]]
        )
        hue_turn = _YIQ_TO_RGB @ rotation @ _RGB_TO_YIQ
        # brightness b, then contrast c towards the frame's mean grey m: c * b * x + (1 - c) * b * m;
        # saturation and hue are linear and keep greys, so they only multiply the first term.
        gain = contrast * brightness * (hue_turn @ grey_blend)
        return gain, (1.0 - contrast) * brightness

    def __repr__(self) -> str:
        steps = []
        if self.image_size is not None:
            steps.append(f"Resize{self.image_size}")
        if self.train:
            if self.scale_range != (1.0, 1.0):
                steps.append(f"RandomScaleCrop{self.scale_range}")
            if self.hflip:
                steps.append("HorizontalFlip")
            if self.color_jitter > 0:
                steps.append(f"ColorJitter({self.color_jitter})")
        return f"ClipTransform({', '.join(steps) or 'identity'})"


def _draw_axis(rng: np.random.Generator, size: int, scale: float) -> _Axis:
    """Scale one axis; crop a random window of ``size`` from it, or pad it back to ``size`` centred."""
    scaled = max(1, round(size * scale))
    if scaled >= size:
        return _Axis(size, scaled, crop=int(rng.integers(0, scaled - size + 1)))
    before = (size - scaled) // 2
    return _Axis(size, scaled, pad_before=before, pad_after=size - scaled - before)


def _place(image: np.ndarray, draw: Draw, fill: object, dst: np.ndarray | None = None) -> np.ndarray:
    """Crop or pad a scaled frame or label map to the draw's output, and flip it; into ``dst`` if given.

    Without ``dst`` the result may be a view of ``image``.
    """
    rows, cols = draw.rows, draw.cols
    keep_h = rows.size - rows.pad_before - rows.pad_after
    keep_w = cols.size - cols.pad_before - cols.pad_after
    image = image[rows.crop : rows.crop + keep_h, cols.crop : cols.crop + keep_w]
    if rows.pad_before or rows.pad_after or cols.pad_before or cols.pad_after:
        borders = (rows.pad_before, rows.pad_after, cols.pad_before, cols.pad_after)
        image = cv2.copyMakeBorder(image, *borders, cv2.BORDER_CONSTANT, value=fill)
    if draw.flip:
        return cv2.flip(image, 1) if dst is None else cv2.flip(image, 1, dst=dst)
    if dst is None:
        return image
    dst[...] = image
    return dst


def _apply_colour(frame: np.ndarray, gain: np.ndarray, contrast_weight: float, dst: np.ndarray) -> None:
    """Apply the clip's colour matrix to one frame, into ``dst``; the contrast pulls towards its mean grey."""
    mean_grey = float(np.dot(cv2.mean(frame)[:3], _LUMA))
    matrix = np.concatenate([gain, np.full((3, 1), contrast_weight * mean_grey)], axis=1)
    cv2.transform(frame, matrix.astype(np.float32), dst=dst)


def _normalise(values: torch.Tensor, channel_dim: int) -> torch.Tensor:
    """The normalisation, ``(x / 255 - IMAGENET_MEAN) / IMAGENET_STD``, in place on float32 values.

    The one place of the formula: the collate function's table and the on-device normalisation
    both come from it, so they give the same float32 bits.
    """
    shape = [1] * values.dim()
    shape[channel_dim] = 3
    mean = torch.tensor(IMAGENET_MEAN, dtype=torch.float32, device=values.device).view(shape)
    std = torch.tensor(IMAGENET_STD, dtype=torch.float32, device=values.device).view(shape)
    return values.div_(255.0).sub_(mean).div_(std)


@cache
def _normalisation_table() -> np.ndarray:
    """(3, 256) float32: each channel's normalised value of every uint8 level (one pass instead of four)."""
    levels = torch.arange(256, dtype=torch.float32).repeat(3, 1)
    return _normalise(levels, channel_dim=0).numpy().copy()


def normalize_frames(frames: np.ndarray | torch.Tensor, out: np.ndarray | None = None) -> torch.Tensor:
    """(T, H, W, 3) uint8 frames -> (T, 3, H, W) float32 normalised with IMAGENET_MEAN / IMAGENET_STD.

    Args:
        frames: the frames, as a numpy array or a tensor.
        out: a C-contiguous float32 (T, 3, H, W) array to write into (a slice of a batch), or
            ``None`` for a new one.
    """
    frames = np.ascontiguousarray(frames.numpy() if isinstance(frames, torch.Tensor) else frames)
    count, height, width = frames.shape[:3]
    if out is None:
        out = np.empty((count, 3, height, width), dtype=np.float32)
    elif out.shape != (count, 3, height, width) or out.dtype != np.float32 or not out.flags.c_contiguous:
        expected = (count, 3, height, width)
        raise ValueError(f"out must be a C-contiguous float32 {expected} array, got {out.dtype} {out.shape}")
    table = _normalisation_table()
    for t in range(count):
        for c, plane in enumerate(cv2.split(frames[t])):
            cv2.LUT(plane, table[c : c + 1], dst=out[t, c])
    return torch.from_numpy(out)


def normalize_batch_frames(frames: torch.Tensor, input_sizes: Sequence[Sequence[int]]) -> torch.Tensor:
    """Normalise a batch of uint8 frames where it is (the device): (B, T, H, W, 3) -> float32 (B, T, 3, H, W).

    The values are :func:`normalize_frames`'. Each clip's padding beyond its ``input_sizes``
    entry (h, w) becomes 0, as the collate function pads normalised frames.
    """
    out = _normalise(frames.permute(0, 1, 4, 2, 3).float(), channel_dim=2)
    for clip, (height, width) in zip(out, input_sizes, strict=True):
        clip[:, :, height:, :] = 0.0
        clip[:, :, :, width:] = 0.0
    return out.contiguous()


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
    """Build the target dict of one frame (docs/ARCHITECTURE.md "Batches") from its panoptic map.

    Instances are the thing-class segments with an instance id > 0 (instance 0 of a thing
    class is crowd: no instance, but its pixels keep their class in ``semantic``). They are
    ordered by panoptic id. Each mask and box is found within the instance's bounding box
    (``scipy.ndimage.find_objects``), not by comparing every instance with the whole map.

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
    divisor = spec.label_divisor
    pan = np.asarray(panoptic, dtype=np.int64)
    if not labelled:
        pan = np.full(pan.shape, spec.ignore_label * divisor, dtype=np.int64)
    semantic = pan // divisor
    is_thing = np.zeros(pan.shape, dtype=bool)
    for thing in spec.thing_ids:  # a thing's instances are the ids thing * divisor + 1 .. + divisor - 1
        is_thing |= (pan > thing * divisor) & (pan < (thing + 1) * divisor)
    ids = np.unique(pan[is_thing])
    masks = np.zeros((len(ids), *pan.shape), dtype=np.uint8)
    boxes = np.zeros((len(ids), 4), dtype=np.float32)
    if len(ids):
        index = np.zeros(pan.shape, dtype=np.int32)
        index[is_thing] = np.searchsorted(ids, pan[is_thing]) + 1
        for k, window in enumerate(ndimage.find_objects(index, max_label=len(ids))):
            rows, cols = window  # every id in `ids` occurs, so no window is None
            masks[k, rows, cols] = index[rows, cols] == k + 1
            boxes[k] = (cols.start, rows.start, cols.stop, rows.stop)
    labels = ids // divisor
    return {
        "boxes": torch.from_numpy(boxes),
        "labels": torch.from_numpy(labels),
        "masks": torch.from_numpy(masks),
        "track_ids": torch.from_numpy(ids - labels * divisor),
        "identities": torch.from_numpy(ids + int(identity_base)),
        "semantic": torch.from_numpy(semantic),
        "panoptic": torch.from_numpy(pan),
    }


def semantic_targets(semantic: np.ndarray) -> dict[str, torch.Tensor]:
    """The target dict of a model that reads only the semantic map: ``semantic`` int64 (H, W)."""
    return {"semantic": torch.from_numpy(np.asarray(semantic, dtype=np.int64))}


def to_panoptic(semantic: np.ndarray, instance: np.ndarray, spec: DatasetSpec) -> np.ndarray:
    """Pack (semantic, instance) maps into an int32 panoptic map; instance ids off thing classes become 0."""
    semantic = semantic.astype(np.int32, copy=False)
    instance = np.where(np.isin(semantic, spec.thing_ids), instance, 0).astype(np.int32)
    return semantic * np.int32(spec.label_divisor) + instance


def remap_semantic(semantic: np.ndarray, lut: Sequence[int] | np.ndarray) -> np.ndarray:
    """Map semantic ids through a 256-entry lookup table (``structures.specs.label_lut``)."""
    table = np.asarray(lut, dtype=np.int32)
    return table[np.clip(semantic, 0, len(table) - 1)]
