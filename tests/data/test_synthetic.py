"""The synthetic generator: layouts, label consistency, determinism, occlusions, CLI behaviour."""

from __future__ import annotations

import hashlib
import itertools
import json
from pathlib import Path

import cv2
import numpy as np
import pytest

from hvps_lightning.cli import main
from hvps_lightning.data.synthetic.generate import (
    CITYSCAPES_LABEL_IDS,
    MANIFEST,
    generate_dataset,
    plan_sequences,
    sequence_rng,
)
from hvps_lightning.data.synthetic.scene import PRESETS, StreetScene
from hvps_lightning.errors import HVPSError
from hvps_lightning.formats import (
    check_no_overlap,
    read_coco_panoptic,
    read_mots_txt,
    read_png,
    read_step_png,
    rgb_to_id,
)
from hvps_lightning.structures.specs import get_spec

TINY = {"height": 64, "width": 96, "progress": False}


def _digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


# ------------------------------------------------------------------ layouts
def test_plan_sequences_uses_official_names_first() -> None:
    mot, kitti = get_spec("motchallenge_step"), get_spec("kitti_step")
    assert [(p.folder, p.name, p.split) for p in plan_sequences(mot, 2)] == [
        ("train", "0009", "train"),
        ("train", "0002", "val"),
    ]
    assert [(p.folder, p.name) for p in plan_sequences(kitti, 3)] == [
        ("train", "0000"),
        ("train", "0001"),
        ("val", "0002"),
    ]
    assert [p.name for p in plan_sequences(mot, 4)] == ["0009", "0010", "0011", "0002"]
    assert [(p.folder, p.name) for p in plan_sequences(kitti, 1)] == [("train", "0000")]
    panoptic = plan_sequences(get_spec("kitti_panoptic"), 4)
    assert [p.folder for p in panoptic] == ["training"] * 3 + ["validation"]


def test_step_layout_of_motchallenge(synth_mot_step_root: Path) -> None:
    root = synth_mot_step_root
    spec = get_spec("motchallenge_step")
    for split, seq in (("train", "0009"), ("val", "0002")):
        folder = spec.split(split).folder
        assert seq in spec.split(split).sequences
        images = sorted((root / "images" / folder / seq).glob("*.png"))
        maps = sorted((root / "panoptic_maps" / folder / seq).glob("*.png"))
        assert [p.name for p in images] == [f"{i:06d}.png" for i in range(1, 11)]  # MOTS20 counts from 1
        assert [p.name for p in maps] == [p.name for p in images]
        assert (root / "instances_txt" / folder / f"{seq}.txt").is_file()
        assert read_png(images[0], mode="RGB").shape == (96, 160, 3)
    assert sorted(p.name for p in root.iterdir()) == [
        "hvps_synth.json",
        "images",
        "instances_txt",
        "panoptic_maps",
    ]
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["complete"] is True and manifest["generator"] == "hvps synth"
    assert manifest["summary"]["total_frames"] == 20


def test_step_layout_of_kitti(synth_kitti_step_root: Path) -> None:
    root = synth_kitti_step_root
    assert sorted(p.name for p in (root / "images").iterdir()) == ["train", "val"]
    assert [p.name for p in (root / "images" / "train").iterdir()] == ["0000"]
    assert [p.name for p in (root / "images" / "val").iterdir()] == ["0002"]
    names = sorted(p.name for p in (root / "panoptic_maps" / "val" / "0002").iterdir())
    assert names == [f"{i:06d}.png" for i in range(10)]  # KITTI counts from 0


@pytest.mark.parametrize("fixture", ["synth_mot_step_root", "synth_kitti_step_root"])
def test_step_labels_follow_the_spec(fixture: str, request: pytest.FixtureRequest) -> None:
    root: Path = request.getfixturevalue(fixture)
    spec = get_spec(json.loads((root / MANIFEST).read_text())["arguments"]["preset"])
    person = spec.class_id("person")
    seen_classes: set[int] = set()
    persons_seen = 0
    for path in sorted((root / "panoptic_maps").rglob("*.png")):
        semantic, instance = read_step_png(path)
        classes = set(np.unique(semantic).tolist())
        assert classes <= set(range(spec.num_classes)) | {255}, path
        seen_classes |= classes
        # Instances only on things; person ids are track ids below 1000.
        assert set(np.unique(semantic[instance > 0]).tolist()) <= set(spec.thing_ids), path
        assert instance.max() < 1000
        persons_seen += len(np.unique(instance[semantic == person]))
        # A void ring separates every person from the rest of the scene.
        is_person = (semantic == person).astype(np.uint8)
        ring = (cv2.dilate(is_person, np.ones((3, 3), np.uint8)) > 0) & (is_person == 0)
        assert np.all(semantic[ring] == 255), path
    assert persons_seen > 10
    stuff_present = {spec.class_id(n) for n in ("sky", "building", "sidewalk", "vegetation")}
    assert stuff_present <= seen_classes


