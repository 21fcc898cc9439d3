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

import io
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from hvps_lightning.data.layout import FrameFiles, SequenceFiles
from hvps_lightning.errors import HVPSError
from hvps_lightning.formats import read_png
from hvps_lightning.formats.coco_panoptic import to_semantic_instance
from hvps_lightning.formats.mots_txt import (
    CAR_CLASS,
    ID_DIVISOR,
    IGNORE_CLASS,
    PEDESTRIAN_CLASS,
    MOTSObject,
    check_no_overlap,
    read_mots_txt,
)
from hvps_lightning.formats.step_png import decode_step
from hvps_lightning.structures.masks import decode_mask
from hvps_lightning.structures.specs import DatasetSpec

__all__: list[str] = [
    "MOTS_CLASSES",
    "DecodedImage",
    "LoadedFrame",
    "check_mots_sizes",
    "check_semantic_ids",
    "decode_image",
    "load_frame",
    "load_mots_objects",
    "load_sequence_mots",
    "mots_labels",
    "read_coco_labels",
    "read_image",
    "read_step_labels",
    "reduction_factor",
    "resize_to",
]

#: MOTS class ids a MOTS txt file may use.
MOTS_CLASSES = {CAR_CLASS: "car", PEDESTRIAN_CLASS: "pedestrian", IGNORE_CLASS: "ignore"}


@dataclass(frozen=True)
class DecodedImage:
    """A decoded image and the size of the file it came from.

    Attributes:
        pixels: (h, w, 3) uint8 RGB; smaller than ``size`` after a reduced JPEG decode.
        size: the (height, width) the file holds.
    """

    pixels: np.ndarray
    size: tuple[int, int]


#: first bytes of PNG and JPEG files, and the last chunk of a complete PNG (IEND and its CRC).
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"
_JPEG_SIGNATURE = b"\xff\xd8\xff"
#: OpenCV decodes straight into RGB where it can (4.10+); EXIF orientation is ignored, as by PIL
#: and by the annotations, which are drawn on the stored pixels.
_RGB_FLAG = getattr(cv2, "IMREAD_COLOR_RGB", None)
_DECODE_FLAGS = (cv2.IMREAD_COLOR if _RGB_FLAG is None else _RGB_FLAG) | cv2.IMREAD_IGNORE_ORIENTATION
#: a reduced JPEG decode may come out this much smaller than the size asked for (then resized up
#: to it): 1080p / 2 = 540 rows serve a 544-row input.
REDUCED_DECODE_TOLERANCE = 0.01


