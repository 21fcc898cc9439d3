from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from hvps_lightning.cli import main
from hvps_lightning.data.synthetic.detections import moving_objects_gt, simulate_detections
from hvps_lightning.formats import check_no_overlap, read_mots_txt, read_step_png
from hvps_lightning.formats.detection_cache import write_detection_cache
from hvps_lightning.formats.semantic_cache import write_semantic_map
from hvps_lightning.structures.masks import decode_mask

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("track_cli")
    for seed, name in ((1, "0002"), (2, "0009")):
        gt = moving_objects_gt(8, 3, 40, 56, seed=seed)
        frames = simulate_detections(gt, seed=seed, drop_rate=0.0, embedding_dim=16)
        write_detection_cache(root / "cache", name, frames, {"dataset": "motchallenge_step"})
    return root / "cache"


def run_track(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["track", *args, "--quiet"])
    out, err = capsys.readouterr()
    return code, out, err


def test_track_writes_mots_txt(cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tmp_path = tmp_path / "tracked"
    code, out, err = run_track(capsys, "--detections", str(cache_dir), "--out", str(tmp_path))
    assert code == 0, err
    assert "2 sequence(s), 16 frame(s)" in out
    for name in ("0002", "0009"):
        objects = read_mots_txt(tmp_path / "mots" / f"{name}.txt")
        check_no_overlap(objects, name)
        assert {o.frame for o in objects} == set(range(8))  # frame = int("000003")
        assert {o.obj_id for o in objects} == {2001, 2002, 2003}
        assert {o.class_id for o in objects} == {2}
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["dataset"] == "motchallenge_step"
    assert summary["sequences"]["0002"] == {"frames": 8, "tracks": 3, "objects": 24}
    assert not (tmp_path / "step").exists()
    assert (tmp_path / "tracker_config.yaml").is_file()
    assert not list(tmp_path.rglob(".*"))  # no temporary files left behind


def test_track_with_semantic_writes_fused_step_pngs(
    cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    semantic_dir = tmp_path / "semantic"
    for name in ("0002", "0009"):
        for t in range(8):
            semantic = np.full((40, 56), 1, np.uint8)  # building
            semantic[30:] = 0  # sidewalk
            write_semantic_map(semantic_dir, name, f"{t:06d}", semantic)
    config = tmp_path / "tracker.yaml"
    config.write_text("min_hits: 1\nlong_term_enabled: false\n")
    out = tmp_path / "out"
    code, _, err = run_track(
        capsys, "--detections", str(cache_dir), "--out", str(out), "--semantic", str(semantic_dir),
        "--tracker-config", str(config), "--sequences", "0002",
    )  # fmt: skip
    assert code == 0, err
    assert sorted(p.name for p in (out / "mots").iterdir()) == ["0002.txt"]
    pngs = sorted((out / "step" / "0002").glob("*.png"))
    assert [p.stem for p in pngs] == [f"{t:06d}" for t in range(8)]
    objects = read_mots_txt(out / "mots" / "0002.txt")
    for png in pngs:
        semantic, instance = read_step_png(png)
        frame_objects = [o for o in objects if o.frame == int(png.stem)]
        assert set(np.unique(instance[instance > 0]).tolist()) == {o.obj_id - 2000 for o in frame_objects}
        for obj in frame_objects:
            mask = decode_mask(obj.rle).astype(bool)
            assert (instance[mask] == obj.obj_id - 2000).all() and (semantic[mask] == 4).all()
        assert set(np.unique(semantic[instance == 0]).tolist()) <= {0, 1}
    assert "min_hits: 1" in (out / "tracker_config.yaml").read_text()


def test_tracker_config_changes_the_output(cache_dir: Path, tmp_path: Path, capsys) -> None:
    config = tmp_path / "strict.yaml"
    config.write_text("score_threshold: 0.95\nbirth_score_threshold: 0.99\n")
    code, _, err = run_track(capsys, "--detections", str(cache_dir), "--out", str(tmp_path / "o"),
                             "--tracker-config", str(config))  # fmt: skip
    assert code == 0, err
    assert read_mots_txt(tmp_path / "o" / "mots" / "0002.txt") == []


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--tracker-config", "{cfg}"], "typo.yaml: unknown tracker parameter(s) min_hit"),
        (["--sequences", "0003"], "--sequences: 0003 not in"),
        (["--semantic", "{missing}"], "--semantic"),
        (["--fusion-rule", "crowd"], "--fusion-rule: only used with --semantic or --gt"),
        (["--dataset", "cityscapes"], "unknown dataset 'cityscapes'"),
    ],
)
def test_bad_arguments_exit_2_with_one_line(
    cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], message: str
) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("min_hit: 2\n")
    extra = [e.format(cfg=typo, missing=tmp_path / "missing") for e in extra]
    code, _, err = run_track(capsys, "--detections", str(cache_dir), "--out", str(tmp_path / "o"), *extra)
    assert code == 2
    lines = [line for line in err.strip().splitlines() if line.strip()]
    assert lines[-1].startswith("hvps track: error:") and message in lines[-1]
    assert not (tmp_path / "o" / "mots").exists()


