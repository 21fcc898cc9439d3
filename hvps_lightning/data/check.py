"""``hvps data check``: validate a dataset root, and the per-file checks the datasets run at load time.

The check walks a root with the layout of its dataset spec (see ``data/README.md``), reads
every image, panoptic map and MOTS txt file, and reports what it found (sequences, frames,
classes, instances) or one line per problem, ``<file>: <what is wrong>``. The datasets in
:mod:`hvps_lightning.data.datasets` use the same scan and the same per-file readers, so a
bad file fails training with the message the check prints.

Layouts (``--dataset``):

- ``kitti_step``, ``motchallenge_step``: ``images/<split>/<seq>/<frame>.png`` and
  ``panoptic_maps/<split>/<seq>/<frame>.png``; optional MOTS txt ground truth
  ``instances_txt/<split>/<seq>.txt`` (written by ``hvps synth``).
- ``kitti_panoptic``: COCO panoptic (the KITTI panoptic release of EfficientPS):
  ``<split>/images/<name>.png``, ``<split>/annotations/<name>.png``,
  ``<split>/annotations.json`` for ``training`` and ``validation``.
- ``mots``: MOTS20 (``train/MOTS20-02/img1/000001.jpg``, ``gt/gt.txt``, ``seqinfo.ini``) or
  KITTI-MOTS (``training/image_02/0000/000000.png``, ``instances_txt/0000.txt``).

Example:
    >>> from hvps_lightning.structures.specs import get_spec
    >>> report = check_dataset(get_spec("kitti_step"), "/nonexistent")
    >>> report.problems
    ['/nonexistent: dataset root not found']
"""

from __future__ import annotations

import configparser
import sys
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from jsonargparse import ArgumentParser, Namespace
from PIL import Image, UnidentifiedImageError

from hvps_lightning.errors import HVPSError
from hvps_lightning.formats.coco_panoptic import (
    COCO_PANOPTIC_LAYOUT,
    CocoPanoptic,
    PanopticImage,
    category_to_class,
    read_coco_panoptic,
    to_semantic_instance,
)
from hvps_lightning.formats.mots_txt import (
    CAR_CLASS,
    IGNORE_CLASS,
    PEDESTRIAN_CLASS,
    MOTSObject,
    check_no_overlap,
    read_mots_txt,
)
from hvps_lightning.formats.step_png import read_step_png
from hvps_lightning.structures.masks import decode_mask
from hvps_lightning.structures.specs import KITTI_STEP, SPECS, DatasetSpec, SplitSpec, get_spec

__all__: list[str] = [
    "KITTI_MOTS_SPLITS",
    "CheckReport",
    "FrameFiles",
    "LayoutScan",
    "LoadedFrame",
    "Problem",
    "SequenceFiles",
    "build_parser",
    "check_dataset",
    "check_mots_sizes",
    "layout_splits",
    "load_frame",
    "load_mots_objects",
    "load_sequence_mots",
    "mots_labels",
    "read_image",
    "read_step_labels",
    "run",
    "scan_root",
]

#: image files a sequence folder may hold (KITTI: PNG, MOTChallenge: JPEG).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")

#: MOTS class ids a MOTS txt file may use.
MOTS_CLASSES = {CAR_CLASS: "car", PEDESTRIAN_CLASS: "pedestrian", IGNORE_CLASS: "ignore"}

#: KITTI-MOTS splits: the KITTI tracking training sequences split as in KITTI-STEP (same
#: train/val sequences), the tracking test sequences unlabelled.
KITTI_MOTS_SPLITS: dict[str, SplitSpec] = {
    "train": SplitSpec("training", KITTI_STEP.splits["train"].sequences),
    "val": SplitSpec("training", KITTI_STEP.splits["val"].sequences),
    "test": SplitSpec("testing", KITTI_STEP.splits["test"].sequences, has_labels=False),
}


# --------------------------------------------------------------------------------------
# What a scan finds
# --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Problem:
    """One problem with a dataset: the file (or folder) and what is wrong with it.

    Attributes:
        path: the file or folder at fault.
        message: what is wrong, without the path.
        sequence: the key (``<split folder>/<seq>``) of the sequence it belongs to, if any.
    """

    path: Path
    message: str
    sequence: str | None = None

    def __str__(self) -> str:
        return f"{self.path}: {self.message}"

    def error(self) -> HVPSError:
        """The :class:`HVPSError` a dataset raises for this problem (same message as the check)."""
        return HVPSError(str(self))


