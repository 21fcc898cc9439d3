"""MOTS layouts (MOTS20 and KITTI-MOTS) built from generated data: `hvps data check` and the datasets."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from hvps_lightning.cli import main
from hvps_lightning.data.check import check_dataset
from hvps_lightning.data.datamodule import HVPSDataModule
from hvps_lightning.data.datasets import ClipDataset
from hvps_lightning.data.layout import mots_layout
from hvps_lightning.errors import HVPSError
from hvps_lightning.formats import MOTSObject, read_mots_txt, write_mots_txt
from hvps_lightning.structures.masks import decode_mask, encode_mask


def run_check(root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["data", "check", "--dataset", "mots", "--root", str(root)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


# ---------------------------------------------------------------------------- check
def test_mots20_root_passes(mots20_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert mots_layout(mots20_root) == "mots20"
    code, out, err = run_check(mots20_root, capsys)
    assert code == 0, err
    assert "mots20 layout" in out and "pedestrian" in out
    assert "official sequences missing: MOTS20-05, MOTS20-11" in err
    (train,) = check_dataset("mots", mots20_root).summary
    assert (train.sequences, train.frames, train.labelled_frames) == (2, 20, 20)
    objects = read_mots_txt(mots20_root / "train/MOTS20-09/gt/gt.txt") + read_mots_txt(
        mots20_root / "train/MOTS20-02/gt/gt.txt"
    )
    assert train.mots_objects == len(objects)


def test_kitti_mots_root_passes(kitti_mots_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert mots_layout(kitti_mots_root) == "kitti_mots"
    code, out, err = run_check(kitti_mots_root, capsys)
    assert code == 0, err
    assert "kitti_mots layout" in out
    assert "car" in out and "pedestrian" in out


def _append(path: Path, obj: MOTSObject) -> None:
    write_mots_txt(path, [*read_mots_txt(path), obj])


def test_overlapping_mots20_masks(mots20_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = mots20_root / "train/MOTS20-09/gt/gt.txt"
    first = read_mots_txt(gt)[0]
    _append(gt, MOTSObject(first.frame, 2999, 2, dict(first.rle)))
    code, _, err = run_check(mots20_root, capsys)
    assert code == 2 and "Traceback" not in err
    (line,) = [e for e in err.splitlines() if e.startswith(str(gt))]
    assert f"frame {first.frame}: masks of id" in line and "overlap" in line
    with pytest.raises(HVPSError) as caught:
        ClipDataset("mots", mots20_root, "train")
    assert str(caught.value) == line


def test_mots20_mask_sizes(mots20_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    gt = mots20_root / "train/MOTS20-02/gt/gt.txt"
    objects = read_mots_txt(gt)
    frame = objects[0].frame
    small = np.zeros((50, 60), np.uint8)
    small[5:10, 5:10] = 1
    # masks of one frame with different sizes
    write_mots_txt(gt, [*objects, MOTSObject(frame, 2500, 2, encode_mask(small))])
    code, _, err = run_check(mots20_root, capsys)
    assert code == 2
    assert f"{gt}: frame {frame}: masks of different sizes" in err
    # every mask of a frame of another size than its image
    write_mots_txt(
        gt, [o for o in objects if o.frame != frame] + [MOTSObject(frame, 2500, 2, encode_mask(small))]
    )
    code, _, err = run_check(mots20_root, capsys)
    image = mots20_root / f"train/MOTS20-02/img1/{frame:06d}.jpg"
    line = f"{gt}: frame {frame}: mask size 60x50 of id 2500 differs from its image {image} (160x96)"
    assert code == 2 and line in err.splitlines()
    ds = ClipDataset("mots", mots20_root, "train", sequences=["MOTS20-02"])
    with pytest.raises(HVPSError) as caught:
        ds[frame - 1]
    assert str(caught.value) == line


def test_mots20_layout_problems(mots20_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (mots20_root / "train/MOTS20-09/gt/gt.txt").unlink()
    seqinfo = mots20_root / "train/MOTS20-02/seqinfo.ini"
    text = seqinfo.read_text().replace("seqLength=10", "seqLength=12").replace("imWidth=160", "imWidth=161")
    seqinfo.write_text(text)
    code, _, err = run_check(mots20_root, capsys)
    assert code == 2
    image = mots20_root / "train/MOTS20-02/img1/000001.jpg"
    assert f"{image}: size 160x96 differs from seqinfo.ini (imWidth=161, imHeight=96)" in err
    assert f"{mots20_root / 'train/MOTS20-09/gt/gt.txt'}: missing" in err
    assert f"{seqinfo}: seqLength 12 but" in err


def test_mots_wrong_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "somewhere").mkdir()
    code, _, err = run_check(tmp_path, capsys)
    assert code == 2
    assert f"{tmp_path}: wrong layout: expected MOTS20" in err


# ---------------------------------------------------------------------------- datasets
def test_mots20_dataset_in_its_own_label_space(mots20_root: Path) -> None:
    ds = ClipDataset("mots", mots20_root, "train", clip_length=2, sequences=["MOTS20-09"])
    gt = read_mots_txt(mots20_root / "train/MOTS20-09/gt/gt.txt")
    for index in (0, 5, 9):
        clip = ds[index][0]
        frame = int(clip["meta"]["frame"])
        assert frame == index + 1  # MOTS20 frames count from 1
        expected = sorted(o.obj_id for o in gt if o.frame == frame and o.class_id == 2)
        target = clip["target"]
        # MOTS object k of a class is instance k + 1 (KITTI-MOTS counts objects from 0; 0 is crowd)
        ids = (target["labels"] * 1000 + target["track_ids"] - 1).tolist()
        assert ids == expected
        for obj_id, mask in zip(ids, target["masks"], strict=True):
            (obj,) = [o for o in gt if o.frame == frame and o.obj_id == obj_id]
            assert np.array_equal(mask.numpy(), decode_mask(obj.rle))
        # background 0, pedestrian 2, ignore regions 10 (the MOTS spec's ignore label)
        assert set(target["semantic"].unique().tolist()) <= {0, 2, 10}


def test_mots20_under_mot_step_is_person_versus_void(mots20_root: Path) -> None:
    dm = HVPSDataModule(
        finetune_stage="mot_step",
        dataset="mots",
        root=str(mots20_root),
        val_split=None,
        batch_size=2,
        image_size=(48, 80),
    )
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert dm.dataset_name == "motchallenge_step"
    for target in batch["targets"]:
        assert set(target["semantic"].unique().tolist()) <= {4, 255}
        assert set(target["labels"].tolist()) <= {4}
        assert target["masks"].shape[0] > 0
        person = target["semantic"] == 4
        assert bool((target["masks"].sum(0) > 0).eq(person).all())


def test_kitti_mots_dataset_splits_like_kitti_step(kitti_mots_root: Path) -> None:
    train = ClipDataset("mots", kitti_mots_root, "train")
    val = ClipDataset("mots", kitti_mots_root, "val", label_spec="kitti_step")
    assert train.sequence_names == ["0000"] and val.sequence_names == ["0002"]
    clip = val[0][0]
    assert clip["meta"]["frame"] == "000000"  # KITTI-MOTS frames count from 0
    assert set(clip["target"]["labels"].tolist()) <= {11, 13}
    assert set(clip["target"]["semantic"].unique().tolist()) <= {11, 13, 255}
