"""The loaders, `hvps data check`, `hvps data cache` and the recipe's configs on real files.

The files (KITTI-STEP frames and maps, MOTS20-05, KITTI-MOTS ground truth and two real trackers'
results, Cityscapes-DVPS 16-bit maps) are linked into temporary roots from ``../shared/real_data``
(or ``$HVPS_REAL_DATA``), never copied; every test skips with a reason where they are absent.
The KITTI-STEP stage configs train on the real KITTI frames (fast_dev_run, demo sizes) and the
paper overlay's augmentation runs at their native size. `hvps evaluate mots` against TrackEval on
the real tracker outputs: ``tests/metrics/test_mots_real_data.py``.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hvps_lightning.cli import main
from hvps_lightning.cli.config import composed_config
from hvps_lightning.data.cache import write_resized_copy
from hvps_lightning.data.check import check_dataset
from hvps_lightning.data.datamodule import HVPSDataModule
from hvps_lightning.data.datasets import ClipDataset
from hvps_lightning.data.loaders import decode_image, load_mots_objects, mots_labels
from hvps_lightning.data.transforms import ClipTransform
from hvps_lightning.errors import HVPSError
from hvps_lightning.formats import read_mots_txt, read_png, read_step_png
from hvps_lightning.structures.masks import decode_mask

pytestmark = pytest.mark.real_data


def run_check(dataset: str, root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["data", "check", "--dataset", dataset, "--root", str(root)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def masks_by_frame(ds: ClipDataset) -> dict[tuple[str, str], set[tuple[int, bytes]]]:
    """(sequence, frame) -> {(class, mask bytes)} of every instance of the dataset's targets."""
    found = {}
    for index in range(len(ds)):
        (clip,) = ds[index]
        target = clip["target"]
        found[(clip["meta"]["sequence"], clip["meta"]["frame"])] = {
            (int(label), mask.numpy().tobytes())
            for label, mask in zip(target["labels"], target["masks"], strict=True)
        }
    return found