@dataclass(frozen=True)
class FrameFiles:
    """The files of one frame.

    Attributes:
        stem: the image file name without suffix (``000012``).
        number: ``int(stem)`` when the stem is a number (the frame number of MOTS txt files).
        image: the image file.
        label: the panoptic map (STEP PNG or COCO panoptic PNG), if the layout has one.
        coco: the COCO panoptic annotation of the image (``kitti_panoptic`` only).
    """

    stem: str
    number: int | None
    image: Path
    label: Path | None = None
    coco: PanopticImage | None = None


@dataclass
class SequenceFiles:
    """The frames of one sequence (or, for single-image datasets, of one image).

    Attributes:
        split_folder: the split folder it was found in (``train``, ``training``...).
        name: the sequence name (``0002``, ``MOTS20-09``; the image stem for COCO panoptic).
        frames: its frames in temporal order.
        labelled: whether ground truth is expected for it.
        mots_txt: its MOTS txt ground truth, if the layout has one.
        class_of_category: COCO panoptic category id -> spec class id (``kitti_panoptic``).
        directory: the folder holding its images.
        image_size: the (height, width) its metadata announces (MOTS20 ``seqinfo.ini``), if any.
    """

    split_folder: str
    name: str
    frames: list[FrameFiles]
    labelled: bool
    mots_txt: Path | None = None
    class_of_category: dict[int, int] | None = None
    directory: Path | None = None
    image_size: tuple[int, int] | None = None

    @property
    def key(self) -> str:
        """``<split folder>/<name>``: unique within a dataset root."""
        return f"{self.split_folder}/{self.name}"


@dataclass
class LayoutScan:
    """What walking a root found: sequences and their files, problems, warnings.

    Attributes:
        layout: ``step``, ``coco_panoptic``, ``mots20`` or ``kitti_mots``.
        splits: the splits of this layout (split name -> folder, official sequences).
        sequences: every sequence found, in (split folder, name) order.
        problems: layout problems (missing files, files without their partner...).
        warnings: things that are allowed but worth knowing (missing official sequences).
    """

    layout: str
    splits: Mapping[str, SplitSpec]
    sequences: list[SequenceFiles] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


@dataclass
class SplitSummary:
    """What the check found in one split folder."""

    folder: str
    sequences: int = 0
    frames: int = 0
    labelled_frames: int = 0
    classes: set[int] = field(default_factory=set)
    instances: set[tuple[str, int, int]] = field(default_factory=set)
    mots_objects: int = 0


@dataclass
class CheckReport:
    """The result of :func:`check_dataset`.

    Attributes:
        problems: one line per problem, ``<file>: <what is wrong>``; empty when the root is fine.
        warnings: one line per warning (a missing official sequence...).
        summary: per split folder, what was found.
        layout: the layout that was checked.
    """

    problems: list[str]
    warnings: list[str]
    summary: list[SplitSummary]
    layout: str = ""

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems


# --------------------------------------------------------------------------------------
# Per-file readers with checks (shared by the check and the datasets)
# --------------------------------------------------------------------------------------
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
        mask = decode_mask(obj.rle).astype(bool)
        if obj.class_id == IGNORE_CLASS:
            semantic[mask] = IGNORE_CLASS
            continue
        semantic[mask] = obj.class_id
        instance[mask] = obj.obj_id % 1000
    return semantic, instance


# --------------------------------------------------------------------------------------
# Walking a root
# --------------------------------------------------------------------------------------
def _sorted_dirs(path: Path) -> list[Path]:
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def _sorted_files(path: Path, suffixes: Iterable[str]) -> list[Path]:
    suffixes = tuple(suffixes)
    return sorted(
        p
        for p in path.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
    )


def _frame_number(stem: str) -> int | None:
    return int(stem) if stem.isdigit() else None


def _folders(splits: Mapping[str, SplitSpec]) -> dict[str, tuple[bool, tuple[str, ...]]]:
    """Split folder -> (labels expected, official sequences of every split in it)."""
    folders: dict[str, tuple[bool, tuple[str, ...]]] = {}
    for split in splits.values():
        labelled, sequences = folders.get(split.folder, (False, ()))
        folders[split.folder] = (labelled or split.has_labels, sequences + split.sequences)
    return folders