def reduction_factor(size: Sequence[int], min_size: Sequence[int]) -> int:
    """The largest JPEG decode reduction (1, 2, 4 or 8) whose output still covers ``min_size``.

    "Covers" allows :data:`REDUCED_DECODE_TOLERANCE` less than ``min_size`` per side.

    Example:
        >>> reduction_factor((1080, 1920), (544, 960)), reduction_factor((1080, 1920), (800, 960))
        (2, 1)
    """
    height, width = int(size[0]), int(size[1])
    min_h, min_w = (float(v) * (1.0 - REDUCED_DECODE_TOLERANCE) for v in min_size)
    for factor in (8, 4, 2):
        if -(-height // factor) >= min_h and -(-width // factor) >= min_w:
            return factor
    return 1


def decode_image(path: str | Path, min_size: Sequence[int] | None = None) -> DecodedImage:
    """Read an image file fully (so truncation is detected) as uint8 RGB, whatever its bit depth.

    Images with 16 bits per channel are scaled to 8 bits (``value >> 8``); grey, palette and
    1-bit images are expanded to RGB; an alpha channel is dropped. JPEG files are decoded at 1/2,
    1/4 or 1/8 of their size (libjpeg's DCT scaling) when ``min_size`` allows it
    (:func:`reduction_factor`); :attr:`DecodedImage.size` is always the file's own size.

    Args:
        path: the image file.
        min_size: the (height, width) the caller will resize the image to, if it allows a
            reduced decode; ``None`` decodes at full size.

    Raises:
        HVPSError: naming the file if it is missing, unreadable, truncated or has 32-bit samples.
    """
    path = Path(path)
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise HVPSError(f"{path}: file not found") from None
    except OSError as exc:
        raise HVPSError(f"{path}: unreadable or truncated image ({exc})") from None
    jpeg = data.startswith(_JPEG_SIGNATURE)
    if jpeg and min_size is not None:
        reduced = _decode_jpeg_reduced(path, data, min_size)
        if reduced is not None:
            return reduced
    # OpenCV decodes PNG and JPEG fastest; a PNG cut short goes to PIL, which names the problem
    # (libpng would print its own complaint on stderr first).
    if jpeg or (data.startswith(_PNG_SIGNATURE) and data.endswith(_PNG_END)):
        pixels = cv2.imdecode(np.frombuffer(data, np.uint8), _DECODE_FLAGS)
        if pixels is not None and pixels.ndim == 3 and pixels.shape[2] == 3:
            if _RGB_FLAG is None:
                pixels = cv2.cvtColor(pixels, cv2.COLOR_BGR2RGB)
            return DecodedImage(pixels, (int(pixels.shape[0]), int(pixels.shape[1])))
    return _decode_with_pil(path, data)


def read_image(path: str | Path) -> np.ndarray:
    """Read an image file at full size as (H, W, 3) uint8 RGB (see :func:`decode_image`).

    Raises:
        HVPSError: naming the file if it is missing, unreadable or truncated.
    """
    return decode_image(path).pixels


def _decode_jpeg_reduced(path: Path, data: bytes, min_size: Sequence[int]) -> DecodedImage | None:
    """Decode a JPEG at a reduced size with PIL's ``draft``; ``None`` when no reduction applies."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            size = (int(image.height), int(image.width))
            factor = reduction_factor(size, min_size)
            if factor == 1 or image.format != "JPEG":
                return None
            image.draft("RGB", (-(-size[1] // factor), -(-size[0] // factor)))
            image.load()  # decode now: a truncated file fails here, not in a worker later
            return DecodedImage(_pil_rgb(path, image), size)
    except UnidentifiedImageError:
        raise HVPSError(f"{path}: not a readable image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise HVPSError(f"{path}: unreadable or truncated image ({exc})") from None


def _decode_with_pil(path: Path, data: bytes) -> DecodedImage:
    """Decode what OpenCV did not (other formats, damaged files: PIL's message names the problem)."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            return DecodedImage(_pil_rgb(path, image), (int(image.height), int(image.width)))
    except UnidentifiedImageError:
        raise HVPSError(f"{path}: not a readable image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise HVPSError(f"{path}: unreadable or truncated image ({exc})") from None


def _pil_rgb(path: Path, image: Image.Image) -> np.ndarray:
    """A loaded PIL image as uint8 RGB: 16-bit grey scaled to 8 bits, 32-bit samples refused."""
    if image.mode.startswith("I;16"):
        grey = (np.asarray(image).astype(np.uint16) >> 8).astype(np.uint8)
        return np.ascontiguousarray(np.repeat(grey[:, :, None], 3, axis=2))
    if image.mode in ("I", "F"):
        raise HVPSError(
            f"{path}: image with 32-bit samples (PIL mode {image.mode}); "
            "save it with 8 or 16 bits per channel"
        )
    return np.asarray(image.convert("RGB"))


def resize_to(array: np.ndarray, size: Sequence[int] | None, nearest: bool = False) -> np.ndarray:
    """Resize an image (bilinear) or a label map (``nearest``) to (height, width); as is if equal or ``None``.

    The one resize of frames and labels: OpenCV's, which albumentations' ``Resize`` also calls.
    """
    if size is None or tuple(array.shape[:2]) == (int(size[0]), int(size[1])):
        return array
    interpolation = cv2.INTER_NEAREST if nearest else cv2.INTER_LINEAR
    return cv2.resize(array, (int(size[1]), int(size[0])), interpolation=interpolation)


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
    _check_class_ids(path, np.unique(semantic), spec)


def _check_class_ids(path: str | Path, present: np.ndarray, spec: DatasetSpec) -> None:
    """:func:`check_semantic_ids` on the sorted ids present in a map."""
    bad = (present >= spec.num_classes) | (present < 0)
    if spec.ignore_label >= spec.num_classes or spec.ignore_label < 0:
        bad &= present != spec.ignore_label
    if bad.any():
        ids = ", ".join(str(int(v)) for v in present[bad][:10])
        raise HVPSError(
            f"{path}: semantic ids {ids} outside the {spec.num_classes} classes of {spec.name} "
            f"(0..{spec.num_classes - 1}, or {spec.ignore_label} for void)"
        )


def read_step_labels(
    path: str | Path,
    spec: DatasetSpec,
    image_shape: Sequence[int],
    image: str | Path = "the image",
    size: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read a STEP panoptic map and check it against its image and the spec.

    The checks run on the whole map; the map is then resized (nearest) to ``size`` before it is
    unpacked, which gives the same maps as unpacking first, on fewer pixels.

    Args:
        path: the STEP PNG.
        spec: the dataset spec its classes belong to.
        image_shape: the (height, width) of its image file.
        image: the image file, for messages.
        size: the (height, width) to return the maps at; ``None``: the map's own.

    Returns:
        int32 ``(semantic, instance)`` maps.

    Raises:
        HVPSError: naming the map if it is unreadable, its size differs from the image's, a
            semantic id is outside the spec, or an instance id does not fit the label divisor.
    """
    path = Path(path)
    rgb = read_png(path, mode="RGB")
    _check_map_size(path, rgb.shape, image_shape, Path(image))
    _check_class_ids(path, _channel_values(rgb, 0), spec)
    _check_instance_ids(path, rgb, spec.label_divisor)
    return decode_step(resize_to(rgb, size, nearest=True))


def _channel_values(rgb: np.ndarray, channel: int) -> np.ndarray:
    """The sorted values present in one channel of a uint8 image (a histogram: one pass, no copy)."""
    histogram = cv2.calcHist([rgb], [channel], None, [256], [0, 256])
    return np.flatnonzero(histogram.ravel())


def _check_instance_ids(path: Path, rgb: np.ndarray, divisor: int) -> None:
    """Check that the instance ids of a STEP map (G * 256 + B) are below the label divisor."""
    high = _channel_values(rgb, 1)
    if not high.size or int(high[-1]) * 256 + 255 < divisor:  # no id can reach it: skip the sum
        return
    largest = int((rgb[..., 1].astype(np.int32) * 256 + rgb[..., 2]).max())
    if largest >= divisor:
        raise HVPSError(f"{path}: instance id {largest} does not fit the label divisor {divisor}")


def read_coco_labels(
    sequence: SequenceFiles,
    frame: FrameFiles,
    spec: DatasetSpec,
    image_shape: Sequence[int],
    size: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Read the COCO panoptic PNG of a frame into checked ``(semantic, instance)`` maps.

    ``size``: the (height, width) to return the maps at (nearest); ``None``: the PNG's own.

    Raises:
        HVPSError: naming the PNG if it is unreadable, its size differs from its image (or the
            JSON), or it holds segment ids without a ``segments_info`` entry.
    """
    assert frame.coco is not None and frame.label is not None
    from hvps_lightning.formats.coco_panoptic import read_panoptic_png

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
    return resize_to(semantic, size, nearest=True), resize_to(instance, size, nearest=True)


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
    size: Sequence[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Rasterise the MOTS objects of one frame into int32 ``(semantic, instance)`` maps.

    Semantic ids are the MOTS class ids (0 background, 1 car, 2 pedestrian), ignore regions
    get 10 (the ``mots`` spec's ignore label); instance = ``id % 1000 + 1``: KITTI-MOTS numbers
    the objects of a class from 0 (ids 1000, 2000), and instance 0 means "no instance" (crowd)
    in a panoptic map. ``size``: the (height, width) to return the maps at (nearest); ``None``:
    the image's.

    Raises:
        HVPSError: naming the MOTS file if a mask's size differs from the frame's image, or an
            object number (``id % 1000``) is 999, whose instance would not fit the divisor.
    """
    check_mots_sizes(objects, image_shape, path, frame, image)
    for obj in objects:
        if obj.class_id != IGNORE_CLASS and obj.obj_id % ID_DIVISOR + 1 >= ID_DIVISOR:
            raise HVPSError(
                f"{path}: frame {frame}: id {obj.obj_id}: object numbers (id % {ID_DIVISOR}) must lie in "
                f"0..{ID_DIVISOR - 2}"
            )
    height, width = int(image_shape[0]), int(image_shape[1])
    semantic = np.zeros((height, width), dtype=np.int32)
    instance = np.zeros((height, width), dtype=np.int32)
    for obj in objects:
        mask = decode_mask(obj.rle).view(bool)
        if obj.class_id == IGNORE_CLASS:
            np.copyto(semantic, IGNORE_CLASS, where=mask)
            continue
        np.copyto(semantic, obj.class_id, where=mask)
        np.copyto(instance, obj.obj_id % ID_DIVISOR + 1, where=mask)
    return resize_to(semantic, size, nearest=True), resize_to(instance, size, nearest=True)


@dataclass
class LoadedFrame:
    """An image and its checked labels in the source dataset's label space.

    Attributes:
        image: (H, W, 3) uint8 RGB, at the size asked for.
        semantic: int32 (H, W) semantic map, ``None`` without labels.
        instance: int32 (H, W) instance map, ``None`` without labels.
        size: the (height, width) of the image file.
    """

    image: np.ndarray
    semantic: np.ndarray | None
    instance: np.ndarray | None
    size: tuple[int, int]


def load_frame(
    spec: DatasetSpec,
    sequence: SequenceFiles,
    frame: FrameFiles,
    mots_objects: Mapping[int, Sequence[MOTSObject]] | None = None,
    with_labels: bool = True,
    size: Sequence[int] | None = None,
    image: DecodedImage | None = None,
) -> LoadedFrame:
    """Read a frame's image and (when ``with_labels``) its labels, running every per-file check.

    Labels are int32 ``(semantic, instance)`` maps in the label space of ``spec`` (MOTS
    layouts: 0 background, 1 car, 2 pedestrian, 10 ignore region). Unlabelled frames get
    ``None`` labels. Every check runs on the files at their own size, whatever ``size``.

    Args:
        spec: the dataset spec of the root.
        sequence: the frame's sequence (from :func:`hvps_lightning.data.layout.scan_root`).
        frame: the frame.
        mots_objects: the sequence's MOTS objects by frame number (MOTS layouts).
        with_labels: read the labels too.
        size: (height, width) to resize the image (bilinear) and labels (nearest) to;
            ``None``: the image's own size.
        image: the frame's image, already decoded (e.g. at a reduced size by
            :func:`decode_image`); ``None`` decodes it whole here.

    Raises:
        HVPSError: with the same one-line message ``hvps data check`` prints for this file.
    """
    decoded = image if image is not None else decode_image(frame.image)
    pixels, full = resize_to(decoded.pixels, size), decoded.size
    if not with_labels or not sequence.labelled:
        return LoadedFrame(pixels, None, None, full)
    if sequence.mots_txt is not None and spec.layout == "mots":
        if frame.number is None:
            raise HVPSError(f"{frame.image}: frame file names must be frame numbers")
        objects = (mots_objects or {}).get(frame.number, ())
        semantic, instance = mots_labels(objects, full, sequence.mots_txt, frame.number, frame.image, size)
        return LoadedFrame(pixels, semantic, instance, full)
    if frame.coco is not None:
        semantic, instance = read_coco_labels(sequence, frame, spec, full, size)
        return LoadedFrame(pixels, semantic, instance, full)
    if frame.label is None:
        return LoadedFrame(pixels, None, None, full)
    semantic, instance = read_step_labels(frame.label, spec, full, frame.image, size)
    return LoadedFrame(pixels, semantic, instance, full)
