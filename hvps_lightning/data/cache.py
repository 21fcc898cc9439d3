r"""A pre-resized copy of a dataset root (``hvps data cache``), in the same official layout.

Training at a fixed ``image_size`` decodes every full-size frame and resizes it, every epoch.
:func:`write_resized_copy` does that once: it reads a root with the loaders (so every file
gets the checks ``hvps data check`` runs), resizes frames (bilinear, as the loader does) and
labels (nearest: STEP maps, COCO panoptic PNGs, each MOTS txt mask), and writes them to the
same relative paths under ``out``, in the file format they came in. A DataModule pointed at
the copy with the same ``image_size`` then decodes small files and skips the resize; for PNG
frames it yields exactly the clips it yields from the original root.

What changes besides the pixels: COCO panoptic segments get their area and box at the new
size and segments that vanish are dropped, like MOTS objects whose mask vanishes; MOTS20's
``seqinfo.ini`` announces the new size; JPEG frames are encoded again (``jpeg_quality``).
Files the layout does not read are not copied. ``hvps_cache.json`` at the top records the
source and the size.

The copy is written to a temporary folder next to ``out`` and renamed into place when
complete, so ``out`` holds a whole copy or nothing.

Example::

    hvps data cache --dataset motchallenge_step --root data/motchallenge_step --size 544 960 \
        --out data/motchallenge_step_544x960
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from hvps_lightning.data.layout import FrameFiles, SequenceFiles, scan_root
from hvps_lightning.data.loaders import (
    check_mots_sizes,
    decode_image,
    load_sequence_mots,
    read_coco_labels,
    read_step_labels,
    resize_to,
)
from hvps_lightning.errors import HVPSError
from hvps_lightning.formats import (
    MOTSObject,
    PanopticImage,
    read_coco_panoptic,
    read_png,
    rgb_to_id,
    segments_from_ids,
    write_coco_panoptic_json,
    write_mots_txt,
    write_png,
    write_step_png,
)
from hvps_lightning.formats.coco_panoptic import COCO_PANOPTIC_LAYOUT
from hvps_lightning.io import atomic_path, check_output_folder, output_folder, write_json
from hvps_lightning.structures.masks import decode_mask, encode_mask
from hvps_lightning.structures.specs import DatasetSpec, get_spec

__all__: list[str] = ["CACHE_RECORD", "CacheSummary", "write_resized_copy"]

#: the file at the top of a copy that records where it came from and at which size.
CACHE_RECORD = "hvps_cache.json"


@dataclass(frozen=True)
class CacheSummary:
    """What :func:`write_resized_copy` wrote.

    Attributes:
        out: the copy's root.
        sequences: sequences copied.
        frames: frames copied.
        seconds: wall time.
    """

    out: Path
    sequences: int
    frames: int
    seconds: float


def write_resized_copy(
    spec: DatasetSpec | str,
    root: str | Path,
    out: str | Path,
    size: Sequence[int],
    folders: Iterable[str] | None = None,
    workers: int = 1,
    jpeg_quality: int = 95,
    overwrite: bool = False,
    progress: Callable[[int, int], None] | None = None,
) -> CacheSummary:
    """Write a copy of ``root`` resized to ``size`` = (height, width), in the same layout, to ``out``.

    Args:
        spec: the dataset spec (or name) of the root's layout.
        root: the dataset root.
        out: the copy's root; must not exist or be empty unless ``overwrite`` (then replaced whole).
        size: (height, width) of every frame and label of the copy.
        folders: copy only these split folders (default: every folder of the layout).
        workers: threads reading, resizing and writing frames.
        jpeg_quality: quality of re-encoded JPEG frames.
        overwrite: replace an existing non-empty ``out``.
        progress: called with (sequences done, sequences in all) after each sequence.

    Raises:
        HVPSError: for a bad argument, a root with layout problems (the first one), or a bad
            file (its one-line message); nothing is left at ``out`` then.
    """
    started = time.perf_counter()
    spec, root, out = get_spec(spec), Path(root), Path(out)
    height, width = (int(v) for v in size)
    if height < 1 or width < 1:
        raise HVPSError(f"--size must be two positive numbers (height width), got {height} {width}")
    if not 1 <= jpeg_quality <= 100:
        raise HVPSError(f"--jpeg-quality must lie in 1..100, got {jpeg_quality}")
    _check_out(root, out, overwrite)
    scan = scan_root(spec, root, folders)
    if scan.problems:
        raise HVPSError(f"{scan.problems[0]} (`hvps data check` lists every problem of the root)")
    if not scan.sequences:
        raise HVPSError(f"{root}: no sequences found")
    with output_folder(out, overwrite) as tmp:
        writer = _Writer(spec, scan.layout, root, tmp, (height, width), jpeg_quality)
        with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
            for done, sequence in enumerate(scan.sequences, start=1):
                writer.sequence(sequence, pool)
                if progress is not None:
                    progress(done, len(scan.sequences))
        writer.coco_json(scan.sequences)
        write_json(
            tmp / CACHE_RECORD,
            {
                "source": str(root.resolve()),
                "dataset": spec.name,
                "layout": scan.layout,
                "size": [height, width],
            },
        )
    frames = sum(len(s.frames) for s in scan.sequences)
    return CacheSummary(out, len(scan.sequences), frames, time.perf_counter() - started)


def _check_out(root: Path, out: Path, overwrite: bool) -> None:
    resolved_root, resolved_out = root.resolve(), out.resolve()
    if resolved_out == resolved_root or resolved_root in resolved_out.parents:
        raise HVPSError(f"--out {out}: must lie outside the dataset root {root}")
    if resolved_out in resolved_root.parents:
        raise HVPSError(f"--out {out}: holds the dataset root {root}; choose another folder")
    check_output_folder(out, overwrite)


class _Writer:
    """Writes the resized files of one root into ``out`` (the temporary copy)."""

    def __init__(
        self, spec: DatasetSpec, layout: str, root: Path, out: Path, size: tuple[int, int], jpeg_quality: int
    ) -> None:
        self.spec, self.layout, self.root, self.out, self.size = spec, layout, root, out, size
        self.jpeg_quality = jpeg_quality
        self.coco_entries: dict[str, PanopticImage] = {}  # annotation PNG path -> its resized entry

    def target(self, path: Path) -> Path:
        """Where a file of the root goes in the copy."""
        target = self.out / path.relative_to(self.root)
        target.parent.mkdir(parents=True, exist_ok=True)
        return target

    def sequence(self, sequence: SequenceFiles, pool: ThreadPoolExecutor) -> None:
        objects = load_sequence_mots(sequence) if sequence.mots_txt is not None else {}
        sizes = list(pool.map(lambda frame: self.frame(sequence, frame), sequence.frames))
        if sequence.mots_txt is not None:
            resized: list[MOTSObject] = []
            for frame, full in zip(sequence.frames, sizes, strict=True):
                if frame.number is None or frame.number not in objects:
                    continue
                check_mots_sizes(objects[frame.number], full, sequence.mots_txt, frame.number, frame.image)
                resized += [o for o in (self.mots_object(o) for o in objects[frame.number]) if o is not None]
            write_mots_txt(self.target(sequence.mots_txt), resized)
        seqinfo = sequence.directory.parent / "seqinfo.ini" if sequence.directory is not None else None
        if self.layout == "mots20" and seqinfo is not None and seqinfo.is_file():
            self.seqinfo(seqinfo)

    def frame(self, sequence: SequenceFiles, frame: FrameFiles) -> tuple[int, int]:
        """Copy one frame's image and label file; return the image file's (height, width)."""
        decoded = decode_image(frame.image)
        self.image(self.target(frame.image), resize_to(decoded.pixels, self.size))
        if sequence.labelled and frame.coco is not None and frame.label is not None:
            read_coco_labels(sequence, frame, self.spec, decoded.size)  # every check of the loader
            rgb = resize_to(read_png(frame.label, mode="RGB"), self.size, nearest=True)
            write_png(self.target(frame.label), rgb)
            ids = rgb_to_id(rgb)
            category_of = {s.id: s.category_id for s in frame.coco.segments}
            crowd = [s.id for s in frame.coco.segments if s.iscrowd]
            present = [int(v) for v in np.unique(ids) if v]
            segments = segments_from_ids(ids, {v: category_of[v] for v in present}, crowd)
            entry = PanopticImage(frame.coco.image_id, frame.coco.file_name, self.size[0], self.size[1],
                                  frame.coco.annotation_file, segments)  # fmt: skip
            self.coco_entries[str(frame.label)] = entry
        elif sequence.labelled and frame.label is not None:
            labels = read_step_labels(frame.label, self.spec, decoded.size, frame.image, self.size)
            write_step_png(self.target(frame.label), *labels)
        return decoded.size

    def image(self, path: Path, pixels: np.ndarray) -> None:
        if path.suffix.lower() == ".png":
            write_png(path, pixels)
            return
        ok, encoded = cv2.imencode(
            ".jpg", cv2.cvtColor(pixels, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, self.jpeg_quality]
        )
        if not ok:
            raise HVPSError(f"{path}: JPEG encoding failed")
        with atomic_path(path) as tmp:
            tmp.write_bytes(encoded.tobytes())

    def mots_object(self, obj: MOTSObject) -> MOTSObject | None:
        """The object with its mask resized (nearest: a frame's masks stay apart); ``None`` if it vanishes."""
        mask = resize_to(decode_mask(obj.rle), self.size, nearest=True)
        if not mask.any():
            return None
        return MOTSObject(obj.frame, obj.obj_id, obj.class_id, encode_mask(mask))

    def seqinfo(self, path: Path) -> None:
        """MOTS20's ``seqinfo.ini`` with the new ``imWidth`` / ``imHeight``, every other line as it was."""
        text = path.read_text(encoding="utf-8")
        text = re.sub(r"(?im)^(\s*imwidth\s*=\s*)\d+", rf"\g<1>{self.size[1]}", text)
        text = re.sub(r"(?im)^(\s*imheight\s*=\s*)\d+", rf"\g<1>{self.size[0]}", text)
        with atomic_path(self.target(path)) as tmp:
            tmp.write_text(text, encoding="utf-8")

    def coco_json(self, sequences: Sequence[SequenceFiles]) -> None:
        """Write each COCO panoptic split's JSON: the copied images with their resized segments."""
        folders = sorted({s.split_folder for s in sequences if any(f.coco is not None for f in s.frames)})
        for folder in folders:
            json_path = self.root / COCO_PANOPTIC_LAYOUT["json"].format(folder=folder)
            png_dir = self.root / COCO_PANOPTIC_LAYOUT["png_dir"].format(folder=folder)
            coco = read_coco_panoptic(json_path, png_dir)
            images = [
                self.coco_entries[key]
                for key in (str(png_dir / im.annotation_file) for im in coco.images)
                if key in self.coco_entries
            ]
            write_coco_panoptic_json(self.target(json_path), images, coco.categories)