def test_missing_empty_and_corrupt_caches(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], cache_dir: Path
) -> None:
    code, _, err = run_track(capsys, "--detections", str(tmp_path / "nope"), "--out", str(tmp_path / "o"))
    assert code == 2 and "--detections" in err and "not a folder" in err
    (tmp_path / "empty").mkdir()
    code, _, err = run_track(capsys, "--detections", str(tmp_path / "empty"), "--out", str(tmp_path / "o"))
    assert code == 2 and "no cached sequences" in err
    broken = tmp_path / "broken"
    broken.mkdir()
    for file in cache_dir.iterdir():
        (broken / file.name).write_bytes(file.read_bytes())
    (broken / "0009.npz").write_bytes(b"garbage")
    code, _, err = run_track(capsys, "--detections", str(broken), "--out", str(tmp_path / "o"))
    assert code == 2 and "0009.npz" in err
    assert not (tmp_path / "o").exists()  # nothing written when an input is bad


def test_help(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["track", "--help"])
    assert info.value.code == 0
    assert "--detections" in capsys.readouterr().out


def test_out_is_all_or_nothing(cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "out"
    assert run_track(capsys, "--detections", str(cache_dir), "--out", str(out))[0] == 0
    before = sorted(p.relative_to(out).as_posix() for p in out.rglob("*"))
    # a second run into the same folder is refused before any work...
    code, _, err = run_track(capsys, "--detections", str(cache_dir), "--out", str(out), "--sequences", "0002")
    assert (
        code == 2
        and err.strip()
        == f"hvps track: error: --out {out}: folder exists and is not empty; pass --overwrite to replace it"
    )
    # ...a run that fails while writing leaves the previous output as it was (here: fusion needs
    # a semantic map that is missing for one frame)...
    semantic_dir = tmp_path / "semantic"
    for frame in range(7):
        write_semantic_map(semantic_dir, "0002", f"{frame:06d}", np.zeros((40, 56), np.uint8))
    code, _, err = run_track(capsys, "--detections", str(cache_dir), "--out", str(out), "--overwrite",
                             "--semantic", str(semantic_dir), "--sequences", "0002")  # fmt: skip
    assert code == 2 and "000007.png" in err
    assert sorted(p.relative_to(out).as_posix() for p in out.rglob("*")) == before
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no partial folder left
    # ...and --overwrite replaces the folder whole: no file of the earlier run survives
    code, _, _ = run_track(
        capsys, "--detections", str(cache_dir), "--out", str(out), "--overwrite", "--sequences", "0002"
    )
    assert code == 0 and sorted(p.name for p in (out / "mots").iterdir()) == ["0002.txt"]


def test_unwritable_outputs_are_refused_before_any_work(
    cache_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    code, _, err = run_track(capsys, "--detections", str(cache_dir), "--out", str(a_file))
    assert code == 2 and err.strip() == f"hvps track: error: --out {a_file}: exists and is not a folder"
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        code, _, err = run_track(capsys, "--detections", str(cache_dir), "--out", str(locked / "out"))
    finally:
        locked.chmod(0o700)
    if os.geteuid() != 0:  # root writes anywhere
        assert (
            code == 2
            and err.strip() == f"hvps track: error: --out {locked / 'out'}: cannot write in {locked}"
        )
