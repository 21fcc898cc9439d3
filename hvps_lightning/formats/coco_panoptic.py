"""COCO panoptic format: a JSON file of segments plus one PNG of segment ids per image.

A PNG pixel holds its segment id as ``id = R + 256 G + 256^2 B`` (0 = unlabelled / void);
the JSON lists, per image, every segment's ``id``, ``category_id``, ``iscrowd``, ``area`` and
``bbox`` (x, y, width, height). The KITTI panoptic release (EfficientPS) uses this format
with Cityscapes categories (``id`` = Cityscapes label id, ``name``, ``isthing``) and the
Cityscapes-panoptic segment ids (``label id`` for stuff and crowd regions, ``label id * 1000 +
k`` for instances); see ``data/README.md``.

Example:
    >>> import numpy as np
    >>> id_to_rgb(np.array([26001])).tolist()
    [[145, 101, 0]]
    >>> int(rgb_to_id(np.array([145, 101, 0], dtype=np.uint8)))
    26001
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hvps_lightning.errors import HVPSError, file_error
from hvps_lightning.formats.png import read_png, write_png
from hvps_lightning.io import read_json_file, write_json

#: segment ids must fit in three 8-bit channels.
MAX_SEGMENT_ID = 256**3 - 1

#: Where the KITTI panoptic release (EfficientPS, http://panoptic.cs.uni-freiburg.de) keeps a
#: split (``training`` / ``validation``): images, the COCO panoptic JSON and its PNGs; the
#: EfficientPS converter reads ``<split>/images`` and ``<split>/annotations``.
COCO_PANOPTIC_LAYOUT = {
    "images": "{folder}/images",
    "json": "{folder}/annotations.json",
    "png_dir": "{folder}/annotations",
}


def rgb_to_id(rgb: np.ndarray) -> np.ndarray:
    """Convert (..., 3) RGB values to segment ids ``R + 256 G + 256^2 B`` (int64, shape (...))."""
    rgb = np.asarray(rgb)
    if rgb.shape[-1] != 3:
        raise ValueError(f"rgb_to_id needs (..., 3) values, got {rgb.shape}")
    rgb = rgb.astype(np.int64)
    return rgb[..., 0] + 256 * rgb[..., 1] + 256 * 256 * rgb[..., 2]


def id_to_rgb(ids: np.ndarray | int) -> np.ndarray:
    """Convert segment ids (0..256^3 - 1) to (..., 3) uint8 RGB values."""
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() > MAX_SEGMENT_ID):
        raise ValueError(f"segment ids must lie in 0..{MAX_SEGMENT_ID}")
    rgb = np.empty((*ids.shape, 3), dtype=np.uint8)
    rgb[..., 0] = ids % 256
    rgb[..., 1] = (ids // 256) % 256
    rgb[..., 2] = ids // (256 * 256)
    return rgb


@dataclass
class PanopticSegment:
    """One segment of a COCO panoptic annotation.

    Attributes:
        id: the segment id as stored in the PNG.
        category_id: the JSON category of the segment.
        area: number of pixels.
        bbox: ``[x, y, width, height]`` of the segment.
        iscrowd: 1 for a crowd region of a thing class.
    """

    id: int
    category_id: int
    area: int = 0
    bbox: list[int] = field(default_factory=lambda: [0, 0, 0, 0])
    iscrowd: int = 0

    def to_json(self) -> dict[str, Any]:
        """The ``segments_info`` entry of this segment."""
        return {
            "id": self.id,
            "category_id": self.category_id,
            "area": self.area,
            "bbox": list(self.bbox),
            "iscrowd": self.iscrowd,
        }


@dataclass
class PanopticImage:
    """One image of a COCO panoptic dataset and its annotation.

    Attributes:
        image_id: the JSON image id (int or str, as in the file).
        file_name: the image file name (relative to the image folder).
        height: image height.
        width: image width.
        annotation_file: the PNG file name (relative to the PNG folder).
        segments: the segments of the annotation.
    """

    image_id: int | str
    file_name: str
    height: int
    width: int
    annotation_file: str
    segments: list[PanopticSegment] = field(default_factory=list)


@dataclass
class CocoPanoptic:
    """A COCO panoptic JSON with the folder of its PNGs; PNGs are read on demand.

    Attributes:
        json_path: the JSON file.
        png_dir: the folder holding the annotation PNGs.
        images: the annotated images, in file order.
        categories: the JSON categories (dicts with at least ``id`` and ``name``).
    """

    json_path: Path
    png_dir: Path
    images: list[PanopticImage]
    categories: list[dict[str, Any]]

    def read_ids(self, image: PanopticImage) -> np.ndarray:
        """Read the segment-id map of ``image`` (int64, H x W), checking its size against the JSON.

        Raises:
            HVPSError: naming the PNG if it is unreadable or its size differs from the JSON.
        """
        path = self.png_dir / image.annotation_file
        ids = read_panoptic_png(path)
        if ids.shape != (image.height, image.width):
            raise file_error(
                path,
                f"size {ids.shape[1]}x{ids.shape[0]} differs from the JSON's {image.width}x{image.height}",
            )
        return ids


def read_panoptic_png(path: str | Path) -> np.ndarray:
    """Read a COCO panoptic PNG into segment ids (int64, H x W).

    Raises:
        HVPSError: naming the file if it is missing, unreadable, truncated or not an RGB PNG.
    """
    return rgb_to_id(read_png(path, mode="RGB"))


def write_panoptic_png(path: str | Path, ids: np.ndarray) -> None:
    """Write segment ids (H x W) as a COCO panoptic PNG (temporary name, then rename)."""
    write_png(path, id_to_rgb(ids))


def segments_from_ids(
    ids: np.ndarray, category_of: Mapping[int, int], crowd_ids: Iterable[int] = ()
) -> list[PanopticSegment]:
    """Build the segments of an id map: area and bbox of every non-zero id, in increasing id order.

    Args:
        ids: the segment-id map (0 = void).
        category_of: segment id -> category id (every non-zero id in ``ids`` needs one).
        crowd_ids: segment ids that are crowd regions.
    """
    crowd = set(crowd_ids)
    values, inverse, counts = np.unique(ids.reshape(-1), return_inverse=True, return_counts=True)
    inverse = inverse.reshape(ids.shape)
    rows = np.arange(ids.shape[0])
    cols = np.arange(ids.shape[1])
    segments = []
    for index, (value, count) in enumerate(zip(values.tolist(), counts.tolist(), strict=True)):
        if value == 0:
            continue
        mask = inverse == index
        ys = rows[mask.any(axis=1)]
        xs = cols[mask.any(axis=0)]
        bbox = [int(xs[0]), int(ys[0]), int(xs[-1] - xs[0] + 1), int(ys[-1] - ys[0] + 1)]
        segments.append(
            PanopticSegment(int(value), int(category_of[value]), int(count), bbox, int(value in crowd))
        )
    return segments


def _int_field(entry: Mapping[str, Any], key: str, where: str, json_path: Path) -> int:
    try:
        return int(entry[key])
    except (KeyError, TypeError, ValueError):
        raise file_error(json_path, f"{where}: missing or non-integer {key!r}") from None


def read_coco_panoptic(json_path: str | Path, png_dir: str | Path) -> CocoPanoptic:
    """Read a COCO panoptic JSON (the PNGs in ``png_dir`` are read later by :meth:`CocoPanoptic.read_ids`).

    Image sizes come from the JSON's ``images`` list; an annotation without an image entry is
    an error.

    Raises:
        HVPSError: naming the JSON if it is missing, not JSON, or lacks required fields.
    """
    json_path, png_dir = Path(json_path), Path(png_dir)
    data = read_json_file(json_path, missing="file not found", unreadable="not a readable JSON file")
    if not isinstance(data, dict) or not isinstance(data.get("annotations"), list):
        raise file_error(json_path, "not a COCO panoptic file (no 'annotations' list)")
    categories = data.get("categories", [])
    if not isinstance(categories, list) or not all(isinstance(c, dict) and "id" in c for c in categories):
        raise file_error(json_path, "'categories' must be a list of objects with an 'id'")
    image_info: dict[Any, Mapping[str, Any]] = {}
    for entry in data.get("images", []):
        if not isinstance(entry, dict) or "id" not in entry:
            raise file_error(json_path, "an 'images' entry has no 'id'")
        image_info[entry["id"]] = entry
    images = []
    for number, ann in enumerate(data["annotations"]):
        where = f"annotation {number}"
        if not isinstance(ann, dict) or "image_id" not in ann or "file_name" not in ann:
            raise file_error(json_path, f"{where}: needs 'image_id' and 'file_name'")
        info = image_info.get(ann["image_id"])
        if info is None:
            raise file_error(json_path, f"{where}: image_id {ann['image_id']!r} has no 'images' entry")
        segments = []
        for seg in ann.get("segments_info", []):
            bbox = seg.get("bbox", [0, 0, 0, 0]) if isinstance(seg, dict) else None
            if not isinstance(bbox, list) or len(bbox) != 4:
                raise file_error(json_path, f"{where}: a segment's 'bbox' is not [x, y, w, h]")
            segments.append(
                PanopticSegment(
                    id=_int_field(seg, "id", where, json_path),
                    category_id=_int_field(seg, "category_id", where, json_path),
                    area=int(seg.get("area", 0)),
                    bbox=[int(v) for v in bbox],
                    iscrowd=int(seg.get("iscrowd", 0)),
                )
            )
        images.append(
            PanopticImage(
                image_id=ann["image_id"],
                file_name=str(info.get("file_name", Path(ann["file_name"]).with_suffix(".png").name)),
                height=_int_field(info, "height", where, json_path),
                width=_int_field(info, "width", where, json_path),
                annotation_file=str(ann["file_name"]),
                segments=segments,
            )
        )
    return CocoPanoptic(json_path, png_dir, images, list(categories))


def write_coco_panoptic_json(
    json_path: str | Path, images: Sequence[PanopticImage], categories: Sequence[Mapping[str, Any]]
) -> None:
    """Write the COCO panoptic JSON of ``images`` (temporary name, then rename)."""
    write_json(
        json_path,
        {
            "info": {"description": "COCO panoptic annotations", "version": "1.0"},
            "images": [
                {"id": im.image_id, "file_name": im.file_name, "height": im.height, "width": im.width}
                for im in images
            ],
            "annotations": [
                {
                    "image_id": im.image_id,
                    "file_name": im.annotation_file,
                    "segments_info": [s.to_json() for s in im.segments],
                }
                for im in images
            ],
            "categories": [dict(c) for c in categories],
        },
        indent=None,
    )


def write_coco_panoptic(
    json_path: str | Path,
    png_dir: str | Path,
    images: Sequence[PanopticImage],
    id_maps: Sequence[np.ndarray],
    categories: Sequence[Mapping[str, Any]],
) -> None:
    """Write the PNG of every image (``png_dir / image.annotation_file``) and then the JSON.

    Raises:
        HVPSError: if a map's size differs from its image entry or a segment id is missing from it.
    """
    if len(images) != len(id_maps):
        raise HVPSError(f"{json_path}: {len(images)} images but {len(id_maps)} id maps")
    png_dir = Path(png_dir)
    for image, ids in zip(images, id_maps, strict=True):
        if ids.shape != (image.height, image.width):
            raise HVPSError(f"{png_dir / image.annotation_file}: map {ids.shape} differs from the image size")
        write_panoptic_png(png_dir / image.annotation_file, ids)
    write_coco_panoptic_json(json_path, images, categories)


def category_to_class(
    categories: Sequence[Mapping[str, Any]], class_names: Sequence[str], ignore_label: int = 255
) -> dict[int, int]:
    """Map JSON category ids to class ids of a spec by class name (unknown names -> ``ignore_label``).

    Matching by name makes Cityscapes label ids (the KITTI panoptic release) and train ids
    (converted copies) both land on the 19 Cityscapes classes.
    """
    index = {name: i for i, name in enumerate(class_names)}
    return {int(c["id"]): index.get(str(c.get("name", "")), ignore_label) for c in categories}


def to_semantic_instance(
    ids: np.ndarray,
    segments: Sequence[PanopticSegment],
    class_of_category: Mapping[int, int],
    thing_ids: Iterable[int],
    ignore_label: int = 255,
) -> tuple[np.ndarray, np.ndarray]:
    """Convert a segment-id map into int32 ``(semantic, instance)`` maps.

    Thing segments that are not crowd get instance ids 1, 2, ... in ``segments`` order; stuff
    and crowd get 0; pixels of unknown segments or unmapped categories are ``ignore_label``.
    """
    things = set(thing_ids)
    semantic = np.full(ids.shape, ignore_label, dtype=np.int32)
    instance = np.zeros(ids.shape, dtype=np.int32)
    next_instance = 1
    for seg in segments:
        mask = ids == seg.id
        class_id = class_of_category.get(seg.category_id, ignore_label)
        semantic[mask] = class_id
        if class_id in things and not seg.iscrowd:
            instance[mask] = next_instance
            next_instance += 1
    return semantic, instance
