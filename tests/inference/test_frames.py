"""Frame sources: videos, folders in natural order, globs, arrays; bad inputs named in one line."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from inference_helpers import write_video
from PIL import Image

from hvps_lightning.errors import HVPSError
from hvps_lightning.inference.frames import ImageFiles, VideoFile, open_frames


def _image(value: int, height: int = 24, width: int = 32) -> np.ndarray:
    image = np.zeros((height, width, 3), np.uint8)
    image[:, : width // 2] = value  # half a frame of the value: survives video compression
    return image


def _folder(tmp_path: Path, names: list[str], size: tuple[int, int] = (24, 32)) -> Path:
    folder = tmp_path / "frames"
    folder.mkdir()
    for index, name in enumerate(names):
        Image.fromarray(_image(10 * index, *size)).save(folder / name)
    return folder


def test_a_folder_is_read_in_natural_order_with_start_end_every(tmp_path: Path) -> None:
    folder = _folder(tmp_path, ["f10.png", "f2.png", "f1.png", "f3.jpg", "notes.txt"][:4])
    (folder / "notes.txt").write_text("not a frame")
    frames = open_frames(folder)
    assert isinstance(frames, ImageFiles) and frames.name == "frames" and frames.size == (24, 32)
    assert [f.name for f in frames] == ["f1", "f2", "f3", "f10"]
    assert frames.total == 4
    selected = open_frames(folder, start=1, end=4, every=2)
    assert [(f.index, f.name) for f in selected] == [(1, "f2"), (3, "f10")]
    first = next(iter(open_frames(folder)))
    assert first.image.dtype == np.uint8 and first.image.shape == (24, 32, 3) and first.image[0, 0, 0] == 20


def test_a_glob_selects_matching_images(tmp_path: Path) -> None:
    folder = _folder(tmp_path, ["a_1.png", "a_2.png", "b_1.png"])
    frames = open_frames(str(folder / "a_*.png"))
    assert [f.name for f in frames] == ["a_1", "a_2"]
    with pytest.raises(HVPSError, match=r"c_\*\.png: no images match the pattern"):
        open_frames(str(folder / "c_*.png"))


def test_a_video_streams_its_frames(tmp_path: Path) -> None:
    path = write_video(tmp_path / "clip.mp4", [_image(40 * i) for i in range(6)], fps=5)
    frames = open_frames(path)
    assert isinstance(frames, VideoFile) and frames.name == "clip" and frames.size == (24, 32)
    assert frames.fps == pytest.approx(5.0)
    decoded = list(frames)
    assert [f.name for f in decoded] == [f"{i:06d}" for i in range(6)]
    # H.264 is lossy; the left half keeps its value
    assert [round(float(f.image[:, :8].mean()) / 40) for f in decoded] == list(range(6))
    assert [f.index for f in open_frames(path, start=1, every=2)] == [1, 3, 5]
    assert [f.index for f in open_frames(path, end=2)] == [0, 1]


def test_arrays_are_frames_too() -> None:
    stack = np.stack([_image(i) for i in range(5)])
    assert [f.index for f in open_frames(stack, every=2)] == [0, 2, 4]
    mixed = [_image(0), _image(1, 30, 32)]
    with pytest.raises(HVPSError, match="frame 1: 32x30, earlier frames are 32x24"):
        list(open_frames(mixed))
    with pytest.raises(HVPSError, match=r"frame 0: expected an \(H, W, 3\) uint8 RGB array"):
        list(open_frames([np.zeros((4, 4), np.float32)]))


def test_bad_inputs_are_one_line_naming_the_file(tmp_path: Path) -> None:
    with pytest.raises(HVPSError, match=r"none\.mp4: not found \(expected a video file"):
        open_frames(tmp_path / "none.mp4")
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "readme.txt").write_text("x")
    with pytest.raises(HVPSError, match=r"empty: no images \(png, jpg"):
        open_frames(empty)
    broken = tmp_path / "broken.mp4"
    broken.write_bytes(b"\x00\x00\x00\x18ftypmp42" + bytes(200))
    with pytest.raises(HVPSError) as info:
        open_frames(broken)
    assert str(info.value).startswith(f"{broken}: not a readable video") and "\n" not in str(info.value)
    mixed = _folder(tmp_path, ["1.png", "2.png"])
    Image.fromarray(_image(0, 30, 32)).save(mixed / "3.png")
    with pytest.raises(HVPSError, match=r"3\.png: frame is 32x30 but 1\.png is 32x24"):
        open_frames(mixed)
    (mixed / "3.png").write_bytes(b"garbage")
    with pytest.raises(HVPSError, match=r"3\.png: not a readable image"):
        open_frames(mixed)
    with pytest.raises(HVPSError, match="--start 0 / --end 0"):
        open_frames(mixed, end=0)
