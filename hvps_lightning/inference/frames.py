"""Frames from anything a user points ``hvps infer`` at: a video file, a folder of images, a glob, arrays.

:func:`open_frames` checks the input before anything runs (the file exists and decodes, the
folder holds images, all of them have one size) and returns a :class:`FrameSource` that
yields :class:`Frame` s one at a time, so a video of any length is never held in memory:

* a **video** (mp4, avi, mov, mkv, webm, ...) is decoded by ffmpeg (imageio-ffmpeg's binary,
  a dependency of the package) as a stream of RGB frames; frames are named by their index
  (``000000``, ``000001``, ...);
* a **folder** or a **glob** of images (png, jpg, bmp, tif, webp) in natural order
  (``frame2`` before ``frame10``), decoded like the dataset loaders decode frames
  (:func:`~hvps_lightning.data.loaders.decode_image`); frames are named by their file stem;
* **arrays** (Python API): one (N, H, W, 3) uint8 RGB array or an iterable of (H, W, 3) ones.

``start``, ``end`` (exclusive) and ``every`` select frames by their index in the input.
"""

from __future__ import annotations

import glob as globbing
import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image, UnidentifiedImageError

from hvps_lightning.data.loaders import decode_image
from hvps_lightning.errors import HVPSError, file_error

IMAGE_SUFFIXES: tuple[str, ...] = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp")
VIDEO_SUFFIXES: tuple[str, ...] = (".mp4", ".avi", ".mov", ".mkv", ".webm", ".m4v", ".mpg", ".mpeg", ".wmv",
                                   ".flv", ".ts", ".gif")  # fmt: skip
_GLOB_CHARACTERS = re.compile(r"[*?\[]")
_DIGITS = re.compile(r"(\d+)")


@dataclass
class Frame:
    """One input frame.

    Attributes:
        index: its index in the input (before ``start`` / ``every`` selected it).
        name: its name in the outputs (file stem, or the index as ``%06d``).
        image: (h, w, 3) uint8 RGB; smaller than ``size`` after a reduced JPEG decode.
        size: the input's (height, width).
    """

    index: int
    name: str
    image: np.ndarray
    size: tuple[int, int]


def natural_key(text: str) -> list[Any]:
    """Sort key that orders the numbers inside names by value (``f2`` before ``f10``).

    Written here (a few lines) rather than adding natsort as a dependency.

    Example:
        >>> sorted(["f10.png", "f2.png", "f1.png"], key=natural_key)
        ['f1.png', 'f2.png', 'f10.png']
    """
    return [int(part) if part.isdigit() else part.lower() for part in _DIGITS.split(text)]