def _missing_official(directory: Path, official: Sequence[str], found: Iterable[str]) -> str | None:
    missing = sorted(set(official) - set(found))
    if not missing:
        return None
    shown = ", ".join(missing[:12]) + (f" and {len(missing) - 12} more" if len(missing) > 12 else "")
    return f"{directory}: official sequences missing: {shown}"


def _missing_folder(directory: Path, official: Sequence[str]) -> str:
    listed = f" (official sequences {', '.join(official[:12])}{' ...' if len(official) > 12 else ''})"
    return f"{directory}: split folder missing{listed if official else ''}"


def _scan_frames(seq_dir: Path, key: str, problems: list[Problem]) -> list[FrameFiles] | None:
    images = _sorted_files(seq_dir, IMAGE_SUFFIXES)
    if not images:
        problems.append(Problem(seq_dir, "no images (.png/.jpg) in this sequence folder", key))
        return None
    frames = []
    for image in images:
        number = _frame_number(image.stem)
        if number is None:
            problems.append(Problem(image, "frame file names must be frame numbers (e.g. 000012.png)", key))
            continue
        frames.append(FrameFiles(image.stem, number, image))
    frames.sort(key=lambda f: (f.number, f.stem))
    stems = [f.stem for f in frames]
    if len(set(stems)) != len(stems):
        problems.append(
            Problem(seq_dir, "two images share a frame name (e.g. 000001.png and 000001.jpg)", key)
        )
    return frames


def _scan_step(spec: DatasetSpec, root: Path, folders: Iterable[str] | None) -> LayoutScan:
    scan = LayoutScan("step", spec.splits)
    images_root, maps_root, txt_root = root / "images", root / "panoptic_maps", root / "instances_txt"
    if not images_root.is_dir():
        scan.problems.append(
            Problem(root, "wrong layout: no images/ folder (expected images/<split>/<seq>/<frame>.png)")
        )
        return scan
    wanted = _folders(spec.splits)
    if folders is not None:
        wanted = {k: v for k, v in wanted.items() if k in set(folders)}
    present = [f for f in wanted if (images_root / f).is_dir()]
    if not present:
        scan.problems.append(
            Problem(images_root, f"wrong layout: none of the split folders {', '.join(wanted)} found")
        )
        return scan
    for folder, (labelled, official) in wanted.items():
        image_dir = images_root / folder
        if not image_dir.is_dir():
            scan.warnings.append(_missing_folder(image_dir, official))
            continue
        for stray in _sorted_files(image_dir, IMAGE_SUFFIXES):
            scan.problems.append(Problem(stray, "wrong layout: images must sit in sequence folders"))
        seq_dirs = _sorted_dirs(image_dir)
        if not seq_dirs:
            scan.problems.append(Problem(image_dir, "no sequence folders"))
        warning = _missing_official(image_dir, official, (d.name for d in seq_dirs))
        if warning:
            scan.warnings.append(warning)
        map_dir = maps_root / folder
        has_maps = map_dir.is_dir()
        if labelled and not has_maps:
            scan.problems.append(
                Problem(map_dir, f"missing: the panoptic maps of {image_dir} (<seq>/<frame>.png)")
            )
        if has_maps:
            image_seqs = {d.name for d in seq_dirs}
            for map_seq in _sorted_dirs(map_dir):
                if map_seq.name not in image_seqs:
                    scan.problems.append(
                        Problem(map_seq, f"panoptic maps without images (no {image_dir / map_seq.name})")
                    )
        for seq_dir in seq_dirs:
            key = f"{folder}/{seq_dir.name}"
            frames = _scan_frames(seq_dir, key, scan.problems)
            if frames is None:
                continue
            if has_maps:
                frames = _pair_step_maps(frames, map_dir / seq_dir.name, key, labelled, scan.problems)
            txt = txt_root / folder / f"{seq_dir.name}.txt"
            if txt_root.is_dir() and labelled and not txt.is_file():
                scan.warnings.append(f"{txt}: no MOTS txt ground truth for this sequence")
            scan.sequences.append(
                SequenceFiles(
                    folder,
                    seq_dir.name,
                    frames,
                    labelled and has_maps,
                    txt if txt.is_file() else None,
                    None,
                    seq_dir,
                )
            )
        if txt_root.is_dir() and (txt_root / folder).is_dir():
            image_seqs = {d.name for d in seq_dirs}
            for txt in _sorted_files(txt_root / folder, (".txt",)):
                if txt.stem not in image_seqs:
                    scan.problems.append(Problem(txt, f"MOTS txt without images (no {image_dir / txt.stem})"))
    return scan


