"""MOTS20 and KITTI-MOTS layouts built from generated STEP roots (tests of loaders and configs)."""

from __future__ import annotations

import shutil
from pathlib import Path

from PIL import Image


def make_mots20(step_root: Path, out: Path) -> Path:
    """MOTS20 layout from a generated MOTChallenge-STEP root (frames already count from 1):
    train/MOTS20-<seq>/{img1/%06d.jpg, gt/gt.txt, seqinfo.ini}."""
    for seq in ("0009", "0002"):
        seq_dir = out / "train" / f"MOTS20-{seq[-2:]}"
        (seq_dir / "img1").mkdir(parents=True)
        (seq_dir / "gt").mkdir()
        frames = sorted((step_root / "images" / "train" / seq).glob("*.png"))
        for frame in frames:
            Image.open(frame).convert("RGB").save(seq_dir / "img1" / f"{frame.stem}.jpg", quality=95)
        shutil.copy(step_root / "instances_txt" / "train" / f"{seq}.txt", seq_dir / "gt" / "gt.txt")
        width, height = Image.open(frames[0]).size
        (seq_dir / "seqinfo.ini").write_text(
            f"[Sequence]\nname=MOTS20-{seq[-2:]}\nimDir=img1\nframeRate=30\nseqLength={len(frames)}\n"
            f"imWidth={width}\nimHeight={height}\nimExt=.jpg\n"
        )
    return out


def make_kitti_mots(step_root: Path, out: Path) -> Path:
    """KITTI-MOTS layout from a generated KITTI-STEP root (frames count from 0):
    training/image_02/<seq>/%06d.png and instances_txt/<seq>.txt."""
    for folder in ("train", "val"):
        for seq_dir in sorted((step_root / "images" / folder).iterdir()):
            shutil.copytree(seq_dir, out / "training" / "image_02" / seq_dir.name)
            (out / "instances_txt").mkdir(parents=True, exist_ok=True)
            shutil.copy(step_root / "instances_txt" / folder / f"{seq_dir.name}.txt", out / "instances_txt")
    return out
