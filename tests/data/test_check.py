"""`hvps data check` on generated STEP / KITTI panoptic roots, clean and with one broken file each;
the datasets raise the same one-line problem when they read the broken file."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from hvps_lightning.cli import main
from hvps_lightning.data.check import check_dataset
from hvps_lightning.data.datasets import ClipDataset
from hvps_lightning.data.layout import scan_root
from hvps_lightning.errors import HVPSError
from hvps_lightning.formats import (
    IGNORE_CLASS,
    IGNORE_ID,
    MOTSObject,
    read_mots_txt,
    read_step_png,
    write_mots_txt,
    write_png,
    write_step_png,
)


def run_check(dataset: str, root: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["data", "check", "--dataset", dataset, "--root", str(root)])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def load_every_item(dataset: str, root: Path, splits: tuple[str, ...]) -> None:
    for split in splits:
        ds = ClipDataset(dataset, root, split, clip_length=2)
        for i in range(len(ds)):
            ds[i]


@pytest.fixture
def mot_copy(synth_mot_step_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "motchallenge_step"
    shutil.copytree(synth_mot_step_root, root)
    return root


# ---------------------------------------------------------------------------- clean roots
@pytest.mark.parametrize(
    ("dataset", "fixture", "folders"),
    [
        ("motchallenge_step", "synth_mot_step_root", ["train"]),
        ("kitti_step", "synth_kitti_step_root", ["train", "val"]),
        ("kitti_panoptic", "synth_kitti_panoptic_root", ["training", "validation"]),
    ],
)
def test_clean_generated_roots_pass_with_a_summary(
    dataset: str,
    fixture: str,
    folders: list[str],
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
) -> None:
    root = request.getfixturevalue(fixture)
    code, out, err = run_check(dataset, root, capsys)
    assert code == 0, err
    assert f"valid {dataset} root" in out
    for folder in folders:
        assert folder in out
    assert "person" in out  # classes found
    assert "Traceback" not in err
    if dataset != "kitti_panoptic":
        # Missing official sequences (the generator writes only a few) are warnings, not errors.
        assert "warning:" in err and "official sequences" in err


def test_report_counts_what_the_generator_wrote(synth_mot_step_root: Path) -> None:
    report = check_dataset("motchallenge_step", synth_mot_step_root)
    assert report.ok and report.layout == "step"
    (train,) = report.summary
    assert (train.folder, train.sequences, train.frames, train.labelled_frames) == ("train", 2, 20, 20)
    spec_person = 4
    assert spec_person in train.classes and 255 not in train.classes
    # Instances counted per (sequence, class, track id) match the MOTS txt ground truth.
    expected = set()
    for seq in ("0002", "0009"):
        for obj in read_mots_txt(synth_mot_step_root / "instances_txt" / "train" / f"{seq}.txt"):
            if obj.class_id == 2:
                expected.add((f"train/{seq}", spec_person, obj.obj_id % 1000))
    assert train.instances == expected
    assert train.mots_objects > 0


def test_missing_official_sequence_is_a_warning(mot_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    for sub in ("images", "panoptic_maps"):
        shutil.rmtree(mot_copy / sub / "train" / "0002")
    (mot_copy / "instances_txt" / "train" / "0002.txt").unlink()
    code, _, err = run_check("motchallenge_step", mot_copy, capsys)
    assert code == 0
    assert "official sequences missing: 0002" in err


# ---------------------------------------------------------------------------- broken STEP roots
def _truncate(path: Path) -> Path:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    return path


def break_truncated_image(root: Path) -> Path:
    return _truncate(root / "images/train/0009/000003.png")


def break_truncated_map(root: Path) -> Path:
    return _truncate(root / "panoptic_maps/train/0009/000004.png")


def break_missing_map(root: Path) -> Path:
    (root / "panoptic_maps/train/0009/000005.png").unlink()
    return root / "images/train/0009/000005.png"


def break_missing_image(root: Path) -> Path:
    (root / "images/train/0002/000006.png").unlink()
    return root / "panoptic_maps/train/0002/000006.png"


def break_size_mismatch(root: Path) -> Path:
    path = root / "panoptic_maps/train/0009/000002.png"
    semantic, instance = read_step_png(path)
    write_step_png(path, semantic[:80], instance[:80])
    return path


def break_semantic_out_of_range(root: Path) -> Path:
    path = root / "panoptic_maps/train/0002/000007.png"
    semantic, instance = read_step_png(path)
    semantic[:4, :4] = 9  # MOTChallenge-STEP has 7 classes
    write_step_png(path, semantic, instance)
    return path


def break_unreadable_image(root: Path) -> Path:
    path = root / "images/train/0009/000008.png"
    path.write_bytes(b"this is not a PNG")
    return path


def break_wrong_layout(root: Path) -> Path:
    (root / "images").rename(root / "frames")
    return root


def break_stray_file(root: Path) -> Path:
    path = root / "images/train/000001.png"
    shutil.copy(root / "images/train/0009/000001.png", path)
    return path


def _edit_mots(root: Path, edit: Callable[[list[MOTSObject]], list[MOTSObject]]) -> Path:
    path = root / "instances_txt/train/0009.txt"
    write_mots_txt(path, edit(read_mots_txt(path)))
    return path


def break_overlapping_mots_mask(root: Path) -> Path:
    def edit(objects: list[MOTSObject]) -> list[MOTSObject]:
        first = objects[0]
        return [*objects, MOTSObject(first.frame, 2999, 2, dict(first.rle))]

    return _edit_mots(root, edit)


def break_mots_mask_over_ignore_region(root: Path) -> Path:
    def edit(objects: list[MOTSObject]) -> list[MOTSObject]:
        first = objects[0]
        return [*objects, MOTSObject(first.frame, IGNORE_ID, IGNORE_CLASS, dict(first.rle))]

    return _edit_mots(root, edit)


def break_repeated_mots_id(root: Path) -> Path:
    def edit(objects: list[MOTSObject]) -> list[MOTSObject]:
        first, second = objects[0], next(o for o in objects[1:] if o.frame == objects[0].frame)
        return [o for o in objects if o is not second] + [
            MOTSObject(second.frame, first.obj_id, 2, second.rle)
        ]

    return _edit_mots(root, edit)


BREAKS: dict[str, tuple[Callable[[Path], Path], str, tuple[str, ...], int]] = {
    # name: (break the root, a phrase of the problem, splits whose dataset hits it, problem lines)
    "truncated image": (break_truncated_image, "truncated", ("train",), 1),
    "unreadable image": (break_unreadable_image, "not a readable image", ("train",), 1),
    "truncated map": (break_truncated_map, "truncated", ("train",), 1),
    "image without map": (break_missing_map, "without its panoptic map", ("train",), 1),
    # The MOTS txt of the sequence still names the frame: a second line, about the txt.
    "map without image": (break_missing_image, "without its image", ("val",), 2),
    "size mismatch": (break_size_mismatch, "differs from its image", ("train",), 1),
    "semantic id out of range": (break_semantic_out_of_range, "semantic ids 9 outside", ("val",), 1),
    "wrong layout": (break_wrong_layout, "wrong layout", ("train",), 1),
    "image outside a sequence folder": (break_stray_file, "sequence folders", ("train",), 1),
    "overlapping MOTS masks": (break_overlapping_mots_mask, "overlap", (), 1),
    "MOTS mask over an ignore region": (
        break_mots_mask_over_ignore_region,
        "the ignore region overlap",
        (),
        1,
    ),
    "repeated MOTS id": (break_repeated_mots_id, "appears more than once", (), 1),
}


@pytest.mark.parametrize("name", list(BREAKS))
def test_broken_step_root_fails_with_one_line_naming_the_file(
    name: str, mot_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    breaker, phrase, splits, lines = BREAKS[name]
    bad_file = breaker(mot_copy)
    code, _, err = run_check("motchallenge_step", mot_copy, capsys)
    assert code == 2
    assert "Traceback" not in err
    problem_lines = [
        line for line in err.splitlines() if not line.startswith(("warning:", "hvps data check:"))
    ]
    assert len(problem_lines) == lines, err
    (line,) = [line for line in problem_lines if line.startswith(f"{bad_file}: ")]
    assert phrase in line
    assert err.strip().endswith(f"{lines} problem{'s' if lines > 1 else ''} in {mot_copy}")

    # The dataset of the split holding that file raises the same message when it reads it.
    for split in splits:
        with pytest.raises(HVPSError) as caught:
            load_every_item("motchallenge_step", mot_copy, (split,))
        assert str(caught.value) == line


def test_every_bad_file_gets_its_own_line(mot_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = {
        break_truncated_image(mot_copy),
        break_missing_map(mot_copy),
        break_semantic_out_of_range(mot_copy),
    }
    code, _, err = run_check("motchallenge_step", mot_copy, capsys)
    assert code == 2
    named = {
        Path(line.split(": ", 1)[0]) for line in err.splitlines() if not line.startswith(("warning", "hvps"))
    }
    assert named == bad


def test_root_not_found(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run_check("kitti_step", tmp_path / "nowhere", capsys)
    assert code == 2
    assert f"{tmp_path / 'nowhere'}: dataset root not found" in err
    with pytest.raises(HVPSError, match="dataset root not found"):
        ClipDataset("kitti_step", tmp_path / "nowhere", "train")


def test_unlabelled_split_needs_no_maps(mot_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # A test folder (official release: images only) is checked without panoptic maps.
    shutil.copytree(mot_copy / "images/train/0009", mot_copy / "images/test/0001")
    code, out, err = run_check("motchallenge_step", mot_copy, capsys)
    assert code == 0, err
    assert "test" in out
    ds = ClipDataset("motchallenge_step", mot_copy, "test")
    clip = ds[0][0]
    assert clip["target"]["masks"].shape[0] == 0
    assert set(clip["target"]["semantic"].unique().tolist()) == {255}


def test_scan_pairs_every_image_with_its_map(synth_kitti_step_root: Path) -> None:
    scan = scan_root("kitti_step", synth_kitti_step_root)
    assert not scan.problems
    assert [s.key for s in scan.sequences] == ["train/0000", "val/0002"]
    for seq in scan.sequences:
        assert [f.stem for f in seq.frames] == [f"{i:06d}" for i in range(10)]
        for frame in seq.frames:
            assert (
                frame.label
                == synth_kitti_step_root / "panoptic_maps" / seq.split_folder / seq.name / frame.image.name
            )


# ---------------------------------------------------------------------------- KITTI panoptic (COCO)
@pytest.fixture
def panoptic_copy(synth_kitti_panoptic_root: Path, tmp_path: Path) -> Path:
    root = tmp_path / "kitti_panoptic"
    shutil.copytree(synth_kitti_panoptic_root, root)
    return root


def _first_annotation(root: Path) -> tuple[Path, dict]:
    json_path = root / "training/annotations.json"
    data = json.loads(json_path.read_text())
    return json_path, data


def test_kitti_panoptic_truncated_annotation(panoptic_copy: Path, capsys: pytest.CaptureFixture[str]) -> None:
    _, data = _first_annotation(panoptic_copy)
    png = _truncate(panoptic_copy / "training/annotations" / data["annotations"][0]["file_name"])
    code, _, err = run_check("kitti_panoptic", panoptic_copy, capsys)
    assert code == 2 and "Traceback" not in err
    assert f"{png}: unreadable or truncated" in err
    with pytest.raises(HVPSError, match="unreadable or truncated"):
        load_every_item("kitti_panoptic", panoptic_copy, ("train",))


def test_kitti_panoptic_missing_annotation_png(
    panoptic_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, data = _first_annotation(panoptic_copy)
    name = data["annotations"][0]["file_name"]
    (panoptic_copy / "training/annotations" / name).unlink()
    image = panoptic_copy / "training/images" / data["images"][0]["file_name"]
    code, _, err = run_check("kitti_panoptic", panoptic_copy, capsys)
    assert code == 2
    assert f"{image}: image without its panoptic map" in err
    with pytest.raises(HVPSError, match="image without its panoptic map"):
        ClipDataset("kitti_panoptic", panoptic_copy, "train")


def test_kitti_panoptic_unknown_segment_and_size(
    panoptic_copy: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _, data = _first_annotation(panoptic_copy)
    png = panoptic_copy / "training/annotations" / data["annotations"][1]["file_name"]
    write_png(png, np.full((96, 160, 3), 7, dtype=np.uint8))  # id 7 + 7*256 + 7*65536: unknown
    small = panoptic_copy / "training/annotations" / data["annotations"][2]["file_name"]
    write_png(small, np.zeros((90, 160, 3), dtype=np.uint8))
    code, _, err = run_check("kitti_panoptic", panoptic_copy, capsys)
    assert code == 2
    assert f"{png}: segment ids 460551 have no segments_info entry" in err
    assert f"{small}: size 160x90 differs from its image" in err


def test_kitti_panoptic_wrong_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (tmp_path / "images").mkdir()
    code, _, err = run_check("kitti_panoptic", tmp_path, capsys)
    assert code == 2
    assert f"{tmp_path}: wrong layout" in err


def test_check_only_some_split_folders(
    synth_kitti_step_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(
        ["data", "check", "--dataset", "kitti_step", "--root", str(synth_kitti_step_root), "--splits", "val"]
    )
    out = capsys.readouterr().out
    assert code == 0 and "│ val" in out and "│ train" not in out
    code = main(
        ["data", "check", "--dataset", "kitti_step", "--root", str(synth_kitti_step_root), "--splits", "vall"]
    )
    assert code == 2
    assert (
        "--splits: unknown split folder vall; folders of this layout: test, train, val"
        in capsys.readouterr().err
    )