# ---------------------------------------------------------------------------- KITTI-STEP
def test_kitti_step_frames_and_maps(real_kitti_step_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_check("kitti_step", real_kitti_step_root, capsys)
    assert code == 0, err
    assert "is a valid kitti_step root" in out and "car" in out and "road" in out
    (train,) = check_dataset("kitti_step", real_kitti_step_root).summary
    assert (train.sequences, train.frames, train.labelled_frames) == (2, 12, 12)
    ds = ClipDataset("kitti_step", real_kitti_step_root, "train", clip_length=3,
                     transform=ClipTransform((384, 1248), train=False))  # fmt: skip
    labels = set()
    for index in range(len(ds)):
        (clip,) = ds[index]
        assert clip["frames"].shape == (3, 384, 1248, 3) and clip["meta"]["orig_size"] == (375, 1242)
        labels |= set(clip["target"]["labels"].tolist())
        assert set(clip["target"]["semantic"].unique().tolist()) <= set(range(19)) | {255}
    assert labels == {13} or labels == {11, 13}  # cars (and the pedestrian of 0000)


def test_kitti_mots_masks_equal_the_kitti_step_masks(
    real_kitti_step_root: Path, real_kitti_mots_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run_check("mots", real_kitti_mots_root, capsys)
    assert code == 0, err
    assert "kitti_mots layout" in out
    step = ClipDataset("kitti_step", real_kitti_step_root, "train", clip_length=1)
    mots = ClipDataset("mots", real_kitti_mots_root, "train", label_spec="kitti_step", clip_length=1,
                       sequences=["0000", "0001"])  # fmt: skip
    from_step, from_mots = masks_by_frame(step), masks_by_frame(mots)
    assert from_step.keys() == from_mots.keys() and len(from_step) == 12
    assert sum(len(m) for m in from_mots.values()) > 12
    for key, masks in from_step.items():
        # every car and person of the STEP map is the KITTI-MOTS object of the frame; objects
        # numbered 0 in KITTI-MOTS (ids 1000, 2000) included
        assert masks == from_mots[key], key


def test_kitti_mots_validation_ground_truth(real_data: Path) -> None:
    files = sorted((real_data / "kitti_mots/gt/label_02").glob("*.txt"))
    assert len(files) == 9
    numbered_zero = 0
    for path in files:
        by_frame = load_mots_objects(path)  # every line, class, size and overlap checked
        for frame in sorted(by_frame)[::40]:
            objects = by_frame[frame]
            size = (objects[0].height, objects[0].width)  # KITTI sequences differ by a few pixels
            semantic, instance = mots_labels(objects, size, path, frame)
            for obj in objects:
                mask = decode_mask(obj.rle).astype(bool)
                if obj.class_id == 10:
                    assert (semantic[mask] == 10).all()
                    continue
                assert (semantic[mask] == obj.class_id).all()
                assert (instance[mask] == obj.obj_id % 1000 + 1).all()
                numbered_zero += int(obj.obj_id % 1000 == 0)
    assert numbered_zero > 0  # the case that used to turn into crowd


# ---------------------------------------------------------------------------- MOTS20
def test_mots20_05(real_mots20_root: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_check("mots", real_mots20_root, capsys)
    assert code == 0, err
    assert "mots20 layout" in out and "pedestrian" in out
    gt = read_mots_txt(real_mots20_root / "train/MOTS20-05/gt/gt.txt")
    ds = ClipDataset("mots", real_mots20_root, "train", clip_length=2)
    assert len(ds) == 15
    for index in range(len(ds)):
        (clip,) = ds[index]
        frame = int(clip["meta"]["frame"])
        assert frame == index + 1 and clip["meta"]["orig_size"] == (480, 640)
        people = {o.obj_id: decode_mask(o.rle) for o in gt if o.frame == frame and o.class_id == 2}
        target = clip["target"]
        ids = (target["labels"] * 1000 + target["track_ids"] - 1).tolist()
        assert sorted(ids) == sorted(people)
        for obj_id, mask in zip(ids, target["masks"], strict=True):
            assert np.array_equal(mask.numpy(), people[obj_id])


def test_mots20_reduced_decode(real_mots20_root: Path) -> None:
    jpeg = real_mots20_root / "train/MOTS20-05/img1/000007.jpg"
    full, half = decode_image(jpeg), decode_image(jpeg, min_size=(240, 320))
    assert full.size == half.size == (480, 640) and half.pixels.shape == (240, 320, 3)
    area = full.pixels.reshape(240, 2, 320, 2, 3).mean(axis=(1, 3))
    assert np.abs(half.pixels - area).mean() < 3


# ---------------------------------------------------------------------------- 16-bit maps
def test_cityscapes_16_bit_maps_read_as_values_and_refused_as_step(real_data: Path) -> None:
    path = real_data / "cityscapes_dvps/source/true/000000_000000_segmentation.png"
    values = read_png(path)
    assert values.dtype == np.uint16 and values.shape == (1024, 2048)
    assert values.max() > 255 and set(np.unique(values // 1000).tolist()) <= set(range(34))
    with pytest.raises(HVPSError) as caught:
        read_step_png(path)
    assert str(caught.value) == f"{path}: expected an RGB image with 8 bits per channel, found 16-bit grey"


# ---------------------------------------------------------------------------- hvps data cache
def test_cache_of_the_real_kitti_step_root(real_kitti_step_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "kitti_step_188x621"
    write_resized_copy("kitti_step", real_kitti_step_root, out, (188, 621))
    assert check_dataset("kitti_step", out).ok
    transform = ClipTransform((188, 621), train=False)
    original = ClipDataset("kitti_step", real_kitti_step_root, "train", clip_length=2, transform=transform)
    copy = ClipDataset("kitti_step", out, "train", clip_length=2, transform=transform)
    for index in range(len(original)):
        (a,), (b,) = original[index], copy[index]
        assert torch.equal(a["frames"], b["frames"])  # PNG frames: the same pixels
        for key, value in a["target"].items():
            assert torch.equal(value, b["target"][key]), key


# ---------------------------------------------------------------------------- the recipe on real files
def test_paper_augmentation_at_native_resolution_on_real_frames(real_kitti_step_root: Path) -> None:
    """The paper overlay (image_size null) keeps scale jitter and crops back to each frame's native size."""
    args = dict(composed_config("stages/kitti_step/mots", "paper/mots")["data"]["init_args"])
    assert args["image_size"] is None and args["augment"] is True
    args.update(root=str(real_kitti_step_root), num_workers=0, pin_memory=False, val_split=None,
                sequences={"train": ["0000", "0001"]})  # fmt: skip
    dm = HVPSDataModule(**args)
    dm.setup("fit")
    transform = dm.transform(train=True)
    scales = [transform.draw(seed, 375, 1242).scaled_size[0] / 375 for seed in range(50)]
    assert min(scales) < 0.85 and max(scales) > 1.15 and all(0.74 <= s <= 1.26 for s in scales)
    plain = ClipDataset("kitti_step", real_kitti_step_root, "train", clip_length=3)
    torch.manual_seed(0)
    changed = 0
    for index in range(0, 12, 3):
        for clip in dm.dataset("train")[index]:
            assert clip["frames"].shape == (3, 375, 1242, 3) and clip["meta"]["orig_size"] == (375, 1242)
            assert clip["target"]["semantic"].shape == (375, 1242)
        (reference,) = plain[index]
        changed += int(not torch.equal(dm.dataset("train")[index][0]["frames"], reference["frames"]))
    assert changed == 4


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mots", "semantic"])
def test_kitti_step_stage_config_trains_on_the_real_frames(
    model: str, real_kitti_step_root: Path, tmp_path: Path
) -> None:
    """`hvps fit` of the KITTI-STEP stage config with the demo sizes, a fast_dev_run on real KITTI frames."""
    record = tmp_path / "record.json"
    args = ["fit", "--config", f"stages/kitti_step/{model}", "--config", f"demo/{model}",
            "--data.init_args.root", str(real_kitti_step_root), "--data.init_args.val_split", "train",
            "--data.init_args.sequences", json.dumps({"train": ["0000"], "val": ["0001"]}),
            "--trainer.fast_dev_run", "1", "--trainer.default_root_dir", str(tmp_path),
            "--trainer.logger", "false",
            "--trainer.callbacks+", json.dumps({"class_path": "batch_recorder.BatchRecorder",
                                                "init_args": {"path": str(record)}})]  # fmt: skip
    assert main(args) == 0
    seen = json.loads(record.read_text())
    (batch,) = seen["batches"]
    real = (real_kitti_step_root / "images" / "train" / "0000").resolve()
    assert all(Path(image).resolve().parent == real for image in batch["images"])
    assert {tuple(s) for s in batch["orig_sizes"]} == {(375, 1242)}  # the demo keeps the native size
    assert batch["shape"][-2:] == [375, 1242] and math.isfinite(batch["loss"])
    if model == "mots":  # validated on 0001 by the offline tracker with the paper's fusion rule
        assert "val/aq" in seen["metrics"] and any("MOTSA" in key for key in seen["metrics"])
    else:
        assert "val/miou" in seen["metrics"]