@pytest.mark.parametrize("fixture", ["synth_mot_step_root", "synth_kitti_step_root"])
def test_mots_txt_agrees_with_the_panoptic_maps(fixture: str, request: pytest.FixtureRequest) -> None:
    root: Path = request.getfixturevalue(fixture)
    spec = get_spec(json.loads((root / MANIFEST).read_text())["arguments"]["preset"])
    mots_class_of = dict(spec.mots_class_ids)  # semantic class -> MOTS class
    for txt in sorted((root / "instances_txt").rglob("*.txt")):
        objects = read_mots_txt(txt)
        check_no_overlap(objects, txt)
        by_frame: dict[int, dict[int, np.ndarray]] = {}
        for obj in objects:
            by_frame.setdefault(obj.frame, {})[obj.obj_id] = obj.mask().astype(bool)
        folder, seq = txt.parent.name, txt.stem
        maps = sorted((root / "panoptic_maps" / folder / seq).glob("*.png"))
        for path in maps:
            semantic, instance = read_step_png(path)
            expected: dict[int, np.ndarray] = {}
            crowd = np.zeros(semantic.shape, bool)
            for class_id, mots_class in mots_class_of.items():
                pixels = semantic == class_id
                crowd |= pixels & (instance == 0)
                for k in np.unique(instance[pixels]).tolist():
                    if k:
                        expected[mots_class * 1000 + k] = pixels & (instance == k)
            if crowd.any():
                expected[10000] = crowd
            found = by_frame.pop(int(path.stem), {})
            assert sorted(found) == sorted(expected), path
            for obj_id, mask in expected.items():
                np.testing.assert_array_equal(found[obj_id], mask, err_msg=f"{path} id {obj_id}")
        assert not by_frame, f"{txt}: frames without a panoptic map: {sorted(by_frame)}"


def test_kitti_panoptic_layout_and_json(synth_kitti_panoptic_root: Path) -> None:
    root = synth_kitti_panoptic_root
    spec = get_spec("kitti_panoptic")
    assert {p.name for p in root.iterdir()} == {"training", "validation", MANIFEST}
    total_instances = 0
    for folder, scene in (("training", "0000"), ("validation", "0001")):
        assert folder in {s.folder for s in spec.splits.values()}
        coco = read_coco_panoptic(root / folder / "annotations.json", root / folder / "annotations")
        assert [c["id"] for c in coco.categories] == list(CITYSCAPES_LABEL_IDS)
        assert [c["name"] for c in coco.categories] == list(spec.class_names)
        things = {c["id"] for c in coco.categories if c["isthing"]}
        assert things == {CITYSCAPES_LABEL_IDS[i] for i in spec.thing_ids}
        assert [im.file_name for im in coco.images] == [f"{scene}_{i:06d}.png" for i in range(6)]
        for image in coco.images:
            assert (root / folder / "images" / image.file_name).is_file()
            ids = coco.read_ids(image)
            assert {s.id for s in image.segments} == set(np.unique(ids).tolist()) - {0}
            for seg in image.segments:
                mask = ids == seg.id
                ys, xs = np.nonzero(mask)
                assert seg.area == mask.sum()
                assert seg.bbox == [xs.min(), ys.min(), xs.max() - xs.min() + 1, ys.max() - ys.min() + 1]
                label_id = seg.id if seg.id < 1000 else seg.id // 1000
                assert seg.category_id == label_id
                assert seg.iscrowd == int(seg.id < 1000 and label_id in things)
                total_instances += seg.id >= 1000
    assert total_instances > 5


# ------------------------------------------------------------------ determinism
def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path: Path) -> None:
    for name in ("a", "b"):
        generate_dataset("kitti_step", tmp_path / name, sequences=2, frames=3, seed=7, **TINY)
    generate_dataset("kitti_step", tmp_path / "c", sequences=2, frames=3, seed=8, **TINY)
    a, b, c = (_digest(tmp_path / n) for n in "abc")
    assert a == b
    assert a.keys() == c.keys()
    differing = [k for k in a if a[k] != c[k] and k.startswith("images")]
    assert len(differing) == sum(k.startswith("images") for k in a)


def test_sequences_do_not_depend_on_how_many_are_written(tmp_path: Path) -> None:
    generate_dataset("motchallenge_step", tmp_path / "one", sequences=1, frames=4, **TINY)
    generate_dataset("motchallenge_step", tmp_path / "two", sequences=2, frames=6, **TINY)
    one, two = _digest(tmp_path / "one"), _digest(tmp_path / "two")
    first_frames = [k for k in one if k.startswith(("images", "panoptic_maps"))]
    assert len(first_frames) == 8 and all(one[k] == two[k] for k in first_frames)