def _selected(count: int | None, start: int, end: int | None, every: int) -> int | None:
    if count is None:
        return None
    stop = count if end is None else min(end, count)
    return max(0, -(-(stop - start) // every)) if stop > start else 0


class FrameSource:
    """Frames of one input, yielded in order (see the module docstring).

    Attributes:
        name: the sequence name of the outputs (folder name, video file stem, or ``sequence``).
        fps: frames per second of a video (``None`` for images).
        size: the frames' (height, width), once known.
        total: how many frames the selection yields (an estimate for videos; ``None`` if unknown).
    """

    name: str = "sequence"
    fps: float | None = None
    size: tuple[int, int] | None = None
    total: int | None = None
    description: str = "frames"

    def __iter__(self) -> Iterator[Frame]:
        raise NotImplementedError


class ImageFiles(FrameSource):
    """Image files (a folder's, or a glob's matches), in the given order."""

    def __init__(
        self,
        paths: list[Path],
        name: str,
        description: str,
        start: int = 0,
        end: int | None = None,
        every: int = 1,
        min_size: tuple[int, int] | None = None,
    ) -> None:
        self.paths = paths[start:end:every]
        self.name = name
        self.description = description
        self.min_size = min_size
        self._indices = list(range(len(paths)))[start:end:every]
        self.total = len(self.paths)
        self.size = self._check_sizes()

    def _check_sizes(self) -> tuple[int, int] | None:
        """Read every selected file's header: one size for all, or an error naming the odd one out."""
        first: tuple[int, int] | None = None
        for path in self.paths:
            try:
                with Image.open(path) as image:
                    size = (int(image.height), int(image.width))
            except FileNotFoundError:
                raise file_error(path, "file not found") from None
            except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as exc:
                raise file_error(path, f"not a readable image ({exc})") from None
            if first is None:
                first = size
            elif size != first:
                raise file_error(
                    path,
                    f"frame is {size[1]}x{size[0]} but {self.paths[0].name} is {first[1]}x{first[0]}; "
                    "all frames of one input must have one size",
                )
        return first

    def __iter__(self) -> Iterator[Frame]:
        for index, path in zip(self._indices, self.paths, strict=True):
            decoded = decode_image(path, self.min_size)
            if decoded.size != self.size:
                raise file_error(
                    path, f"frame size changed to {decoded.size[1]}x{decoded.size[0]} while reading"
                )
            yield Frame(index, path.stem, decoded.pixels, decoded.size)


class VideoFile(FrameSource):
    """A video decoded by ffmpeg (imageio-ffmpeg), one RGB frame at a time."""

    def __init__(self, path: Path, start: int = 0, end: int | None = None, every: int = 1) -> None:
        self.path = path
        self.name = path.stem
        self.description = str(path)
        self.start, self.end, self.every = start, end, every
        reader = self._reader()
        try:
            meta = self._meta(reader)
            try:
                next(reader)
            except StopIteration:
                raise file_error(path, "the video holds no frames") from None
            except Exception as exc:  # ffmpeg's failures come as RuntimeError/OSError with its log
                raise file_error(path, f"not a readable video ({_first_line(exc)})") from None
        finally:
            reader.close()
        width, height = (int(v) for v in meta["size"])
        self.size = (height, width)
        fps = float(meta.get("fps") or 0.0)
        self.fps = fps if fps > 0 else None
        count = None
        duration = float(meta.get("duration") or 0.0)
        if self.fps is not None and duration > 0:
            count = round(duration * self.fps)
        self.total = _selected(count, start, end, every)

    def _reader(self) -> Any:
        import imageio_ffmpeg

        return imageio_ffmpeg.read_frames(str(self.path), pix_fmt="rgb24")

    def _meta(self, reader: Any) -> dict[str, Any]:
        try:
            meta = next(reader)
        except Exception as exc:  # ffmpeg could not open it
            raise file_error(self.path, f"not a readable video ({_first_line(exc)})") from None
        if not isinstance(meta, dict) or "size" not in meta:
            raise file_error(self.path, "not a readable video (ffmpeg reported no frame size)")
        return meta

    def __iter__(self) -> Iterator[Frame]:
        assert self.size is not None
        height, width = self.size
        reader = self._reader()
        index = -1
        try:
            self._meta(reader)
            while True:
                try:
                    data = next(reader)
                except StopIteration:
                    return
                except Exception as exc:
                    problem = f"video cannot be decoded after frame {index} ({_first_line(exc)})"
                    raise file_error(self.path, problem) from None
                index += 1
                if self.end is not None and index >= self.end:
                    return
                if index < self.start or (index - self.start) % self.every:
                    continue
                image = np.frombuffer(data, np.uint8).reshape(height, width, 3)
                yield Frame(index, f"{index:06d}", image, (height, width))
        finally:
            reader.close()


class ArrayFrames(FrameSource):
    """Frames given as arrays (Python API): one (N, H, W, 3) array or an iterable of (H, W, 3) ones."""

    def __init__(
        self,
        frames: Iterable[np.ndarray] | np.ndarray,
        start: int = 0,
        end: int | None = None,
        every: int = 1,
    ) -> None:
        self.frames = frames
        self.start, self.end, self.every = start, end, every
        self.total = _selected(len(frames), start, end, every) if hasattr(frames, "__len__") else None

    def __iter__(self) -> Iterator[Frame]:
        for index, image in enumerate(self.frames):
            if self.end is not None and index >= self.end:
                return
            if index < self.start or (index - self.start) % self.every:
                continue
            image = np.asarray(image)
            if image.ndim != 3 or image.shape[2] != 3 or image.dtype != np.uint8:
                raise HVPSError(
                    f"frame {index}: expected an (H, W, 3) uint8 RGB array, got {image.dtype} {image.shape}"
                )
            size = (int(image.shape[0]), int(image.shape[1]))
            if self.size is None:
                self.size = size
            elif size != self.size:
                raise HVPSError(
                    f"frame {index}: {size[1]}x{size[0]}, earlier frames are {self.size[1]}x{self.size[0]}; "
                    "all frames of one input must have one size"
                )
            yield Frame(index, f"{index:06d}", image, size)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def open_frames(
    source: str | Path | np.ndarray | Iterable[np.ndarray],
    start: int = 0,
    end: int | None = None,
    every: int = 1,
    min_size: tuple[int, int] | None = None,
) -> FrameSource:
    """Check an input and return its frames (see the module docstring).

    Args:
        source: a video file, a folder of images, a glob pattern, or arrays.
        start: index of the first frame to use.
        end: index one past the last frame to use (``None``: to the end).
        every: use every N-th frame from ``start`` on.
        min_size: the (H, W) frames will be resized to, allowing a reduced JPEG decode.

    Raises:
        HVPSError: naming the input: missing, not a video or a folder of images, no images,
            frames of different sizes, an undecodable video, or bad ``start``/``end``/``every``.
    """
    if start < 0 or every < 1 or (end is not None and end <= start):
        raise HVPSError(
            f"--start {start} / --end {end} / --every {every}: need 0 <= start < end and every >= 1"
        )
    if not isinstance(source, (str, Path)):
        return ArrayFrames(source, start, end, every)
    path = Path(source)
    if path.is_dir():
        paths = sorted((p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()),
                       key=lambda p: natural_key(p.name))  # fmt: skip
        if not paths:
            raise file_error(path, f"no images ({', '.join(s[1:] for s in IMAGE_SUFFIXES)}) in the folder")
        selected = ImageFiles(paths, path.resolve().name, str(path), start, end, every, min_size)
        if not selected.paths:
            raise file_error(path, f"--start {start} is past the last of its {len(paths)} images")
        return selected
    if path.is_file():
        if path.suffix.lower() in IMAGE_SUFFIXES:
            return ImageFiles([path], path.stem, str(path), start, end, every, min_size)
        video = VideoFile(path, start, end, every)
        if video.total == 0:
            raise file_error(path, f"--start {start} is past the end of the video")
        return video
    if _GLOB_CHARACTERS.search(str(source)):
        matches = sorted(
            (Path(p) for p in globbing.glob(str(source), recursive=True)), key=lambda p: natural_key(str(p))
        )
        paths = [p for p in matches if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
        if not paths:
            raise HVPSError(f"{source}: no images match the pattern")
        name = paths[0].parent.resolve().name or "sequence"
        selected = ImageFiles(paths, name, str(source), start, end, every, min_size)
        if not selected.paths:
            raise HVPSError(f"{source}: --start {start} is past the last of its {len(paths)} images")
        return selected
    raise file_error(path, "not found (expected a video file, a folder of images or a glob pattern)")
