"""The STEP layout (KITTI-STEP, MOTChallenge-STEP): ``images/``, ``panoptic_maps/``, ``instances_txt/``."""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

from hvps_lightning.data.layout.base import (
    IMAGE_SUFFIXES,
    FrameFiles,
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
from hvps_lightning.structures.specs import DatasetSpec


def scan_step(spec: DatasetSpec, root: Path, folders: Iterable[str] | None) -> LayoutScan:
    """Walk a STEP root (see :func:`hvps_lightning.data.layout.scan_root`)."""
    scan = LayoutScan("step", spec.splits)
    images_root, maps_root, txt_root = root / "images", root / "panoptic_maps", root / "instances_txt"
    if not images_root.is_dir():
        scan.problems.append(
            Problem(root, "wrong layout: no images/ folder (expected images/<split>/<seq>/<frame>.png)")
        )
        return scan
    wanted = split_folders(spec.splits, folders)
    present = [f for f in wanted if (images_root / f).is_dir()]
    if not present:
        scan.problems.append(
            Problem(images_root, f"wrong layout: none of the split folders {', '.join(wanted)} found")
        )
        return scan
    for folder, (labelled, official) in wanted.items():
        image_dir = images_root / folder
        if not image_dir.is_dir():
            scan.warnings.append(missing_folder(image_dir, official))
            continue
        for stray in sorted_files(image_dir, IMAGE_SUFFIXES):
            scan.problems.append(Problem(stray, "wrong layout: images must sit in sequence folders"))
        seq_dirs = sorted_dirs(image_dir)
        if not seq_dirs:
            scan.problems.append(Problem(image_dir, "no sequence folders"))
        warning = missing_official(image_dir, official, (d.name for d in seq_dirs))
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
            for map_seq in sorted_dirs(map_dir):
                if map_seq.name not in image_seqs:
                    scan.problems.append(
                        Problem(map_seq, f"panoptic maps without images (no {image_dir / map_seq.name})")
                    )
        for seq_dir in seq_dirs:
            key = f"{folder}/{seq_dir.name}"
            frames = scan_frames(seq_dir, key, scan.problems)
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
            for txt in sorted_files(txt_root / folder, (".txt",)):
                if txt.stem not in image_seqs:
                    scan.problems.append(Problem(txt, f"MOTS txt without images (no {image_dir / txt.stem})"))
    return scan


def _pair_step_maps(
    frames: list[FrameFiles], map_seq: Path, key: str, labelled: bool, problems: list[Problem]
) -> list[FrameFiles]:
    maps = {p.stem: p for p in sorted_files(map_seq, (".png",))} if map_seq.is_dir() else {}
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

