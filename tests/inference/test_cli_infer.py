"""`hvps infer` from the command line: its files, a refused --out, bad inputs in one line, Ctrl-C."""

from __future__ import annotations

import json
import shutil
import signal
from collections.abc import Iterator
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pytest
from inference_helpers import write_video

from hvps_lightning.cli import main
from hvps_lightning.formats import read_mots_txt, read_step_png
from hvps_lightning.inference.frames import Frame, FrameSource, open_frames
from hvps_lightning.inference.outputs import StopRequest, run_to_folder
from hvps_lightning.inference.pipeline import Pipeline


def _infer(bundle: Path, source: Path | str, out: Path, *extra: str) -> int:
    return main(["infer", "--model", str(bundle), "--input", str(source), "--out", str(out),
                 "--quiet", *extra])  # fmt: skip


def _no_temporary_files(out: Path) -> None:
    assert not [p for p in out.rglob(".*") if p.is_file()], "a temporary file was left behind"


def test_every_output_of_a_folder(
    bundle: Path, val_frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    assert _infer(bundle, val_frames, out, "--save", "step,mots,video,json", "--fps", "4") == 0
    line = capsys.readouterr().out.strip().splitlines()[-1]
    assert line.startswith("hvps infer: 10 frames of 0002") and "frames/s" in line
    pngs = sorted((out / "step" / "0002").glob("*.png"))
    assert [p.stem for p in pngs] == [f"{i:06d}" for i in range(1, 11)]
    assert read_step_png(pngs[0])[0].shape == (96, 160)
    records = [json.loads(line) for line in (out / "tracks" / "0002.jsonl").read_text().splitlines()]
    assert [r["frame"] for r in records] == [p.stem for p in pngs]
    mots = read_mots_txt(out / "mots" / "0002.txt")
    # the MOTS txt and the JSON lines hold the same tracks: person -> MOTS pedestrian 2, id 2000 + track id
    assert sorted((o.frame, o.obj_id) for o in mots) == sorted(
        (int(r["frame"]), 2000 + t["id"]) for r in records for t in r["tracks"]
    )
    assert all(t["class"] == "person" and len(t["box"]) == 4 for r in records for t in r["tracks"])
    video = iio.imread(out / "video" / "0002.mp4", index=None)
    assert video.shape == (10, 96, 160, 3)
    summary = json.loads((out / "summary.json").read_text())
    assert summary["frames"] == 10 and summary["stopped_early"] is False and summary["last_frame"] == "000010"
    assert summary["outputs"] == ["step/0002", "mots/0002.txt", "tracks/0002.jsonl", "video/0002.mp4"]
    _no_temporary_files(out)


def test_a_video_with_checkpoints_start_and_every(
    checkpoints: dict[str, Path], val_frames: Path, tmp_path: Path
) -> None:
    frames = [f.image for f in open_frames(val_frames)]
    video = write_video(tmp_path / "street.mp4", frames, fps=5)
    out = tmp_path / "out"
    args = ["infer", "--mots-checkpoint", str(checkpoints["mots"]), "--semantic-checkpoint",
            str(checkpoints["semantic"]), "--input", str(video), "--out", str(out), "--start", "1",
            "--every", "3", "--quiet"]  # fmt: skip
    assert main(args) == 0
    assert sorted(p.stem for p in (out / "step" / "street").glob("*.png")) == ["000001", "000004", "000007"]
    assert iio.imread(out / "video" / "street.mp4", index=None).shape[0] == 3
    assert json.loads((out / "summary.json").read_text())["model"]["mots"] == str(checkpoints["mots"])


def test_a_non_empty_out_is_refused_unless_overwrite(
    bundle: Path, val_frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    assert _infer(bundle, val_frames, out, "--end", "2") == 2
    assert "--overwrite" in capsys.readouterr().err
    assert sorted(p.name for p in out.iterdir()) == ["keep.txt"]
    assert _infer(bundle, val_frames, out, "--end", "2", "--overwrite", "--save", "mots") == 0
    assert (out / "keep.txt").read_text() == "mine" and (out / "mots" / "0002.txt").is_file()


def test_bad_inputs_exit_2_in_one_line_and_write_nothing(
    bundle: Path, val_frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    mixed = tmp_path / "mixed"
    shutil.copytree(val_frames, mixed)
    iio.imwrite(mixed / "000011.png", np.zeros((80, 160, 3), np.uint8))
    empty = tmp_path / "empty"
    empty.mkdir()
    broken_video = tmp_path / "broken.mp4"
    broken_video.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(100))
    broken_bundle = tmp_path / "broken.hvps"
    broken_bundle.write_text("no")
    cases = [
        (bundle, tmp_path / "none.mp4", "none.mp4: not found"),
        (bundle, empty, "empty: no images"),
        (bundle, mixed, "000011.png: frame is 160x80 but 000001.png is 160x96"),
        (bundle, broken_video, "broken.mp4: not a readable video"),
        (broken_bundle, val_frames, "broken.hvps: not a model bundle"),
    ]
    for model, source, message in cases:
        out = tmp_path / "out"
        assert _infer(model, source, out) == 2, message
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and message in err, err
        assert not out.exists()
    assert main(["infer", "--input", str(val_frames), "--out", str(tmp_path / "o")]) == 2
    assert "--model: required" in capsys.readouterr().err
    assert _infer(bundle, val_frames, tmp_path / "o", "--save", "step,gif") == 2
    assert "--save step,gif" in capsys.readouterr().err


def test_a_frame_that_fails_midway_leaves_only_complete_files(
    bundle: Path, val_frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    frames = tmp_path / "frames"
    shutil.copytree(val_frames, frames)
    data = (frames / "000007.png").read_bytes()
    (frames / "000007.png").write_bytes(data[: len(data) // 2])  # the header reads, the pixels do not
    out = tmp_path / "out"
    assert _infer(bundle, frames, out, "--save", "step,mots,video,json") == 2
    assert "000007.png: unreadable or truncated image" in capsys.readouterr().err
    # frames that came out before the bad one are complete PNGs; the streamed files never appear
    for png in (out / "step" / "0002").glob("*.png"):
        assert read_step_png(png)[0].shape == (96, 160)
    assert not (out / "mots").exists() and not (out / "video").exists() and not (out / "tracks").exists()
    _no_temporary_files(out)


class Interrupted(FrameSource):
    """Frames of another source; at frame ``at`` the user presses Ctrl-C ``presses`` times."""

    def __init__(self, inner: FrameSource, at: int, presses: int) -> None:
        self.inner, self.at, self.presses = inner, at, presses
        self.name, self.fps, self.size, self.total = inner.name, inner.fps, inner.size, inner.total

    def __iter__(self) -> Iterator[Frame]:
        for frame in self.inner:
            if frame.index == self.at:
                for _ in range(self.presses):
                    signal.raise_signal(signal.SIGINT)
            yield frame


def test_ctrl_c_finishes_the_frames_read_and_closes_every_output(
    bundle: Path, val_frames: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = Pipeline.open
    monkeypatch.setattr(
        Pipeline, "open", lambda self, *args: Interrupted(original(self, *args), at=4, presses=1)
    )
    out = tmp_path / "out"
    assert _infer(bundle, val_frames, out, "--save", "step,mots,video,json") == 130
    summary = json.loads((out / "summary.json").read_text())
    assert summary["stopped_early"] is True and summary["frames"] == 5 and summary["last_frame"] == "000005"
    names = sorted(p.stem for p in (out / "step" / "0002").glob("*.png"))
    assert names == [f"{i:06d}" for i in range(1, 6)]
    assert [json.loads(x)["frame"] for x in (out / "tracks" / "0002.jsonl").read_text().splitlines()] == names
    assert iio.imread(out / "video" / "0002.mp4", index=None).shape[0] == 5
    assert {o.frame for o in read_mots_txt(out / "mots" / "0002.txt")} <= {int(n) for n in names}
    _no_temporary_files(out)


def test_a_second_ctrl_c_aborts_leaving_no_streamed_file(
    bundle: Path, val_frames: Path, tmp_path: Path
) -> None:
    pipeline = Pipeline.from_bundle(bundle, device="cpu")
    source = Interrupted(pipeline.open(val_frames), at=4, presses=2)
    out = tmp_path / "out"
    with pytest.raises(KeyboardInterrupt), StopRequest() as stop:
        run_to_folder(pipeline, source, out, ("step", "mots", "video"), progress=False, stop=stop)
    assert (
        not (out / "mots").exists() and not (out / "video").exists() and not (out / "summary.json").exists()
    )
    _no_temporary_files(out)