def _pair_step_maps(
    frames: list[FrameFiles], map_seq: Path, key: str, labelled: bool, problems: list[Problem]
) -> list[FrameFiles]:
    maps = {p.stem: p for p in _sorted_files(map_seq, (".png",))} if map_seq.is_dir() else {}
    paired = []
    for frame in frames:
        label = maps.pop(frame.stem, None)
        if label is None and labelled:
            problems.append(
                Problem(
                    frame.image, f"image without its panoptic map ({map_seq / (frame.stem + '.png')})", key
                )
            )
        paired.append(FrameFiles(frame.stem, frame.number, frame.image, label))
    image_dir = frames[0].image.parent if frames else None
    for stem, label in sorted(maps.items()):
        problems.append(
            Problem(label, f"panoptic map without its image (no {image_dir}/{stem}.png or .jpg)", key)
        )
    return paired


def _scan_coco(spec: DatasetSpec, root: Path, folders: Iterable[str] | None) -> LayoutScan:
    scan = LayoutScan("coco_panoptic", spec.splits)
    wanted = _folders(spec.splits)
    if folders is not None:
        wanted = {k: v for k, v in wanted.items() if k in set(folders)}
    present = [f for f in wanted if (root / f).is_dir()]
    if not present:
        expected = COCO_PANOPTIC_LAYOUT["images"].format(folder="<split>")
        scan.problems.append(
            Problem(
                root,
                f"wrong layout: none of the split folders {', '.join(wanted)} found (expected {expected})",
            )
        )
        return scan
    for folder, (labelled, official) in wanted.items():
        if not (root / folder).is_dir():
            scan.warnings.append(_missing_folder(root / folder, official))
            continue
        image_dir = root / COCO_PANOPTIC_LAYOUT["images"].format(folder=folder)
        json_path = root / COCO_PANOPTIC_LAYOUT["json"].format(folder=folder)
        png_dir = root / COCO_PANOPTIC_LAYOUT["png_dir"].format(folder=folder)
        if not image_dir.is_dir():
            scan.problems.append(Problem(image_dir, "wrong layout: image folder missing"))
            continue
        images = _sorted_files(image_dir, IMAGE_SUFFIXES)
        if not images:
            scan.problems.append(Problem(image_dir, "no images"))
            continue
        coco: CocoPanoptic | None = None
        if json_path.is_file() or labelled:
            try:
                coco = read_coco_panoptic(json_path, png_dir)
            except HVPSError as exc:
                scan.problems.append(Problem(json_path, str(exc).removeprefix(f"{json_path}: ")))
                continue
            if not png_dir.is_dir():
                scan.problems.append(Problem(png_dir, "wrong layout: folder of panoptic PNGs missing"))
                continue
        class_of_category = None
        by_name: dict[str, PanopticImage] = {}
        if coco is not None:
            class_of_category = category_to_class(coco.categories, spec.class_names, spec.ignore_label)
            unknown = [c for c in coco.categories if class_of_category.get(int(c["id"])) == spec.ignore_label]
            if unknown:
                names = ", ".join(f"{c['id']} {c.get('name', '?')!r}" for c in unknown[:8])
                scan.warnings.append(
                    f"{json_path}: categories read as void (not classes of {spec.name}): {names}"
                )
            by_name = {Path(im.file_name).name: im for im in coco.images}
            category_ids = {int(c["id"]) for c in coco.categories}
            for im in coco.images:
                bad = sorted({s.category_id for s in im.segments} - category_ids)
                if bad:
                    scan.problems.append(
                        Problem(
                            png_dir / im.annotation_file,
                            f"segments of categories {', '.join(map(str, bad))} not in the JSON's categories",
                        )
                    )
        seen_pngs: set[str] = set()
        for image in images:
            frame = FrameFiles(image.stem, _frame_number(image.stem), image)
            key = f"{folder}/{image.stem}"
            if coco is not None:
                entry = by_name.pop(image.name, None)
                # A bad image stays in the scan (unlabelled) so that a dataset selecting it
                # finds its problem by sequence key.
                if entry is None:
                    if labelled:
                        scan.problems.append(
                            Problem(image, f"image without its annotation in {json_path}", key)
                        )
                else:
                    label = png_dir / entry.annotation_file
                    seen_pngs.add(entry.annotation_file)
                    if label.is_file():
                        frame = FrameFiles(image.stem, frame.number, image, label, entry)
                    else:
                        scan.problems.append(Problem(image, f"image without its panoptic map ({label})", key))
            scan.sequences.append(
                SequenceFiles(
                    folder, image.stem, [frame], frame.label is not None, None, class_of_category, image_dir
                )
            )
        for name, entry in sorted(by_name.items()):
            scan.problems.append(
                Problem(
                    png_dir / entry.annotation_file, f"annotation without its image (no {image_dir / name})"
                )
            )
        if png_dir.is_dir():
            for png in _sorted_files(png_dir, (".png",)):
                if (
                    coco is not None
                    and png.name not in seen_pngs
                    and png.name not in {e.annotation_file for e in by_name.values()}
                ):
                    scan.problems.append(Problem(png, f"panoptic PNG not listed in {json_path}"))
    return scan


