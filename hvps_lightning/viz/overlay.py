"""Overlays: tracked objects or STEP panoptic maps drawn over the frame.

Things are coloured by track id (:func:`~hvps_lightning.viz.colors.track_color`, stable across
frames), stuff by the dataset's class colours; void stays the image. Segment boundaries are
drawn in white, and each track id is written at the top-left of its mask.

Example:
    >>> import numpy as np
    >>> semantic = np.zeros((4, 6), np.int32); semantic[1:3, 2:4] = 4
    >>> instance = np.where(semantic == 4, 7, 0)
    >>> colorize_panoptic(semantic, instance, "motchallenge_step")[1, 2].tolist() == list(track_color(7))
    True
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import cv2
import numpy as np

from hvps_lightning.structures.masks import decode_mask
from hvps_lightning.structures.specs import DatasetSpec, get_spec
from hvps_lightning.viz.colors import class_lut, track_color

_BOUNDARY = np.array([255, 255, 255], np.uint8)


def _as_rgb(image: np.ndarray | None, shape: tuple[int, int]) -> np.ndarray:
    """Return ``image`` as an (H, W, 3) uint8 array of ``shape`` (a grey canvas if ``None``)."""
    if image is None:
        return np.full((*shape, 3), 96, np.uint8)
    image = np.asarray(image)
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] not in (3, 4):
        raise ValueError(f"an image is (H, W), (H, W, 3) or (H, W, 4), got {image.shape}")
    image = image[:, :, :3]
    if image.dtype != np.uint8:
        scale = 255.0 if image.dtype.kind == "f" and image.max(initial=0) <= 1.0 else 1.0
        image = np.clip(image.astype(np.float32) * scale, 0, 255).astype(np.uint8)
    if image.shape[:2] != tuple(shape):
        image = cv2.resize(image, (shape[1], shape[0]), interpolation=cv2.INTER_LINEAR)
    return np.array(image, dtype=np.uint8, order="C", copy=True)  # never draw into the caller's array


def _mask_of(obj: Any) -> np.ndarray:
    mask = getattr(obj, "rle", None)
    if mask is None:
        mask = getattr(obj, "mask", None)
    if isinstance(mask, dict):
        return decode_mask(mask).astype(bool)
    return np.asarray(mask).astype(bool)


def _boundaries(ids: np.ndarray) -> np.ndarray:
    edge = np.zeros(ids.shape, bool)
    edge[:, 1:] |= ids[:, 1:] != ids[:, :-1]
    edge[1:, :] |= ids[1:, :] != ids[:-1, :]
    return edge


def _write_ids(canvas: np.ndarray, ids: np.ndarray, track_ids: Iterable[int]) -> None:
    scale = max(0.3, min(canvas.shape[:2]) / 400)
    thickness = max(1, round(scale * 1.5))
    for track_id in track_ids:
        ys, xs = np.nonzero(ids == track_id)
        if ys.size == 0:
            continue
        origin = (int(xs.min()), int(max(ys.min() - 2, 10 * scale)))
        text = str(track_id)
        cv2.putText(
            canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, (0, 0, 0), thickness + 2, cv2.LINE_AA
        )
        cv2.putText(canvas, text, origin, cv2.FONT_HERSHEY_SIMPLEX, scale, track_color(track_id), thickness,
                    cv2.LINE_AA)  # fmt: skip


def overlay_tracks(
    image: np.ndarray | None,
    objects: Iterable[Any],
    alpha: float = 0.5,
    boundaries: bool = True,
    write_ids: bool = True,
    size: tuple[int, int] | None = None,
) -> np.ndarray:
    """Draw tracked objects (``track_id`` + ``rle`` or ``mask``) over an image.

    Args:
        image: (H, W, 3) RGB or (H, W) grey image, or ``None`` for a grey canvas.
        objects: e.g. the tracker's ``TrackedObject`` s of one frame.
        alpha: opacity of the colours.
        boundaries: draw mask outlines.
        write_ids: write each track id next to its mask.
        size: (H, W) of the canvas when ``image`` is ``None`` and there are no objects.

    Returns:
        An (H, W, 3) uint8 RGB image (masks' size; the image is resized to it if needed).
    """
    objects = list(objects)
    masks = [_mask_of(o) for o in objects]
    shape = masks[0].shape if masks else (size if size is not None else np.asarray(image).shape[:2])
    canvas = _as_rgb(image, tuple(shape))
    ids = np.zeros(shape, np.int64)
    for obj, mask in zip(objects, masks, strict=True):
        ids[mask & (ids == 0)] = int(obj.track_id)
    colored = ids > 0
    if colored.any():
        present = np.unique(ids[colored])
        palette = np.zeros((int(present.max()) + 1, 3), np.uint8)
        for track_id in present:
            palette[track_id] = track_color(int(track_id))
        blend = palette[ids[colored]].astype(np.float32)
        canvas[colored] = (alpha * blend + (1 - alpha) * canvas[colored]).astype(np.uint8)
        if boundaries:
            canvas[_boundaries(ids)] = _BOUNDARY  # ids are 0 off the masks: only mask outlines differ
        if write_ids:
            _write_ids(canvas, ids, present.tolist())
    return canvas


def colorize_panoptic(semantic: np.ndarray, instance: np.ndarray, spec: DatasetSpec | str) -> np.ndarray:
    """Colour a STEP map: things with an instance by track colour, the rest by class (void black)."""
    spec = get_spec(spec)
    semantic = np.asarray(semantic).astype(np.int64)
    instance = np.asarray(instance).astype(np.int64)
    rgb = class_lut(spec)[np.clip(semantic, 0, 255)]
    things = np.isin(semantic, spec.thing_ids) & (instance > 0)
    if things.any():
        for track_id in np.unique(instance[things]).tolist():
            rgb[things & (instance == track_id)] = track_color(track_id)
    return rgb


def overlay_panoptic(
    image: np.ndarray | None,
    semantic: np.ndarray,
    instance: np.ndarray,
    spec: DatasetSpec | str,
    alpha: float = 0.5,
    boundaries: bool = True,
    write_ids: bool = True,
) -> np.ndarray:
    """Blend a coloured STEP map over an image (void pixels keep the image).

    Returns:
        An (H, W, 3) uint8 RGB image of the map's size.
    """
    spec = get_spec(spec)
    semantic = np.asarray(semantic).astype(np.int64)
    instance = np.asarray(instance).astype(np.int64)
    canvas = _as_rgb(image, semantic.shape)
    colors = colorize_panoptic(semantic, instance, spec).astype(np.float32)
    valid = semantic != spec.ignore_label
    canvas[valid] = (alpha * colors[valid] + (1 - alpha) * canvas[valid]).astype(np.uint8)
    if boundaries:
        canvas[_boundaries(semantic * spec.label_divisor + instance)] = _BOUNDARY
    if write_ids:
        things = np.isin(semantic, spec.thing_ids) & (instance > 0)
        ids = np.where(things, instance, 0)
        _write_ids(canvas, ids, np.unique(ids[things]).tolist())
    return canvas
