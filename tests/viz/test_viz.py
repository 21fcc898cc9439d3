from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace
from typing import Any

import imageio.v3 as iio
import numpy as np
import pytest

from hvps_lightning.errors import HVPSError
from hvps_lightning.lightning.image_logging import (
    NoOpImageLogger,
    TensorBoardImageLogger,
    WandbImageLogger,
    image_logger_for,
)
from hvps_lightning.structures.detections import TrackedObject
from hvps_lightning.structures.masks import encode_mask
from hvps_lightning.viz import (
    class_colors,
    colorize_panoptic,
    overlay_panoptic,
    overlay_tracks,
    track_color,
    write_gif,
    write_mp4,
    write_video,
)

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def _object(track_id: int, y0: int, x0: int, score: float = 0.9) -> TrackedObject:
    mask = np.zeros((40, 60), np.uint8)
    mask[y0 : y0 + 10, x0 : x0 + 8] = 1
    return TrackedObject(
        track_id, 4, score, np.array([x0, y0, x0 + 8, y0 + 10], np.float32), encode_mask(mask)
    )


def test_track_colors_are_stable_and_distinct() -> None:
    colors = [track_color(i) for i in range(1, 200)]
    assert colors == [track_color(i) for i in range(1, 200)]
    assert len(set(colors)) == len(colors)
    assert all(0 <= c <= 255 for color in colors for c in color)
    # neighbouring ids differ clearly
    assert min(np.abs(np.subtract(colors[i], colors[i + 1])).sum() for i in range(len(colors) - 1)) > 60
    assert class_colors("motchallenge_step")[3] == (70, 130, 180)  # sky


def test_overlay_tracks_colours_each_track() -> None:
    image = np.full((40, 60, 3), 100, np.uint8)
    before = image.copy()
    out = overlay_tracks(
        image, [_object(3, 5, 5), _object(11, 20, 30)], alpha=1.0, boundaries=False, write_ids=False
    )
    assert out.shape == (40, 60, 3) and out.dtype == np.uint8
    assert out[8, 8].tolist() == list(track_color(3))
    assert out[25, 33].tolist() == list(track_color(11))
    assert out[0, 0].tolist() == [100, 100, 100]
    assert np.array_equal(image, before)  # the input is not drawn into
    # no image: a canvas of the masks' size; an image of another size is resized
    assert overlay_tracks(None, [_object(1, 0, 0)]).shape == (40, 60, 3)
    assert overlay_tracks(np.zeros((20, 30, 3), np.uint8), [_object(1, 0, 0)]).shape == (40, 60, 3)
    assert overlay_tracks(None, [], size=(7, 9)).shape == (7, 9, 3)


def test_panoptic_colours() -> None:
    semantic = np.full((10, 12), 3, np.int32)  # sky
    semantic[5:, :] = 255
    semantic[1:4, 2:5] = 4
    instance = np.where(semantic == 4, 9, 0)
    colors = colorize_panoptic(semantic, instance, "motchallenge_step")
    assert colors[0, 0].tolist() == [70, 130, 180]
    assert colors[2, 3].tolist() == list(track_color(9))
    assert colors[8, 8].tolist() == [0, 0, 0]
    image = np.full((10, 12, 3), 50, np.uint8)
    out = overlay_panoptic(
        image, semantic, instance, "motchallenge_step", alpha=0.5, boundaries=False, write_ids=False
    )
    assert out[8, 8].tolist() == [50, 50, 50]  # void keeps the image
    assert out[0, 0].tolist() == [60, 90, 115]


def test_gif_and_mp4(tmp_path: Path) -> None:
    frames = [overlay_tracks(None, [_object(1, t, 2 * t)]) for t in range(6)]
    gif = write_gif(tmp_path / "seq.gif", frames, fps=5)
    decoded = iio.imread(gif, index=None)
    assert decoded.shape[0] == 6 and decoded.shape[1:3] == (40, 60)
    mp4 = write_video(tmp_path / "seq.mp4", [f[:39, :59] for f in frames], fps=5)  # odd sizes are padded
    assert mp4.stat().st_size > 0
    with pytest.raises(HVPSError, match="unknown video format"):
        write_video(tmp_path / "seq.avi", frames)
    with pytest.raises(HVPSError, match="no frames"):
        write_mp4(tmp_path / "empty.mp4", [])
    with pytest.raises(HVPSError, match="frames must all be"):
        write_gif(tmp_path / "mixed.gif", [frames[0], frames[0][:10]])
    assert sorted(p.name for p in tmp_path.iterdir()) == ["seq.gif", "seq.mp4"]  # nothing half-written


class _FakeWandb:
    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []

    def log_image(self, key: str, images: list, step: int | None = None, **kwargs: Any) -> None:
        self.calls.append(("image", key, len(images), step, kwargs))

    def log_video(self, key: str, videos: list, step: int | None = None, **kwargs: Any) -> None:
        self.calls.append(("video", key, videos, step))


def test_image_loggers(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    assert isinstance(image_logger_for(None), NoOpImageLogger)
    assert isinstance(image_logger_for([CSVLogger(tmp_path)]), NoOpImageLogger)
    fake = _FakeWandb()
    logger = WandbImageLogger(fake)
    logger.log_images("val/tracks/0002", [np.zeros((4, 4, 3), np.uint8)] * 2, step=3, captions=["a", "b"])
    logger.log_video("val/video", tmp_path / "x.gif", step=3)
    assert fake.calls == [
        ("image", "val/tracks/0002", 2, 3, {"caption": ["a", "b"]}),
        ("video", "val/video", [str(tmp_path / "x.gif")], 3),
    ]
    added: list[tuple] = []
    writer = SimpleNamespace(
        add_image=lambda tag, image, global_step, dataformats: added.append((tag, image.shape))
    )
    TensorBoardImageLogger(SimpleNamespace(experiment=writer)).log_images(
        "k", [np.zeros((4, 5, 3), np.uint8)], 1
    )
    assert added == [("k/0", (4, 5, 3))]


def test_wandb_logger_is_recognised(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from hvps_lightning.lightning.wandb import HVPSWandbLogger

    monkeypatch.setenv("WANDB_MODE", "disabled")
    wrapped = image_logger_for([HVPSWandbLogger(mode="disabled", save_dir=str(tmp_path))])
    assert isinstance(wrapped, WandbImageLogger)
