"""`hvps submit step|mots`: complete predictions packed in the servers' layouts; incomplete ones refused."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from hvps_lightning.cli import main
from hvps_lightning.formats import write_step_png
from hvps_lightning.formats.mots_txt import MOTSObject, write_mots_txt
from hvps_lightning.formats.submission import MOTS_BENCHMARKS, STEP_BENCHMARKS, expected_frames
from hvps_lightning.structures.masks import encode_mask

H, W = 12, 20


def step_root(tmp_path: Path, lengths: dict[str, int]) -> Path:
    """A MOTChallenge-STEP root with test images only (frames from 000001)."""
    root = tmp_path / "motchallenge_step"
    for sequence, length in lengths.items():
        folder = root / "images" / "test" / sequence
        folder.mkdir(parents=True)
        for frame in range(1, length + 1):
            Image.new("RGB", (W, H)).save(folder / f"{frame:06d}.png")
    return root


def step_predictions(tmp_path: Path, lengths: dict[str, int]) -> Path:
    pred = tmp_path / "tracked" / "step"
    for sequence, length in lengths.items():
        for frame in range(1, length + 1):
            semantic = np.full((H, W), 1, np.int32)
            instance = np.zeros((H, W), np.int32)
            semantic[2:8, 3:6], instance[2:8, 3:6] = 4, 300 + frame  # a person, id > 255
            write_step_png(pred / sequence / f"{frame:06d}.png", semantic, instance)
    return pred


def submit(*args: str) -> int:
    return main(["submit", *[str(a) for a in args]])


def last_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    return err[0]


def test_official_test_frames() -> None:
    frames = expected_frames(STEP_BENCHMARKS["motchallenge_step"])
    assert {s: (len(f), f[0], f[-1]) for s, f in frames.items()} == {
        "0001": (450, "000001", "000450"), "0007": (500, "000001", "000500")}  # fmt: skip
    mots = expected_frames(MOTS_BENCHMARKS["mots20"])
    assert {s: len(f) for s, f in mots.items()} == {"MOTS20-01": 450, "MOTS20-06": 1194, "MOTS20-07": 500,
                                                    "MOTS20-12": 900}  # fmt: skip


def test_step_submission_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lengths = {"0001": 3, "0007": 2}
    root, pred = step_root(tmp_path, lengths), step_predictions(tmp_path, lengths)
    (pred / "0002").mkdir()  # validation predictions next to the test ones: left out
    out = tmp_path / "submission.zip"
    assert submit("step", "--pred", pred, "--out", out, "--root", root) == 0
    printed = capsys.readouterr().out
    assert "0001: 3 frames, 0007: 2 frames" in printed
    assert "left out (not scored by the benchmark): 0002" in printed
    with zipfile.ZipFile(out) as archive:
        names = archive.namelist()
        assert names == ["0001/000001.png", "0001/000002.png", "0001/000003.png", "0007/000001.png",
                         "0007/000002.png"]  # fmt: skip
        assert archive.read("0007/000002.png") == (pred / "0007" / "000002.png").read_bytes()
        assert {i.date_time for i in archive.infolist()} == {(1980, 1, 1, 0, 0, 0)}
    first = out.read_bytes()
    assert submit("step", "--pred", pred, "--out", out, "--root", root) == 0
    assert out.read_bytes() == first  # the same predictions, the same archive


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda pred: (pred / "0007" / "000002.png").unlink(),
         "0007/000002.png: missing: frame 000002 of test sequence 0007 (1 of its 2 frames missing)"),
        (lambda pred: [p.unlink() for p in (pred / "0007").iterdir()] and (pred / "0007").rmdir(),
         "0007: missing: no predictions of test sequence 0007"),
        (lambda pred: (pred / "0001" / "000004.png").write_bytes((pred / "0001" / "000001.png").read_bytes()),
         "0001/000004.png: not a frame of test sequence 0001"),
        (lambda pred: (pred / "0001" / "000002.png").write_bytes(b"\x89PNG\r\n\x1a\n broken"),
         "0001/000002.png: "),
        (lambda pred: write_step_png(pred / "0001" / "000003.png", np.full((H, W), 9), np.zeros((H, W))),
         "0001/000003.png: semantic class 9 is neither a class of the dataset nor void (255)"),
        (lambda pred: write_step_png(pred / "0007" / "000001.png", np.ones((H, W + 1)), np.zeros((H, W + 1))),
         "0007/000002.png: size 20x12 differs from the sequence's 21x12"),
    ],
)
def test_an_incomplete_or_broken_step_submission_is_refused(
    damage, message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lengths = {"0001": 3, "0007": 2}
    root, pred = step_root(tmp_path, lengths), step_predictions(tmp_path, lengths)
    out = tmp_path / "submission.zip"
    out.write_bytes(b"an earlier archive")
    damage(pred)
    assert submit("step", "--pred", pred, "--out", out, "--root", root) == 2
    assert message in last_error(capsys)
    assert out.read_bytes() == b"an earlier archive"  # nothing written over it
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".submission")] == []


def test_step_frames_of_the_wrong_size_for_the_test_images(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root, pred = step_root(tmp_path, {"0001": 1}), tmp_path / "pred"
    write_step_png(pred / "0001" / "000001.png", np.ones((H * 2, W * 2)), np.zeros((H * 2, W * 2)))
    assert submit("step", "--pred", pred, "--out", tmp_path / "s.zip", "--root", root, "--sequences",
                  '["0001"]') == 2  # fmt: skip
    assert last_error(capsys).endswith("frames of 40x24, the test images of 0001 are 20x12")


def test_without_root_kitti_step_needs_one(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert submit("step", "--pred", tmp_path, "--out", tmp_path / "s.zip", "--benchmark", "kitti_step") == 2
    assert "kitti_step: the number of frames of test sequence 0000 is not recorded here; give --root" in (
        last_error(capsys))  # fmt: skip


def box(y0: int, x0: int, y1: int, x1: int) -> dict:
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return encode_mask(mask)


def mots_predictions(tmp_path: Path, lengths: dict[str, int]) -> Path:
    pred = tmp_path / "tracked" / "mots"
    for sequence, length in lengths.items():
        objects = [MOTSObject(f, 2001, 2, box(0, 0, 4, 4)) for f in range(1, length + 1, 2)]
        objects += [MOTSObject(f, 2002, 2, box(5, 5, 9, 9)) for f in range(1, length + 1)]
        write_mots_txt(pred / f"{sequence}.txt", objects)
    return pred


def mots_root(tmp_path: Path, lengths: dict[str, int]) -> Path:
    root = tmp_path / "mots20"
    for sequence, length in lengths.items():
        folder = root / "test" / sequence / "img1"
        folder.mkdir(parents=True)
        for frame in range(1, length + 1):
            Image.new("RGB", (W, H)).save(folder / f"{frame:06d}.jpg")
    return root


def test_mots20_submission_layout(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lengths = {"MOTS20-01": 4, "MOTS20-06": 3, "MOTS20-07": 2, "MOTS20-12": 5}
    pred, root = mots_predictions(tmp_path, lengths), mots_root(tmp_path, lengths)
    write_mots_txt(pred / "MOTS20-02.txt", [])
    out = tmp_path / "mots20.zip"
    assert submit("mots", "--pred", pred, "--out", out, "--root", root) == 0
    assert "MOTS20-01: 4 frames, 6 objects" in capsys.readouterr().out
    with zipfile.ZipFile(out) as archive:
        assert archive.namelist() == ["MOTS20-01.txt", "MOTS20-06.txt", "MOTS20-07.txt", "MOTS20-12.txt"]
        assert archive.read("MOTS20-12.txt") == (pred / "MOTS20-12.txt").read_bytes()


@pytest.mark.parametrize(
    ("objects", "message"),
    [
        ([MOTSObject(5, 2001, 2, box(0, 0, 2, 2))],
         "MOTS20-07.txt: frame 5 is not a frame of the sequence (1..2)"),
        ([MOTSObject(1, 2001, 2, box(0, 0, 4, 4)), MOTSObject(1, 10000, 10, box(3, 3, 6, 6))],
         "MOTS20-07.txt: frame 1: masks overlap (class-10 lines included: the server checks every line)"),
        ([MOTSObject(2, 2001, 2, box(0, 0, 2, 2)), MOTSObject(2, 2001, 2, box(4, 4, 6, 6))],
         "MOTS20-07.txt: frame 2: id 2001 appears more than once"),
    ],
)
def test_a_broken_mots20_submission_is_refused(objects: list, message: str, tmp_path: Path,
                                               capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    lengths = {"MOTS20-01": 4, "MOTS20-06": 3, "MOTS20-07": 2, "MOTS20-12": 5}
    pred, root = mots_predictions(tmp_path, lengths), mots_root(tmp_path, lengths)
    write_mots_txt(pred / "MOTS20-07.txt", objects)
    assert submit("mots", "--pred", pred, "--out", tmp_path / "x.zip", "--root", root) == 2
    assert message in last_error(capsys)
    assert not (tmp_path / "x.zip").exists()


def test_a_missing_mots20_sequence_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pred = mots_predictions(tmp_path, {"MOTS20-01": 450, "MOTS20-07": 500, "MOTS20-12": 900})
    assert submit("mots", "--pred", pred, "--out", tmp_path / "x.zip") == 2
    assert last_error(capsys).endswith("MOTS20-06.txt: missing: no predictions of test sequence MOTS20-06")
