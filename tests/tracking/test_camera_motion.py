"""Camera motion estimation (OpenCV sparse optical flow) on frames with a known camera motion."""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from hvps_lightning.errors import HVPSError
from hvps_lightning.tracking.camera_motion import (
    IDENTITY,
    CameraMotionEstimator,
    camera_motion_for_frames,
    compose,
)


def _textured(height: int = 400, width: int = 700, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    small = (rng.random((height // 4, width // 4, 3)) * 255).astype(np.uint8)
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


def _camera(
    world: np.ndarray, centre: tuple[float, float], scale: float, size: tuple[int, int]
) -> np.ndarray:
    """World -> image transform of a camera looking at ``centre`` with zoom ``scale``."""
    height, width = size
    return np.array([[scale, 0, width / 2 - scale * centre[0]], [0, scale, height / 2 - scale * centre[1]]])


def test_pan_and_zoom_are_recovered_at_full_resolution() -> None:
    world = _textured(700, 1300)
    size = (360, 640)
    cameras = [_camera(world, (650 + 4.5 * t, 350 - 1.5 * t), 1.0 + 0.004 * t, size) for t in range(6)]
    frames = [cv2.warpAffine(world, m, (size[1], size[0])) for m in cameras]
    transforms = camera_motion_for_frames(frames, width=320)
    np.testing.assert_allclose(transforms[0], IDENTITY)
    points = np.array([[20.0, 20.0, 1.0], [620.0, 340.0, 1.0], [320.0, 180.0, 1.0]])
    for t in range(1, 6):
        previous = np.vstack([cameras[t - 1], [0, 0, 1]])
        truth = (np.vstack([cameras[t], [0, 0, 1]]) @ np.linalg.inv(previous))[:2]
        assert np.abs(points @ transforms[t].T - points @ truth.T).max() < 0.5, t


def test_moving_people_do_not_move_the_camera() -> None:
    # a static camera; a bright block (a person) walks 20 px per frame across a third of the image
    background = _textured(240, 320)
    frames = []
    for t in range(4):
        frame = background.copy()
        frame[60:200, 40 + 20 * t : 110 + 20 * t] = (250, 30, 30)
        frames.append(frame)
    transforms = camera_motion_for_frames(frames, width=320)
    assert np.abs(transforms[:, :, 2]).max() < 0.5


def test_transforms_compose_like_matrices() -> None:
    a = np.array([[1.1, 0.0, 3.0], [0.0, 1.1, -2.0]])
    b = np.array([[0.9, 0.1, 1.0], [-0.1, 0.9, 0.5]])
    expected = (np.vstack([b, [0, 0, 1]]) @ np.vstack([a, [0, 0, 1]]))[:2]
    np.testing.assert_allclose(compose(b, a), expected)


def test_frames_from_paths_and_bad_input(tmp_path: Path) -> None:
    image = _textured(120, 200)
    paths = []
    for t in range(3):
        path = tmp_path / f"{t}.png"
        cv2.imwrite(str(path), np.roll(image, 2 * t, axis=1))
        paths.append(path)
    transforms = camera_motion_for_frames(paths)
    np.testing.assert_allclose(transforms[1:, :, 2], [[2.0, 0.0], [2.0, 0.0]], atol=0.3)
    with pytest.raises(HVPSError, match=r"missing\.png: camera motion: not a readable image"):
        camera_motion_for_frames([paths[0], tmp_path / "missing.png"])
    estimator = CameraMotionEstimator()
    estimator.update(image)
    with pytest.raises(HVPSError, match="frame is 60x200, the previous was 120x200"):
        estimator.update(image[:60])
    with pytest.raises(HVPSError, match="expected an \\(H, W\\) or \\(H, W, C\\) image"):
        CameraMotionEstimator().update(np.zeros(5))
    assert camera_motion_for_frames([]).shape == (0, 2, 3)
    # a blank frame has nothing to follow: no motion rather than a guess
    blank = np.zeros((90, 160), np.uint8)
    np.testing.assert_allclose(camera_motion_for_frames([blank, blank])[1], IDENTITY)
