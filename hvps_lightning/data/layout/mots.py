"""The MOTS layouts: MOTS20 and KITTI-MOTS.

MOTS20: ``train/MOTS20-XX/img1/``, ``gt/gt.txt``, ``seqinfo.ini``; KITTI-MOTS:
``training/image_02/<seq>/``, ``instances_txt/<seq>.txt``.
"""

from __future__ import annotations

import configparser
from collections.abc import Iterable
from pathlib import Path

from hvps_lightning.data.layout.base import (
    LayoutScan,
    Problem,
    SequenceFiles,
    missing_folder,
    missing_official,
    scan_frames,
    sorted_dirs,
    sorted_files,
    split_folders,
)
from hvps_lightning.errors import HVPSError
from hvps_lightning.structures.specs import KITTI_STEP, DatasetSpec, SplitSpec

#: train/val sequences), the tracking test sequences unlabelled.
KITTI_MOTS_SPLITS: dict[str, SplitSpec] = {
    "train": SplitSpec("training", KITTI_STEP.splits["train"].sequences),
    "val": SplitSpec("training", KITTI_STEP.splits["val"].sequences),
    "test": SplitSpec("testing", KITTI_STEP.splits["test"].sequences, has_labels=False),
}



def read_seqinfo(path: Path) -> dict[str, str]:
    """The ``[Sequence]`` entries of a MOTS20 ``seqinfo.ini`` (keys lower-cased: ``seqlength``...).

    Raises:
        HVPSError: naming the file if it is unreadable or has no ``[Sequence]`` section.
    """
    parser = configparser.ConfigParser()
    try:
        parser.read_string(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, configparser.Error) as exc:
        raise HVPSError(f"{path}: unreadable seqinfo.ini ({exc})") from None
    if "Sequence" not in parser:
        raise HVPSError(f"{path}: no [Sequence] section")
    return dict(parser["Sequence"])



def scan_mots20(spec: DatasetSpec, root: Path, folders: Iterable[str] | None) -> LayoutScan:
    """Walk a MOTS20 root (see :func:`hvps_lightning.data.layout.scan_root`)."""
    scan = LayoutScan("mots20", spec.splits)
    wanted = split_folders(spec.splits, folders)
    for folder, (labelled, official) in wanted.items():
        split_dir = root / folder
        if not split_dir.is_dir():
            scan.warnings.append(missing_folder(split_dir, official))
            continue
        seq_dirs = sorted_dirs(split_dir)
        if not seq_dirs:
            scan.problems.append(Problem(split_dir, "no sequence folders (expected <split>/MOTS20-XX/img1/)"))
        warning = missing_official(split_dir, official, (d.name for d in seq_dirs))
        if warning:
            scan.warnings.append(warning)
        for seq_dir in seq_dirs:
            key = f"{folder}/{seq_dir.name}"
            seqinfo_path = seq_dir / "seqinfo.ini"
            seqinfo: dict[str, str] = {}
            if seqinfo_path.is_file():
                try:
                    seqinfo = read_seqinfo(seqinfo_path)
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
            frames = scan_frames(img_dir, key, scan.problems)
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



def scan_kitti_mots(root: Path, folders: Iterable[str] | None) -> LayoutScan:
    """Walk a KITTI-MOTS root (see :func:`hvps_lightning.data.layout.scan_root`)."""
    scan = LayoutScan("kitti_mots", KITTI_MOTS_SPLITS)
    wanted = split_folders(KITTI_MOTS_SPLITS, folders)
    txt_root = root / "instances_txt"
    for folder, (labelled, official) in wanted.items():
        image_dir = root / folder / "image_02"
        if not image_dir.is_dir():
            scan.warnings.append(missing_folder(image_dir, official))
            continue
        seq_dirs = sorted_dirs(image_dir)
        warning = missing_official(image_dir, official, (d.name for d in seq_dirs))
        if warning:
            scan.warnings.append(warning)
        for seq_dir in seq_dirs:
            key = f"{folder}/{seq_dir.name}"
            frames = scan_frames(seq_dir, key, scan.problems)
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
        for txt in sorted_files(txt_root, (".txt",)):
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

