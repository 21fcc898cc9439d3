"""What a layout scan finds (sequences, frames, problems) and the helpers every layout walks with."""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from hvps_lightning.errors import HVPSError
from hvps_lightning.formats.coco_panoptic import PanopticImage
from hvps_lightning.structures.specs import SplitSpec

#: image files a sequence folder may hold (KITTI: PNG, MOTChallenge: JPEG).
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")


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



# --------------------------------------------------------------------------------------
# Walking a root
# --------------------------------------------------------------------------------------
def sorted_dirs(path: Path) -> list[Path]:
    """The visible sub-folders of ``path``, by name."""
    return sorted(p for p in path.iterdir() if p.is_dir() and not p.name.startswith("."))


def sorted_files(path: Path, suffixes: Iterable[str]) -> list[Path]:
    """The visible files of ``path`` with one of ``suffixes`` (any case), by name."""
    suffixes = tuple(suffixes)
    return sorted(
        p
        for p in path.iterdir()
        if p.is_file() and not p.name.startswith(".") and p.suffix.lower() in suffixes
    )


def frame_number(stem: str) -> int | None:
    """``int(stem)`` for a frame-number stem (``000012``), else ``None``."""
    return int(stem) if stem.isdigit() else None



def split_folders(
    splits: Mapping[str, SplitSpec], only: Iterable[str] | None = None
) -> dict[str, tuple[bool, tuple[str, ...]]]:
    """Split folder -> (labels expected, official sequences of every split in it), for ``only`` if given."""
    folders: dict[str, tuple[bool, tuple[str, ...]]] = {}
    for split in splits.values():
        labelled, sequences = folders.get(split.folder, (False, ()))
        folders[split.folder] = (labelled or split.has_labels, sequences + split.sequences)
    if only is not None:
        keep = set(only)
        folders = {k: v for k, v in folders.items() if k in keep}
    return folders


def missing_official(directory: Path, official: Sequence[str], found: Iterable[str]) -> str | None:
    """The warning listing the official sequences not in ``found``, or ``None``."""
    missing = sorted(set(official) - set(found))
    if not missing:
        return None
    shown = ", ".join(missing[:12]) + (f" and {len(missing) - 12} more" if len(missing) > 12 else "")
    return f"{directory}: official sequences missing: {shown}"


def missing_folder(directory: Path, official: Sequence[str]) -> str:
    """The warning for a split folder that is absent."""
    listed = f" (official sequences {', '.join(official[:12])}{' ...' if len(official) > 12 else ''})"
    return f"{directory}: split folder missing{listed if official else ''}"


def scan_frames(seq_dir: Path, key: str, problems: list[Problem]) -> list[FrameFiles] | None:
    """The frames of a sequence folder in frame order; ``None`` (and a problem) when it has no image."""
    images = sorted_files(seq_dir, IMAGE_SUFFIXES)
    if not images:
        problems.append(Problem(seq_dir, "no images (.png/.jpg) in this sequence folder", key))
        return None
    frames = []
    for image in images:
        number = frame_number(image.stem)
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

