"""Loaders: read one frame's files with every per-file check, into arrays.

The datasets (:mod:`hvps_lightning.data.datasets`), ``hvps data check`` and the tracker's
ground truth read files through these functions only, so a bad file fails training with
the one line the check prints (``<file>: <what is wrong>``).

Labels come out as int32 ``(semantic, instance)`` maps in the label space of the dataset
spec (MOTS layouts: 0 background, 1 car, 2 pedestrian, 10 ignore region).

Example:
    >>> read_image("/nonexistent.png")
    Traceback (most recent call last):
    ...
    hvps_lightning.errors.HVPSError: /nonexistent.png: file not found
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from hvps_lightning.data.formats.coco_panoptic import to_semantic_instance
from hvps_lightning.data.formats.mots_txt import (
    CAR_CLASS,
    IGNORE_CLASS,
    PEDESTRIAN_CLASS,
    MOTSObject,
    check_no_overlap,
    read_mots_txt,
    rle_to_mask,
)
from hvps_lightning.data.formats.step_png import read_step_png
from hvps_lightning.data.layout import FrameFiles, SequenceFiles
from hvps_lightning.data.specs import DatasetSpec
from hvps_lightning.errors import HVPSError

__all__: list[str] = [
    "MOTS_CLASSES",
    "LoadedFrame",
    "check_mots_sizes",
    "check_semantic_ids",
    "load_frame",
    "load_mots_objects",
    "load_sequence_mots",
    "mots_labels",
    "read_coco_labels",
    "read_image",
    "read_step_labels",
]

#: MOTS class ids a MOTS txt file may use.
MOTS_CLASSES = {CAR_CLASS: "car", PEDESTRIAN_CLASS: "pedestrian", IGNORE_CLASS: "ignore"}


def read_image(path: str | Path) -> np.ndarray:
    """Read an image fully (so truncation is detected) as (H, W, 3) uint8 RGB.

    Raises:
        HVPSError: naming the file if it is missing, unreadable or truncated.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, not in a worker later
            return np.asarray(image.convert("RGB"))
    except FileNotFoundError:
        raise HVPSError(f"{path}: file not found") from None
    except UnidentifiedImageError:
        raise HVPSError(f"{path}: not a readable image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise HVPSError(f"{path}: unreadable or truncated image ({exc})") from None


def _size_text(shape: Sequence[int]) -> str:
    return f"{shape[1]}x{shape[0]}"


def _check_map_size(path: Path, map_shape: Sequence[int], image_shape: Sequence[int], image: Path) -> None:
    if tuple(map_shape[:2]) != tuple(image_shape[:2]):
        raise HVPSError(
            f"{path}: size {_size_text(map_shape)} differs from its image {image} ({_size_text(image_shape)})"
        )


def check_semantic_ids(path: str | Path, semantic: np.ndarray, spec: DatasetSpec) -> None:
    """Check that every semantic id is a class of ``spec`` or its ignore label.

    Raises:
        HVPSError: ``<path>: semantic ids ... outside ...`` listing the offending ids.
    """
    bad = (semantic >= spec.num_classes) | (semantic < 0)
    if spec.ignore_label >= spec.num_classes or spec.ignore_label < 0:
        bad &= semantic != spec.ignore_label
    if bad.any():
        ids = ", ".join(str(int(v)) for v in np.unique(semantic[bad])[:10])
        raise HVPSError(
            f"{path}: semantic ids {ids} outside the {spec.num_classes} classes of {spec.name} "
            f"(0..{spec.num_classes - 1}, or {spec.ignore_label} for void)"
        )


def read_step_labels(
    path: str | Path, spec: DatasetSpec, image_shape: Sequence[int], image: str | Path = "the image"
) -> tuple[np.ndarray, np.ndarray]:
    """Read a STEP panoptic map and check it against its image and the spec.

    Returns:
        int32 ``(semantic, instance)`` maps.

    Raises:
        HVPSError: naming the map if it is unreadable, its size differs from the image's, a
            semantic id is outside the spec, or an instance id does not fit the label divisor.
    """
    path = Path(path)
    semantic, instance = read_step_png(path)
    _check_map_size(path, semantic.shape, image_shape, Path(image))
    check_semantic_ids(path, semantic, spec)
    if instance.size and int(instance.max()) >= spec.label_divisor:
        raise HVPSError(
            f"{path}: instance id {int(instance.max())} does not fit the label divisor {spec.label_divisor}"
        )
    return semantic, instance


def read_coco_labels(
    sequence: SequenceFiles, frame: FrameFiles, spec: DatasetSpec, image_shape: Sequence[int]
) -> tuple[np.ndarray, np.ndarray]:
    """Read the COCO panoptic PNG of a frame into checked ``(semantic, instance)`` maps.

    Raises:
        HVPSError: naming the PNG if it is unreadable, its size differs from its image (or the
            JSON), or it holds segment ids without a ``segments_info`` entry.
    """
    assert frame.coco is not None and frame.label is not None
    from hvps_lightning.data.formats.coco_panoptic import read_panoptic_png

    ids = read_panoptic_png(frame.label)
    _check_map_size(frame.label, ids.shape, image_shape, frame.image)
    if ids.shape != (frame.coco.height, frame.coco.width):
        raise HVPSError(
            f"{frame.label}: size {_size_text(ids.shape)} differs from the JSON's "
            f"{frame.coco.width}x{frame.coco.height}"
        )
    known = {seg.id for seg in frame.coco.segments}
    present = np.unique(ids)
    unknown = [int(v) for v in present if v != 0 and int(v) not in known]
    if unknown:
        listed = ", ".join(str(v) for v in unknown[:10])
        raise HVPSError(f"{frame.label}: segment ids {listed} have no segments_info entry in the JSON")
    semantic, instance = to_semantic_instance(
        ids, frame.coco.segments, sequence.class_of_category or {}, spec.thing_ids, spec.ignore_label
    )
    check_semantic_ids(frame.label, semantic, spec)
    return semantic, instance


def load_mots_objects(path: str | Path) -> dict[int, list[MOTSObject]]:
    """Read and validate a MOTS txt file; return its objects by frame number.

    Raises:
        HVPSError: naming the file for a malformed line, an unknown class, a repeated id in a
            frame, masks of different sizes, or overlapping masks (an object over an ignore
            region included).
    """
    path = Path(path)
    objects = read_mots_txt(path)
    for obj in objects:
        if obj.class_id not in MOTS_CLASSES:
            raise HVPSError(
                f"{path}: frame {obj.frame}: id {obj.obj_id} has class {obj.class_id}, "
                f"not 1 (car), 2 (pedestrian) or 10 (ignore)"
            )
    check_no_overlap(objects, path)
    by_frame: dict[int, list[MOTSObject]] = defaultdict(list)
    for obj in objects:
        by_frame[obj.frame].append(obj)
    return dict(by_frame)


def load_sequence_mots(sequence: SequenceFiles) -> dict[int, list[MOTSObject]]:
    """Read and validate the MOTS txt file of a sequence against its frames.

    Raises:
        HVPSError: as :func:`load_mots_objects`, or when the file names frames without an image.
    """
    if sequence.mots_txt is None:
        return {}
    objects = load_mots_objects(sequence.mots_txt)
    stray = sorted(set(objects) - {f.number for f in sequence.frames})
    if stray:
        frames_text = ", ".join(map(str, stray[:8])) + (" ..." if len(stray) > 8 else "")
        raise HVPSError(f"{sequence.mots_txt}: frames {frames_text} have no image in {sequence.directory}")
    return objects


def check_mots_sizes(
    objects: Iterable[MOTSObject], image_shape: Sequence[int], path: str | Path, frame: int, image: str | Path
) -> None:
    """Check that every mask of a frame has the size of the frame's image.

    Raises:
        HVPSError: ``<MOTS file>: frame F: mask size ... differs from its image ...``.
    """
    height, width = int(image_shape[0]), int(image_shape[1])
    for obj in objects:
        if (obj.height, obj.width) != (height, width):
            raise HVPSError(
                f"{path}: frame {frame}: mask size {obj.width}x{obj.height} of id {obj.obj_id} "
                f"differs from its image {image} ({width}x{height})"
            )


def mots_labels(
    objects: Sequence[MOTSObject],
    image_shape: Sequence[int],
    path: str | Path,
    frame: int,
    image: str | Path = "the image",
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise the MOTS objects of one frame into int32 ``(semantic, instance)`` maps.

    Semantic ids are the MOTS class ids (0 background, 1 car, 2 pedestrian), ignore regions
    get 10 (the ``mots`` spec's ignore label); instance = id % 1000.

    Raises:
        HVPSError: naming the MOTS file if a mask's size differs from the frame's image.
    """
    check_mots_sizes(objects, image_shape, path, frame, image)
    height, width = int(image_shape[0]), int(image_shape[1])
    semantic = np.zeros((height, width), dtype=np.int32)
    instance = np.zeros((height, width), dtype=np.int32)
    for obj in objects:
        mask = rle_to_mask(obj.rle).astype(bool)
        if obj.class_id == IGNORE_CLASS:
            semantic[mask] = IGNORE_CLASS
            continue
        semantic[mask] = obj.class_id
        instance[mask] = obj.obj_id % 1000
    return semantic, instance


@dataclass
class LoadedFrame:
    """An image and its checked labels in the source dataset's label space."""

    image: np.ndarray
    semantic: np.ndarray | None
    instance: np.ndarray | None


def load_frame(
    spec: DatasetSpec,
    sequence: SequenceFiles,
    frame: FrameFiles,
    mots_objects: Mapping[int, Sequence[MOTSObject]] | None = None,
    with_labels: bool = True,
) -> LoadedFrame:
    """Read a frame's image and (when ``with_labels``) its labels, running every per-file check.

    Labels are int32 ``(semantic, instance)`` maps in the label space of ``spec`` (MOTS
    layouts: 0 background, 1 car, 2 pedestrian, 10 ignore region). Unlabelled frames get
    ``None`` labels.

    Raises:
        HVPSError: with the same one-line message ``hvps data check`` prints for this file.
    """
    image = read_image(frame.image)
    if not with_labels or not sequence.labelled:
        return LoadedFrame(image, None, None)
    if sequence.mots_txt is not None and spec.layout == "mots":
        if frame.number is None:
            raise HVPSError(f"{frame.image}: frame file names must be frame numbers")
        objects = (mots_objects or {}).get(frame.number, ())
        semantic, instance = mots_labels(objects, image.shape, sequence.mots_txt, frame.number, frame.image)
        return LoadedFrame(image, semantic, instance)
    if frame.coco is not None:
        semantic, instance = read_coco_labels(sequence, frame, spec, image.shape)
        return LoadedFrame(image, semantic, instance)
    if frame.label is None:
        return LoadedFrame(image, None, None)
    semantic, instance = read_step_labels(frame.label, spec, image.shape, frame.image)
    return LoadedFrame(image, semantic, instance)

