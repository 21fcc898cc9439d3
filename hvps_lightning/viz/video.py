"""GIF and MP4 of a sequence of RGB frames (imageio; MP4 through imageio-ffmpeg), written atomically.

Example:
    >>> import tempfile, pathlib, numpy as np
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "seq.gif"
    >>> frames = [np.full((8, 8, 3), v, np.uint8) for v in (0, 128, 255)]
    >>> write_gif(path, frames, fps=5).stat().st_size > 0
    True
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

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
    import imageio.v2 as imageio

    path = Path(path)
    stack = _frames(frames, path)
    height, width = stack[0].shape[:2]
    pad = ((0, height % 2), (0, width % 2), (0, 0))
    with atomic_path(path) as tmp:
        writer = imageio.get_writer(
            tmp,
            format="FFMPEG",
            mode="I",
            fps=fps,
            codec="libx264",
            pixelformat="yuv420p",
            macro_block_size=1,
        )
        try:
            for frame in stack:
                writer.append_data(np.pad(frame, pad, mode="edge") if any(p[1] for p in pad) else frame)
        finally:
            writer.close()
    return path


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
