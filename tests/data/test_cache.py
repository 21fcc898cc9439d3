"""`hvps data cache`: a resized copy in the official layout that `hvps data check` accepts, same clips."""

from __future__ import annotations

import configparser
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hvps_lightning.cli import main
from hvps_lightning.data.cache import CACHE_RECORD, write_resized_copy
from hvps_lightning.data.check import check_dataset
from hvps_lightning.data.datasets import ClipDataset
from hvps_lightning.data.loaders import read_image
from hvps_lightning.data.transforms import ClipTransform, normalize_frames
from hvps_lightning.errors import HVPSError
from hvps_lightning.formats import read_coco_panoptic

SIZE = (48, 80)
LAYOUTS = {
    # name: (dataset, root fixture, split read back, label spec, exact: PNG frames come out bit-identical)
    "motchallenge_step": ("motchallenge_step", "synth_mot_step_root", "val", None, True),
    "kitti_step": ("kitti_step", "synth_kitti_step_root", "val", None, True),
    "kitti_panoptic": ("kitti_panoptic", "synth_kitti_panoptic_root", "train", None, True),
    "mots20": ("mots", "synth_mots20_root", "train", "motchallenge_step", False),
    "kitti_mots": ("mots", "synth_kitti_mots_root", "val", "kitti_step", True),
}


def clips(dataset: str, root: Path, split: str, label_spec: str | None) -> list[dict]:
    transform = ClipTransform(SIZE, train=False)
    ds = ClipDataset(dataset, root, split, label_spec=label_spec, clip_length=2, transform=transform)
    return [ds[i][0] for i in range(len(ds))]


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_the_copy_passes_the_check_and_gives_the_same_clips(
    layout: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    dataset, fixture, split, label_spec, exact = LAYOUTS[layout]
    root = request.getfixturevalue(fixture)
    out = tmp_path / "cache"
    summary = write_resized_copy(dataset, root, out, SIZE, workers=2)
    assert summary.frames > 0 and not list(tmp_path.glob(".cache.partial-*"))
    original, copy = check_dataset(dataset, root), check_dataset(dataset, out)
    assert copy.ok, copy.problems
    assert copy.layout == original.layout
    for before, after in zip(original.summary, copy.summary, strict=True):
        assert (before.folder, before.sequences) == (after.folder, after.sequences)
        assert before.frames == after.frames
        assert before.labelled_frames == after.labelled_frames and after.classes <= before.classes
    assert json.loads((out / CACHE_RECORD).read_text())["size"] == list(SIZE)
    pairs = zip(clips(dataset, root, split, label_spec), clips(dataset, out, split, label_spec), strict=True)
    for a, b in pairs:
        assert a["meta"]["frame"] == b["meta"]["frame"] and b["meta"]["orig_size"] == SIZE
        for key, value in a["target"].items():
            assert torch.equal(value, b["target"][key]), key  # labels: the same pixels, nearest both ways
        if exact:
            assert torch.equal(a["frames"], b["frames"])
        else:  # JPEG frames were encoded once more: a few grey levels apart on average
            assert (normalize_frames(a["frames"]) - normalize_frames(b["frames"])).abs().mean() < 0.1


def test_mots20_copy_announces_its_size(synth_mots20_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    write_resized_copy("mots", synth_mots20_root, out, SIZE)
    parser = configparser.ConfigParser()
    parser.read_string((out / "train/MOTS20-09/seqinfo.ini").read_text())
    assert (parser["Sequence"]["imHeight"], parser["Sequence"]["imWidth"]) == ("48", "80")
    assert parser["Sequence"]["seqLength"] == "10"  # the rest as it was
    assert read_image(out / "train/MOTS20-09/img1/000001.jpg").shape == (*SIZE, 3)


def test_coco_segments_are_measured_again(synth_kitti_panoptic_root: Path, tmp_path: Path) -> None:
    out = tmp_path / "cache"
    write_resized_copy("kitti_panoptic", synth_kitti_panoptic_root, out, SIZE)
    coco = read_coco_panoptic(out / "training/annotations.json", out / "training/annotations")
    for image in coco.images:
        assert (image.height, image.width) == SIZE
        ids = coco.read_ids(image)
        for segment in image.segments:
            assert segment.area == int((ids == segment.id).sum()) > 0
        assert {s.id for s in image.segments} == set(np.unique(ids).tolist()) - {0}


def test_command_line_refusals_leave_nothing_behind(
    synth_mot_step_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    def cache(root: Path, out: Path, *extra: str) -> tuple[int, str]:
        code = main(["data", "cache", "--dataset", "motchallenge_step", "--root", str(root),
                     "--size", "48", "80", "--out", str(out), *extra])  # fmt: skip
        return code, capsys.readouterr().err

    out = tmp_path / "cache"
    assert cache(synth_mot_step_root, out)[0] == 0
    code, err = cache(synth_mot_step_root, out)
    assert code == 2 and "folder exists and is not empty; pass --overwrite" in err
    assert cache(synth_mot_step_root, out, "--overwrite")[0] == 0
    assert check_dataset("motchallenge_step", out).ok
    code, err = cache(synth_mot_step_root, synth_mot_step_root / "inside")
    assert code == 2 and "must lie outside the dataset root" in err
    # a bad file: its one line, and no copy (not even a partial one)
    broken = tmp_path / "broken"
    shutil.copytree(synth_mot_step_root, broken)
    image = broken / "images/train/0002/000007.png"
    image.write_bytes(image.read_bytes()[:300])
    code, err = cache(broken, tmp_path / "never")
    assert code == 2 and f"{image}: unreadable or truncated image" in err and "Traceback" not in err
    assert not (tmp_path / "never").exists() and not list(tmp_path.glob(".never.*"))
    with pytest.raises(HVPSError, match="--size must be two positive numbers"):
        write_resized_copy("motchallenge_step", synth_mot_step_root, tmp_path / "zero", (0, 80))
