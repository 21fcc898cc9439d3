"""Frame index and clip datasets over generated roots: windows, padding, targets, identities."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from hvps_lightning.data.datasets import (
    ClipDataset,
    FrameDataset,
    build_frame_index,
    clip_frame_indices,
    clip_offsets,
)
from hvps_lightning.data.transforms import ClipTransform
from hvps_lightning.errors import HVPSError
from hvps_lightning.formats import read_step_png, write_step_png


# ---------------------------------------------------------------------------- windows
def test_previous_window_repeats_the_first_frame_at_sequence_start() -> None:
    assert clip_frame_indices(0, 10, 3) == [0, 0, 0]
    assert clip_frame_indices(1, 10, 3) == [0, 0, 1]
    assert clip_frame_indices(5, 10, 3) == [3, 4, 5]
    assert clip_frame_indices(5, 10, 3, stride=2) == [1, 3, 5]


def test_centred_window_repeats_edges() -> None:
    assert clip_offsets(3, "centred") == [-1, 0, 1]
    assert clip_frame_indices(0, 10, 3, "centred") == [0, 0, 1]
    assert clip_frame_indices(9, 10, 3, "centred") == [8, 9, 9]
    assert clip_frame_indices(4, 10, 5, "centred") == [2, 3, 4, 5, 6]


def test_bad_window_arguments() -> None:
    with pytest.raises(HVPSError, match="clip_mode"):
        clip_offsets(3, "future")  # type: ignore[arg-type]
    with pytest.raises(HVPSError, match="clip_length"):
        clip_offsets(0)


# ---------------------------------------------------------------------------- index
def test_frame_index_per_split(synth_mot_step_root: Path, synth_kitti_step_root: Path) -> None:
    # MOTChallenge-STEP keeps train (0009) and val (0002) in one folder: split by official names.
    train = build_frame_index("motchallenge_step", synth_mot_step_root, "train")
    val = build_frame_index("motchallenge_step", synth_mot_step_root, "val")
    assert [s.name for s in train.sequences] == ["0009"] and [s.name for s in val.sequences] == ["0002"]
    records = val.records
    assert len(records) == len(val) == 10
    assert [r.frame for r in records] == [f"{i:06d}" for i in range(1, 11)]
    assert [r.frame_index for r in records] == list(range(10))
    assert records[3].image_path == synth_mot_step_root / "images/train/0002/000004.png"
    assert records[3].panoptic_path == synth_mot_step_root / "panoptic_maps/train/0002/000004.png"
    kitti = build_frame_index("kitti_step", synth_kitti_step_root, "val", max_frames=4)
    assert [s.name for s in kitti.sequences] == ["0002"] and len(kitti) == 4


def test_frame_index_errors(synth_mot_step_root: Path) -> None:
    with pytest.raises(HVPSError, match="no split 'validation'"):
        build_frame_index("motchallenge_step", synth_mot_step_root, "validation")
    with pytest.raises(HVPSError, match="sequences 0042 not found in split 'train'"):
        build_frame_index("motchallenge_step", synth_mot_step_root, "train", sequences=["0042"])


# ---------------------------------------------------------------------------- clips
def test_clip_padding_at_sequence_start(synth_mot_step_root: Path) -> None:
    ds = ClipDataset("motchallenge_step", synth_mot_step_root, "val", clip_length=3)
    assert ds.target_index == 2
    first = ds[0][0]["frames"]
    assert first.shape == (3, 96, 160, 3) and first.dtype == torch.uint8  # normalised by the collate
    assert torch.equal(first[0], first[1]) and torch.equal(first[1], first[2])
    second = ds[1][0]["frames"]
    assert torch.equal(second[0], second[1]) and torch.equal(second[1], first[2])
    assert not torch.equal(second[1], second[2])
    later = ds[5][0]["frames"]
    assert torch.equal(later[1], ds[4][0]["frames"][2])  # frame 4 is the previous frame of frame 5
    assert torch.equal(later[0], ds[3][0]["frames"][2])


def test_centred_clip_targets_the_middle_frame(synth_mot_step_root: Path) -> None:
    ds = ClipDataset("motchallenge_step", synth_mot_step_root, "val", clip_length=3, clip_mode="centred")
    assert ds.target_index == 1
    clip = ds[9][0]
    assert clip["target_index"] == 1
    assert torch.equal(clip["frames"][1], clip["frames"][2])  # the last frame repeats
    assert clip["meta"]["frame_index"] == 9


def test_targets_follow_the_contract(synth_kitti_step_root: Path) -> None:
    ds = ClipDataset("kitti_step", synth_kitti_step_root, "train", clip_length=2)
    seen_labels: set[int] = set()
    for index in range(len(ds)):
        (clip,) = ds[index]
        target, meta = clip["target"], clip["meta"]
        semantic, instance = read_step_png(Path(meta["image_path"].replace("/images/", "/panoptic_maps/")))
        assert torch.equal(target["semantic"], torch.from_numpy(semantic).long())
        assert torch.equal(target["panoptic"], torch.from_numpy(semantic * 1000 + instance).long())
        n = target["masks"].shape[0]
        assert target["masks"].dtype == torch.uint8 and target["boxes"].dtype == torch.float32
        assert target["boxes"].shape == (n, 4) and target["labels"].shape == (n,)
        for key in ("labels", "track_ids", "identities", "semantic", "panoptic"):
            assert target[key].dtype == torch.int64, key
        for mask, box, label, track in zip(
            target["masks"], target["boxes"], target["labels"], target["track_ids"], strict=True
        ):
            ys, xs = torch.nonzero(mask, as_tuple=True)
            assert box.tolist() == [xs.min(), ys.min(), xs.max() + 1, ys.max() + 1]
            assert int(label) in (11, 13) and int(track) > 0
            expected = (semantic == int(label)) & (instance == int(track))
            assert np.array_equal(mask.numpy().astype(bool), expected)
            seen_labels.add(int(label))
        assert meta["orig_size"] == (96, 160) and meta["sequence"] == "0000"
    assert seen_labels == {11, 13}


def test_crowd_is_not_an_instance(synth_mot_step_root: Path, tmp_path: Path) -> None:
    root = tmp_path / "mot"
    shutil.copytree(synth_mot_step_root, root)
    path = root / "panoptic_maps/train/0002/000001.png"
    semantic, instance = read_step_png(path)
    semantic[:6, :6], instance[:6, :6] = 4, 0  # person pixels without an instance: crowd
    write_step_png(path, semantic, instance)
    target = ClipDataset("motchallenge_step", root, "val")[0][0]["target"]
    assert (target["semantic"][:6, :6] == 4).all()
    assert (target["panoptic"][:6, :6] == 4000).all()
    assert not target["masks"][:, :6, :6].any()
    assert (target["track_ids"] > 0).all()


def test_identities_are_unique_across_sequences(synth_mot_step_root: Path) -> None:
    mot = ClipDataset("motchallenge_step", synth_mot_step_root, "train", sequences=["0009", "0002"])
    identities: dict[str, set[int]] = {}
    tracks: dict[str, set[int]] = {}
    for index in range(len(mot)):
        target, meta = mot[index][0]["target"], mot[index][0]["meta"]
        identities.setdefault(meta["sequence"], set()).update(target["identities"].tolist())
        tracks.setdefault(meta["sequence"], set()).update(target["track_ids"].tolist())
        # within a frame, identities are distinct
        assert len(set(target["identities"].tolist())) == target["identities"].numel()
    assert tracks["0009"] & tracks["0002"], "the generator reuses track ids between sequences"
    assert not identities["0009"] & identities["0002"]


def test_identities_stable_within_a_sequence(synth_mot_step_root: Path) -> None:
    ds = ClipDataset("motchallenge_step", synth_mot_step_root, "val")
    by_track: dict[int, set[int]] = {}
    for index in range(len(ds)):
        target = ds[index][0]["target"]
        for track, identity in zip(target["track_ids"].tolist(), target["identities"].tolist(), strict=True):
            by_track.setdefault(track, set()).add(identity)
    assert by_track and all(len(ids) == 1 for ids in by_track.values())


def test_two_clips_per_item_are_of_one_sequence_at_different_times(synth_mot_step_root: Path) -> None:
    torch.manual_seed(0)
    ds = ClipDataset("motchallenge_step", synth_mot_step_root, "train", clips_per_item=2, clip_gap=(2, 4))
    gaps = []
    for index in range(len(ds)):
        first, second = ds[index]
        assert first["meta"]["sequence"] == second["meta"]["sequence"] == "0009"
        assert first["meta"]["frame_index"] == index
        gaps.append(abs(second["meta"]["frame_index"] - index))
    assert set(gaps) <= {2, 3, 4} and len(set(gaps)) > 1


def test_kitti_panoptic_clip_repeats_the_image_and_views_differ(synth_kitti_panoptic_root: Path) -> None:
    torch.manual_seed(0)
    transform = ClipTransform((64, 96), train=True, ignore_value=255000)
    ds = ClipDataset(
        "kitti_panoptic", synth_kitti_panoptic_root, "train", clips_per_item=2, transform=transform
    )
    assert len(ds) == 6 and len(ds.sequences) == 6  # every image is a one-frame sequence
    first, second = ds[0]
    for clip in (first, second):
        assert torch.equal(clip["frames"][0], clip["frames"][1]) and torch.equal(
            clip["frames"][1], clip["frames"][2]
        )
        assert clip["target"]["masks"].shape[1:] == (64, 96)
        assert set(clip["target"]["labels"].tolist()) <= {11, 12, 13, 14, 15, 16, 17, 18}
    assert first["meta"]["image_path"] == second["meta"]["image_path"]
    assert not torch.equal(first["frames"], second["frames"])  # differently augmented views
    # identities are the image's instance ids: shared by both views
    assert set(first["target"]["identities"].tolist()) & set(second["target"]["identities"].tolist())


def test_kitti_panoptic_labels_match_the_json(synth_kitti_panoptic_root: Path) -> None:
    from hvps_lightning.formats import read_coco_panoptic

    coco = read_coco_panoptic(
        synth_kitti_panoptic_root / "training/annotations.json",
        synth_kitti_panoptic_root / "training/annotations",
    )
    ds = FrameDataset("kitti_panoptic", synth_kitti_panoptic_root, "train")
    for index, image in enumerate(sorted(coco.images, key=lambda im: im.file_name)):
        target = ds[index][0]["target"]
        assert ds[index][0]["frames"].shape[0] == 1
        things = [
            s for s in image.segments if s.category_id in (24, 25, 26, 27, 28, 31, 32, 33) and not s.iscrowd
        ]
        assert target["masks"].shape[0] == len(things)
        assert sorted(target["masks"].sum((1, 2)).tolist()) == sorted(s.area for s in things)