# ------------------------------------------------------------------ what makes the data hard
def test_track_ids_persist_over_an_occlusion() -> None:
    preset = PRESETS["motchallenge_step"]
    scene = StreetScene(preset, 96, 160, 30, sequence_rng("motchallenge_step", 0, 0))
    presence: dict[int, list[int]] = {}
    for frame in scene.run(30):
        for seg in frame.segments:
            if seg.kind == "person" and seg.instance_id:
                presence.setdefault(seg.instance_id, []).append(frame.index)
    assert scene.occlusion_events >= 1
    # Someone vanishes for >= 3 frames while in view and comes back under the same id.
    gaps = [b - a - 1 for frames in presence.values() for a, b in itertools.pairwise(frames)]
    assert max(gaps) >= 3


def test_identities_look_different() -> None:
    scene = StreetScene(PRESETS["motchallenge_step"], 96, 160, 60, sequence_rng("motchallenge_step", 3, 0))
    for _ in scene.run(60):
        pass
    people = [a for a in scene.agents if a.kind == "person"]
    looks = {(tuple(a.appearance.shirt.round(-1)), a.appearance.pattern) for a in people if a.appearance}
    assert len(looks) == len(people) >= 3


def test_default_sizes_and_generation_speed(tmp_path: Path) -> None:
    summary = generate_dataset("motchallenge_step", tmp_path / "d", sequences=1, frames=40, progress=False)
    assert (summary.height, summary.width) == (192, 320)
    assert summary.sequences[0].persons >= 4
    # Well under 2 s on a free core; generous here because the test machine is shared.
    assert summary.seconds < 8.0


# ------------------------------------------------------------------ CLI and overwriting
def test_cli_writes_and_prints_a_summary(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "kp"
    code = main(
        [
            "synth",
            "--preset",
            "kitti_panoptic",
            "--out",
            str(out),
            "--sequences",
            "2",
            "--frames",
            "2",
            "--height",
            "64",
            "--width",
            "96",
            "--quiet",
        ]
    )
    assert code == 0
    printed = capsys.readouterr().out
    assert "hvps synth: wrote kitti_panoptic (4 frames, 64x96, seed 0)" in printed
    assert (out / "training" / "annotations.json").is_file()


def test_refuses_to_overwrite_a_foreign_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    args = [
        "synth",
        "--preset",
        "motchallenge_step",
        "--out",
        str(out),
        "--sequences",
        "1",
        "--frames",
        "1",
        "--height",
        "64",
        "--width",
        "96",
        "--quiet",
    ]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert f"--out {out}: folder is not empty" in err and "--overwrite" in err and "Traceback" not in err
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]
    assert main([*args, "--overwrite"]) == 0
    assert (out / "notes.txt").read_text() == "keep me"
    assert (out / "images" / "train" / "0009" / "000001.png").is_file()


def test_regenerating_a_generated_folder_replaces_it(tmp_path: Path) -> None:
    out = tmp_path / "gen"
    generate_dataset("kitti_step", out, sequences=3, frames=2, **TINY)
    assert (out / "images" / "train" / "0001").is_dir()
    generate_dataset("kitti_step", out, sequences=1, frames=2, **TINY)  # no overwrite flag needed
    assert [p.name for p in (out / "images" / "train").iterdir()] == ["0000"]
    assert not (out / "images" / "val").exists() and not (out / "instances_txt" / "val").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--height", "10"], "--height: must be between"),
        (["--frames", "0"], "--frames: must be between"),
        (["--sequences", "0"], "--sequences: must be between"),
    ],
)
def test_bad_arguments_name_the_argument(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    code = main(["synth", "--preset", "kitti_step", "--out", str(tmp_path / "x"), "--quiet", *args])
    assert code == 2
    assert message in capsys.readouterr().err


def test_api_rejects_unknown_preset(tmp_path: Path) -> None:
    with pytest.raises(HVPSError, match="--preset: unknown preset 'kitti'"):
        generate_dataset("kitti", tmp_path)


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["synth", "--help"])
    assert info.value.code == 0
    assert "--preset" in capsys.readouterr().out


def test_panoptic_png_ids_are_cityscapes_ids(synth_kitti_panoptic_root: Path) -> None:
    png = sorted((synth_kitti_panoptic_root / "training" / "annotations").glob("*.png"))[0]
    ids = rgb_to_id(read_png(png, mode="RGB"))
    stuff = {i for i in np.unique(ids).tolist() if 0 < i < 1000}
    assert stuff <= set(CITYSCAPES_LABEL_IDS) and {23, 11} <= stuff  # sky, building
