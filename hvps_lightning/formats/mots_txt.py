"""MOTS txt ground truth and results (MOTS20, KITTI-MOTS).

One line per object per frame: ``frame id class_id height width rle``, single spaces, where
``rle`` is the pycocotools compressed RLE of the Fortran-ordered mask. The RLE string may
contain backslashes and backticks, so a line is split on spaces at most five times and the
RLE is never unescaped. Ids are ``class_id * 1000 + k`` (1 car, 2 pedestrian); id 10000 with
class 10 marks an ignore region. Masks of one frame never overlap.

Example:
    >>> import numpy as np
    >>> mask = np.zeros((4, 5), dtype=np.uint8); mask[1:3, 2:4] = 1
    >>> from hvps_lightning.structures.masks import decode_mask, encode_mask
    >>> obj = MOTSObject(frame=1, obj_id=2001, class_id=2, rle=encode_mask(mask))
    >>> obj.rle["size"], int(decode_mask(obj.rle).sum())
    ([4, 5], 4)
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hvps_lightning.errors import HVPSError, file_error
from hvps_lightning.io import atomic_open, read_text_file
from hvps_lightning.structures.masks import check_rle, decode_mask, from_coco, mask_areas, merge_masks

#: MOTS class ids.
CAR_CLASS = 1
PEDESTRIAN_CLASS = 2
IGNORE_CLASS = 10
IGNORE_ID = 10000
#: the evaluated MOTS classes by name (TrackEval's class names; ``--classes car pedestrian``)
MOTS_CLASS_NAMES = {CAR_CLASS: "car", PEDESTRIAN_CLASS: "pedestrian"}
#: ids are class_id * ID_DIVISOR + k.
ID_DIVISOR = 1000


@dataclass
class MOTSObject:
    """One object (or ignore region) in one frame of a MOTS txt file.

    Attributes:
        frame: frame number as written in the file (MOTS20 counts from 1, KITTI-MOTS from 0).
        obj_id: ``class_id * 1000 + k``; 10000 for an ignore region.
        class_id: 1 car, 2 pedestrian, 10 ignore.
        rle: ``{"size": [height, width], "counts": str}`` (pycocotools compressed RLE).
    """

    frame: int
    obj_id: int
    class_id: int
    rle: dict[str, Any]

    @property
    def is_ignore(self) -> bool:
        """Whether this line is an ignore region (class 10 / id 10000)."""
        return self.class_id == IGNORE_CLASS or self.obj_id == IGNORE_ID

    @property
    def height(self) -> int:
        """Mask height in pixels."""
        return int(self.rle["size"][0])

    @property
    def width(self) -> int:
        """Mask width in pixels."""
        return int(self.rle["size"][1])

    def mask(self) -> np.ndarray:
        """Decode the mask (uint8, H x W)."""
        return decode_mask(self.rle)


def read_mots_txt(path: str | Path) -> list[MOTSObject]:
    """Read a MOTS txt file; an empty file is a valid empty sequence.

    Raises:
        HVPSError: naming the file (and line number) if it is missing or a line is malformed.
    """
    path = Path(path)
    text = read_text_file(path, missing="file not found", unreadable="unreadable MOTS txt", encoding="ascii")
    objects: list[MOTSObject] = []
    # Split on "\n" only: str.splitlines would also split on other control characters.
    for number, raw_line in enumerate(text.split("\n"), start=1):
        line = raw_line.rstrip("\r")
        if not line.strip():
            continue
        fields = line.split(" ", 5)
        if len(fields) != 6:
            raise file_error(
                path, f"line {number}: expected 'frame id class_id height width rle', got {line!r}"
            )
        try:
            frame, obj_id, class_id, height, width = (int(v) for v in fields[:5])
        except ValueError:
            raise file_error(
                path, f"line {number}: the first five fields must be integers: {line!r}"
            ) from None
        counts = fields[5]
        if not counts or " " in counts or height <= 0 or width <= 0 or frame < 0 or obj_id < 0:
            raise file_error(path, f"line {number}: malformed object {line!r}")
        rle = {"size": [height, width], "counts": counts}
        problem = check_rle(rle)
        if problem is not None:
            raise file_error(path, f"line {number}: {problem}")
        objects.append(MOTSObject(frame, obj_id, class_id, rle))
    return objects


def write_mots_txt(path: str | Path, objects: Iterable[MOTSObject]) -> None:
    """Write objects as a MOTS txt file, sorted by frame then id (temporary name, then rename)."""
    lines = [mots_line(obj) for obj in sorted(objects, key=lambda o: (o.frame, o.obj_id))]
    with atomic_open(path, "w", encoding="ascii", newline="\n") as handle:
        handle.writelines(lines)


def mots_line(obj: MOTSObject) -> str:
    """One object's line of a MOTS txt file, newline included."""
    rle = from_coco(obj.rle)
    height, width = rle["size"]
    return f"{obj.frame} {obj.obj_id} {obj.class_id} {height} {width} {rle['counts']}\n"


def check_no_overlap(objects: Iterable[MOTSObject], where: str | Path) -> None:
    """Check that within every frame ids are unique, sizes agree and masks do not overlap.

    Ignore regions (id 10000, class 10) may repeat and overlap each other (they form one
    region), but an object over an ignore region is an overlap.

    Args:
        objects: the objects of one sequence.
        where: the file or sequence named in the error message.

    Raises:
        HVPSError: ``<where>: frame F: ...`` for the first problem found.
    """
    by_frame: dict[int, list[MOTSObject]] = defaultdict(list)
    for obj in objects:
        by_frame[obj.frame].append(obj)
    for frame in sorted(by_frame):
        frame_objects = by_frame[frame]
        sizes = {tuple(int(v) for v in o.rle["size"]) for o in frame_objects}
        if len(sizes) > 1:
            raise HVPSError(f"{where}: frame {frame}: masks of different sizes {sorted(sizes)}")
        seen: set[int] = set()
        for obj in frame_objects:
            if obj.is_ignore:
                continue
            if obj.obj_id in seen:
                raise HVPSError(f"{where}: frame {frame}: id {obj.obj_id} appears more than once")
            seen.add(obj.obj_id)
        _check_frame_overlap(frame_objects, where, frame)


def _check_frame_overlap(frame_objects: list[MOTSObject], where: str | Path, frame: int) -> None:
    regular = [o for o in frame_objects if not o.is_ignore]
    ignore = [o for o in frame_objects if o.is_ignore]
    rles = [o.rle for o in regular]
    named = list(regular)
    if ignore:
        rles.append(merge_masks([o.rle for o in ignore]))
        named.append(ignore[0])
    if len(rles) < 2:
        return
    # Cheap test first: the union is smaller than the sum of the areas iff two masks overlap.
    union = int(mask_areas([merge_masks(rles)])[0])
    if union == int(np.sum(mask_areas(rles))):
        return
    for i in range(len(rles)):
        for j in range(i + 1, len(rles)):
            if mask_areas([merge_masks([rles[i], rles[j]], intersect=True)])[0] > 0:
                a, b = named[i], named[j]
                b_name = "the ignore region" if b.is_ignore else f"id {b.obj_id}"
                raise HVPSError(f"{where}: frame {frame}: masks of id {a.obj_id} and {b_name} overlap")
