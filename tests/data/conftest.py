"""Fixtures of the data tests: MOTS20 and KITTI-MOTS roots built from the generated STEP roots."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from mots_layouts import make_kitti_mots, make_mots20


@pytest.fixture
def mots20_root(synth_mot_step_root: Path, tmp_path: Path) -> Path:
    return make_mots20(synth_mot_step_root, tmp_path / "mots")


@pytest.fixture
def kitti_mots_root(synth_kitti_step_root: Path, tmp_path: Path) -> Path:
    return make_kitti_mots(synth_kitti_step_root, tmp_path / "kitti_mots")


@pytest.fixture(scope="session")
def synth_mots20_root(synth_mot_step_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only MOTS20 root (JPEG frames, MOTS txt ground truth) for the whole session."""
    return make_mots20(synth_mot_step_root, tmp_path_factory.mktemp("synth_mots20") / "mots")


@pytest.fixture(scope="session")
def synth_kitti_mots_root(synth_kitti_step_root: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A read-only KITTI-MOTS root for the whole session."""
    return make_kitti_mots(synth_kitti_step_root, tmp_path_factory.mktemp("synth_kitti_mots") / "kitti_mots")


# ---------------------------------------------------------------------------- real files
#: real dataset files (KITTI-STEP, MOTS20, KITTI-MOTS, Cityscapes-DVPS; non-commercial licences,
#: never copied into the repository): next to the checkout, or wherever $HVPS_REAL_DATA points.
REAL_DATA = Path(os.environ.get("HVPS_REAL_DATA", Path(__file__).resolve().parents[3] / "shared/real_data"))


@pytest.fixture(scope="session")
def real_data() -> Path:
    """The folder of real files; the test is skipped where it is absent (a user's clone)."""
    if not (REAL_DATA / "README.md").is_file():
        pytest.skip(f"real dataset files not found at {REAL_DATA} (set HVPS_REAL_DATA to their folder)")
    return REAL_DATA


def link(target: Path, link_path: Path) -> None:
    """Place ``target`` at ``link_path`` as a symbolic link (real files are linked, never copied)."""
    link_path.parent.mkdir(parents=True, exist_ok=True)
    link_path.symlink_to(target)


@pytest.fixture(scope="session")
def real_kitti_step_root(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """KITTI-STEP layout over the real frames and panoptic maps of train 0000 and 0001 (frames 0-5)."""
    root = tmp_path_factory.mktemp("real") / "kitti_step"
    for folder in ("images", "panoptic_maps"):
        for seq in ("0000", "0001"):
            link(real_data / "kitti_step" / folder / "train" / seq, root / folder / "train" / seq)
    return root


@pytest.fixture(scope="session")
def real_kitti_mots_root(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """KITTI-MOTS layout: the same real frames with their KITTI-MOTS ground truth (frames 0-5)."""
    root = tmp_path_factory.mktemp("real") / "kitti_mots"
    for seq in ("0000", "0001"):
        link(real_data / "kitti_step/images/train" / seq, root / "training/image_02" / seq)
        txt = real_data / "kitti_mots/instances_txt_0000_0001_f0-5" / f"{seq}.txt"
        link(txt, root / "instances_txt" / f"{seq}.txt")
    return root


@pytest.fixture(scope="session")
def real_mots20_root(real_data: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """MOTS20 layout over the real MOTS20-05 frames 1-15, its gt.txt and seqinfo.ini."""
    root = tmp_path_factory.mktemp("real") / "mots"
    seq = root / "train" / "MOTS20-05"
    link(real_data / "mots20/img1/MOTS20-05", seq / "img1")
    link(real_data / "mots20/gt/MOTS20-05/gt/gt.txt", seq / "gt" / "gt.txt")
    link(real_data / "mots20/gt/MOTS20-05/seqinfo.ini", seq / "seqinfo.ini")
    return root