def _read_seqinfo(path: Path) -> dict[str, str]:
    parser = configparser.ConfigParser()
    try:
        parser.read_string(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise HVPSError(f"{path}: unreadable seqinfo.ini ({exc})") from None
    if "Sequence" not in parser:
        raise HVPSError(f"{path}: no [Sequence] section")
    return dict(parser["Sequence"])


def _scan_mots20(spec: DatasetSpec, root: Path, folders: Iterable[str] | None) -> LayoutScan:
    scan = LayoutScan("mots20", spec.splits)
    wanted = _folders(spec.splits)
    if folders is not None:
        wanted = {k: v for k, v in wanted.items() if k in set(folders)}
    for folder, (labelled, official) in wanted.items():
        split_dir = root / folder
        if not split_dir.is_dir():
            scan.warnings.append(_missing_folder(split_dir, official))
            continue
        seq_dirs = _sorted_dirs(split_dir)
        if not seq_dirs:
            scan.problems.append(Problem(split_dir, "no sequence folders (expected <split>/MOTS20-XX/img1/)"))
        warning = _missing_official(split_dir, official, (d.name for d in seq_dirs))
        if warning:
            scan.warnings.append(warning)
        for seq_dir in seq_dirs:
            key = f"{folder}/{seq_dir.name}"
            seqinfo_path = seq_dir / "seqinfo.ini"
            seqinfo: dict[str, str] = {}
            if seqinfo_path.is_file():
                try:
                    seqinfo = _read_seqinfo(seqinfo_path)
                except HVPSError as exc:
                    scan.problems.append(
                        Problem(seqinfo_path, str(exc).removeprefix(f"{seqinfo_path}: "), key)
                    )
            else:
                scan.warnings.append(f"{seqinfo_path}: missing")
            img_dir = seq_dir / seqinfo.get("imdir", "img1")
            if not img_dir.is_dir():
                scan.problems.append(Problem(img_dir, "wrong layout: image folder missing", key))
                continue
            frames = _scan_frames(img_dir, key, scan.problems)
            if frames is None:
                continue
            length = seqinfo.get("seqlength")
            if length is not None and length.strip().isdigit() and int(length) != len(frames):
                scan.problems.append(
                    Problem(
                        seqinfo_path, f"seqLength {int(length)} but {img_dir} holds {len(frames)} images", key
                    )
                )
            gt = seq_dir / "gt" / "gt.txt"
            if labelled and not gt.is_file():
                scan.problems.append(Problem(gt, "missing: the MOTS ground truth of this sequence", key))
                continue
            announced = (seqinfo.get("imheight", ""), seqinfo.get("imwidth", ""))
            size = (
                (int(announced[0]), int(announced[1]))
                if all(v.strip().isdigit() for v in announced)
                else None
            )
            scan.sequences.append(
                SequenceFiles(
                    folder,
                    seq_dir.name,
                    frames,
                    gt.is_file(),
                    gt if gt.is_file() else None,
                    None,
                    img_dir,
                    size,
                )
            )
    return scan


def _scan_kitti_mots(root: Path, folders: Iterable[str] | None) -> LayoutScan:
    scan = LayoutScan("kitti_mots", KITTI_MOTS_SPLITS)
    wanted = _folders(KITTI_MOTS_SPLITS)
    if folders is not None:
        wanted = {k: v for k, v in wanted.items() if k in set(folders)}
    txt_root = root / "instances_txt"
    for folder, (labelled, official) in wanted.items():
        image_dir = root / folder / "image_02"
        if not image_dir.is_dir():
            scan.warnings.append(_missing_folder(image_dir, official))
            continue
        seq_dirs = _sorted_dirs(image_dir)
        warning = _missing_official(image_dir, official, (d.name for d in seq_dirs))
        if warning:
            scan.warnings.append(warning)
        for seq_dir in seq_dirs:
            key = f"{folder}/{seq_dir.name}"
            frames = _scan_frames(seq_dir, key, scan.problems)
            if frames is None:
                continue
            txt = txt_root / f"{seq_dir.name}.txt"
            if labelled and not txt.is_file():
                scan.problems.append(Problem(txt, f"missing: the MOTS ground truth of {seq_dir}", key))
                continue
            scan.sequences.append(
                SequenceFiles(
                    folder, seq_dir.name, frames, labelled, txt if labelled else None, None, seq_dir
                )
            )
    if txt_root.is_dir():
        known = {s.name for s in scan.sequences}
        for txt in _sorted_files(txt_root, (".txt",)):
            if txt.stem not in known and (root / "training" / "image_02").is_dir():
                scan.problems.append(
                    Problem(txt, f"MOTS txt without images (no {root / 'training/image_02' / txt.stem})")
                )
    return scan


def mots_layout(root: Path) -> str:
    """Tell the MOTS20 layout (``train/MOTS20-XX``) from KITTI-MOTS (``training/image_02``)."""
    if (root / "training" / "image_02").is_dir() or (root / "testing" / "image_02").is_dir():
        return "kitti_mots"
    if (root / "instances_txt").is_dir() and not (root / "train").is_dir():
        return "kitti_mots"
    return "mots20"


def layout_splits(spec: DatasetSpec | str, root: str | Path) -> Mapping[str, SplitSpec]:
    """The splits of the layout found at ``root`` (KITTI-MOTS has its own; otherwise the spec's)."""
    spec = get_spec(spec)
    if spec.layout == "mots" and mots_layout(Path(root)) == "kitti_mots":
        return KITTI_MOTS_SPLITS
    return spec.splits


def scan_root(spec: DatasetSpec | str, root: str | Path, folders: Iterable[str] | None = None) -> LayoutScan:
    """Walk ``root`` with the layout of ``spec``: find sequences and frames, pair files, list problems.

    Only cheap checks run here (which files exist); reading the files is
    :func:`check_frame` / the dataset's job.

    Args:
        spec: the dataset spec (or its name).
        root: the dataset root.
        folders: restrict the walk to these split folders (default: every folder of the spec).
    """
    spec, root = get_spec(spec), Path(root)
    if not root.is_dir():
        scan = LayoutScan(spec.layout, spec.splits)
        what = "dataset root not found" if not root.exists() else "dataset root is not a folder"
        scan.problems.append(Problem(root, what))
        return scan
    if spec.layout == "step":
        return _scan_step(spec, root, folders)
    if spec.layout == "coco_panoptic":
        return _scan_coco(spec, root, folders)
    if mots_layout(root) == "kitti_mots":
        return _scan_kitti_mots(root, folders)
    scan = _scan_mots20(spec, root, folders)
    if (
        not scan.sequences
        and not scan.problems
        and not any((root / f).is_dir() for f in _folders(spec.splits))
    ):
        scan.problems.append(
            Problem(
                root,
                "wrong layout: expected MOTS20 (train/MOTS20-XX/img1/, gt/gt.txt) or KITTI-MOTS "
                "(training/image_02/<seq>/, instances_txt/<seq>.txt)",
            )
        )
    return scan


# --------------------------------------------------------------------------------------
# Loading one frame (the datasets' load-time checks)
# --------------------------------------------------------------------------------------
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


# --------------------------------------------------------------------------------------
# The whole check
# --------------------------------------------------------------------------------------
def _check_sequence(spec: DatasetSpec, sequence: SequenceFiles, stats: SplitSummary) -> list[Problem]:
    """Read every file of a sequence; return its problems (one per bad file)."""
    problems: list[Problem] = []
    objects: dict[int, list[MOTSObject]] | None = None
    if sequence.mots_txt is not None:
        try:
            objects = load_sequence_mots(sequence)
        except HVPSError as exc:
            problems.append(_as_problem(exc, sequence.key))
        if objects is not None:
            stats.mots_objects += sum(len(v) for v in objects.values())
            for frame_objects in objects.values():
                for obj in frame_objects:
                    if obj.class_id != IGNORE_CLASS and spec.layout == "mots":
                        stats.instances.add((sequence.key, obj.class_id, obj.obj_id))
                        stats.classes.add(obj.class_id)
    mots_for_labels = objects if spec.layout == "mots" else None
    for frame in sequence.frames:
        try:
            loaded = load_frame(
                spec, sequence, frame, mots_for_labels or {}, with_labels=spec.layout != "mots"
            )
        except HVPSError as exc:
            problems.append(_as_problem(exc, sequence.key))
            continue
        stats.frames += 1
        shape = loaded.image.shape
        if sequence.image_size is not None and tuple(shape[:2]) != sequence.image_size:
            height, width = sequence.image_size
            problems.append(
                Problem(
                    frame.image,
                    f"size {shape[1]}x{shape[0]} differs from seqinfo.ini "
                    f"(imWidth={width}, imHeight={height})",
                    sequence.key,
                )
            )
        if loaded.semantic is not None and loaded.instance is not None:
            stats.labelled_frames += 1
            _count_classes(spec, sequence.key, loaded.semantic, loaded.instance, stats)
        elif spec.layout == "mots" and objects is not None:
            stats.labelled_frames += 1
        if objects is not None and frame.number is not None and sequence.mots_txt is not None:
            try:
                check_mots_sizes(
                    objects.get(frame.number, ()), shape, sequence.mots_txt, frame.number, frame.image
                )
            except HVPSError as exc:
                problems.append(_as_problem(exc, sequence.key))
    return problems


def _as_problem(exc: HVPSError, key: str | None) -> Problem:
    text = str(exc)
    path, sep, message = text.partition(": ")
    return Problem(Path(path), message, key) if sep else Problem(Path("?"), text, key)


def _count_classes(
    spec: DatasetSpec, key: str, semantic: np.ndarray, instance: np.ndarray, stats: SplitSummary
) -> None:
    classes = np.unique(semantic)
    stats.classes.update(int(c) for c in classes if c != spec.ignore_label)
    things = np.isin(semantic, spec.thing_ids) & (instance > 0)
    if things.any():
        pairs = np.unique(semantic[things].astype(np.int64) * spec.label_divisor + instance[things])
        stats.instances.update(
            (key, int(p // spec.label_divisor), int(p % spec.label_divisor)) for p in pairs
        )


def check_dataset(
    spec: DatasetSpec | str,
    root: str | Path,
    folders: Iterable[str] | None = None,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> CheckReport:
    """Check a dataset root: its layout and every file in it.

    Args:
        spec: the dataset spec (or its name).
        root: the dataset root.
        folders: restrict the check to these split folders.
        workers: threads reading files (image decoding releases the GIL).
        progress: called with (sequences done, sequences in all) after each sequence.

    Returns:
        A :class:`CheckReport`; ``report.problems`` is empty when the root is fine.
    """
    spec = get_spec(spec)
    scan = scan_root(spec, root, folders)
    summaries: dict[str, SplitSummary] = {}
    for sequence in scan.sequences:
        summary = summaries.setdefault(sequence.split_folder, SplitSummary(sequence.split_folder))
        summary.sequences += 1
    problems = list(scan.problems)

    def run(sequence: SequenceFiles) -> tuple[SequenceFiles, SplitSummary, list[Problem]]:
        stats = SplitSummary(sequence.split_folder)
        return sequence, stats, _check_sequence(spec, sequence, stats)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, (sequence, stats, found) in enumerate(pool.map(run, scan.sequences), start=1):
            summary = summaries[sequence.split_folder]
            summary.frames += stats.frames
            summary.labelled_frames += stats.labelled_frames
            summary.classes |= stats.classes
            summary.instances |= stats.instances
            summary.mots_objects += stats.mots_objects
            problems.extend(found)
            if progress is not None:
                progress(done, len(scan.sequences))
    if not scan.sequences and not problems:
        problems.append(Problem(Path(root), "no sequences found"))
    return CheckReport([str(p) for p in problems], list(scan.warnings), list(summaries.values()), scan.layout)


# --------------------------------------------------------------------------------------
# CLI
# --------------------------------------------------------------------------------------
def build_parser() -> ArgumentParser:
    """Parser of ``hvps data`` (subcommand ``check``)."""
    parser = ArgumentParser(prog="hvps data", description="Dataset tools.")
    subcommands = parser.add_subcommands(dest="subcommand")
    check = ArgumentParser(
        description=(
            "Check a dataset root: walks it with the dataset's layout (data/README.md), reads every "
            "image, panoptic map and MOTS txt file, and prints what it found. Exit 0 when it is "
            "fine (missing official sequences are warnings), 2 with one line per bad file."
        )
    )
    check.add_argument(
        "--dataset", required=True, choices=sorted(SPECS), help="the dataset (and layout) of the root"
    )
    check.add_argument("--root", required=True, type=str, help="the dataset root folder")
    check.add_argument(
        "--splits",
        nargs="+",
        default=None,
        metavar="FOLDER",
        help="check only these split folders (e.g. train val)",
    )
    check.add_argument("--workers", type=int, default=2, help="threads reading files")
    subcommands.add_subcommand("check", check, help="check a dataset root")
    return parser


def _print_summary(spec: DatasetSpec, root: str, report: CheckReport) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(file=sys.stdout, width=110, highlight=False)
    mots = report.layout in ("mots20", "kitti_mots")
    names = MOTS_CLASSES if mots else dict(enumerate(spec.class_names))
    table = Table(title=f"{spec.name} ({report.layout} layout) at {root}")
    sequences = "images" if report.layout == "coco_panoptic" else "sequences"
    for column in ("split", sequences, "frames", "labelled", "instances", "classes found"):
        table.add_column(column, justify="left" if column in ("split", "classes found") else "right")
    for s in report.summary:
        classes = ", ".join(names.get(c, str(c)) for c in sorted(s.classes)) or "-"
        table.add_row(
            s.folder, str(s.sequences), str(s.frames), str(s.labelled_frames), str(len(s.instances)), classes
        )
    console.print(table)


def run(cfg: Namespace) -> int:
    """Run ``hvps data check``; print the summary (stdout) or the problems (stderr)."""
    if cfg.get("subcommand") != "check":
        raise HVPSError("usage: hvps data check --dataset NAME --root DIR")
    options = cfg.check
    spec = get_spec(options.dataset)
    if options.workers < 1:
        raise HVPSError(f"--workers must be >= 1, got {options.workers}")
    if options.splits:
        known = sorted({split.folder for split in layout_splits(spec, options.root).values()})
        unknown = [folder for folder in options.splits if folder not in known]
        if unknown:
            raise HVPSError(
                f"--splits: unknown split folder {', '.join(unknown)}; "
                f"folders of this layout: {', '.join(known)}"
            )
    try:
        report = check_dataset(spec, options.root, options.splits, workers=options.workers)
    except OSError as exc:  # an unreadable folder (permissions...): one line, no traceback
        raise HVPSError(f"{exc.filename or options.root}: {exc.strerror or exc}") from None
    for warning in report.warnings:
        print(f"warning: {warning}", file=sys.stderr)
    if report.summary:
        _print_summary(spec, options.root, report)
    if report.problems:
        for problem in report.problems:
            print(problem, file=sys.stderr)
        count = len(report.problems)
        print(
            f"hvps data check: {count} problem{'s' if count != 1 else ''} in {options.root}", file=sys.stderr
        )
        return 2
    print(f"hvps data check: {options.root} is a valid {spec.name} root")
    return 0
