"""GIF and MP4 of a sequence of RGB frames (imageio; MP4 through imageio-ffmpeg), written atomically.

:func:`write_gif` and :func:`write_mp4` take all frames at once; :class:`Mp4Writer` takes them
one at a time (a video of any length in constant memory).

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "seq.gif"
    >>> frames = [np.full((8, 8, 3), v, np.uint8) for v in (0, 128, 255)]
    >>> write_gif(path, frames, fps=5).stat().st_size > 0
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np

from hvps_lightning.errors import HVPSError
from hvps_lightning.io import atomic_path


def _frames(frames: Sequence[np.ndarray], where: Path) -> list[np.ndarray]:
    frames = [np.ascontiguousarray(np.asarray(f)) for f in frames]
    if not frames:
        raise HVPSError(f"{where}: no frames to write")
    shapes = {f.shape for f in frames}
    if len(shapes) != 1 or frames[0].ndim != 3 or frames[0].shape[2] != 3:
        raise HVPSError(f"{where}: frames must all be (H, W, 3), got shapes {sorted(shapes)}")
    return [f.astype(np.uint8, copy=False) for f in frames]


def write_gif(path: str | Path, frames: Sequence[np.ndarray], fps: float = 10.0, loop: bool = True) -> Path:
    """Write an animated GIF (looping by default); return its path."""
    import imageio.v3 as iio

    path = Path(path)
    stack = _frames(frames, path)
    with atomic_path(path) as tmp:
        iio.imwrite(
            tmp, np.stack(stack), extension=".gif", duration=1000.0 / max(fps, 1e-3), loop=0 if loop else 1
        )
    return path


def write_mp4(path: str | Path, frames: Sequence[np.ndarray], fps: float = 10.0) -> Path:
    """Write an H.264 MP4 (yuv420p; frames padded to even sizes); return its path."""
    path = Path(path)
    stack = _frames(frames, path)
    writer = Mp4Writer(path, fps)
    try:
        for frame in stack:
            writer.append(frame)
    except BaseException:
        writer.abort()
        raise
    return writer.close()


class Mp4Writer:
    """An H.264 MP4 written frame by frame under a temporary name, renamed onto ``path`` by :meth:`close`.

    Frames are (H, W, 3) uint8 RGB of one size; odd sizes are padded to even ones (yuv420p).
    Memory stays constant whatever the number of frames (``hvps infer`` streams its overlay here).

    Example:
        >>> import tempfile, pathlib
        >>> writer = Mp4Writer(pathlib.Path(tempfile.mkdtemp()) / "v.mp4", fps=5)
        >>> for value in (0, 128, 255):
        ...     writer.append(np.full((9, 16, 3), value, np.uint8))
        >>> writer.close().stat().st_size > 0
        True
    """

    def __init__(self, path: str | Path, fps: float = 10.0) -> None:
        self.path = Path(path)
        self.fps = float(fps)
        self.frames = 0
        self._stack = ExitStack()
        self._tmp = self._stack.enter_context(atomic_path(self.path))
        self._writer: Any = None
        self._shape: tuple[int, ...] | None = None

    def append(self, frame: np.ndarray) -> None:
        """Add one frame.

        Raises:
            HVPSError: naming the file for a frame that is not (H, W, 3) or not the first frame's size.
        """
        frame = np.ascontiguousarray(np.asarray(frame, dtype=np.uint8))
        if frame.ndim != 3 or frame.shape[2] != 3 or (self._shape is not None and frame.shape != self._shape):
            raise HVPSError(f"{self.path}: frames must all be (H, W, 3) of one size, got {frame.shape}")
        if self._writer is None:
            import imageio.v2 as imageio

            self._shape = frame.shape
            self._writer = imageio.get_writer(
                self._tmp, format="FFMPEG", mode="I", fps=self.fps, codec="libx264", pixelformat="yuv420p",
                macro_block_size=1,
            )  # fmt: skip
            self._stack.callback(self._writer.close)
        height, width = frame.shape[:2]
        if height % 2 or width % 2:
            frame = np.pad(frame, ((0, height % 2), (0, width % 2), (0, 0)), mode="edge")
        self._writer.append_data(frame)
        self.frames += 1

    def close(self) -> Path:
        """Finish the video: it appears under its final name, complete.

        Raises:
            HVPSError: if no frame was added.
        """
        if self._writer is None:
            self.abort()
            raise HVPSError(f"{self.path}: no frames to write")
        self._stack.close()
        return self.path

    def abort(self) -> None:
        """Drop the video: the temporary file is removed, an earlier file of that name is left as it was."""
        self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)


def write_video(path: str | Path, frames: Sequence[np.ndarray], fps: float = 10.0) -> Path:
    """Write a GIF or an MP4, chosen by the suffix of ``path``.

    Raises:
        HVPSError: for another suffix.
    """
    suffix = Path(path).suffix.lower()
    if suffix == ".gif":
        return write_gif(path, frames, fps)
    if suffix == ".mp4":
        return write_mp4(path, frames, fps)
    raise HVPSError(f"{path}: unknown video format {suffix!r}; use .gif or .mp4")
