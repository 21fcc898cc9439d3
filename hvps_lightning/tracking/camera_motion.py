"""Camera motion compensation: the affine transform between consecutive frames, with OpenCV.

A panning or zooming camera moves every person in the image; a tracker that predicts boxes
in image coordinates then misses them. :class:`CameraMotionEstimator` measures the camera's
motion the way BoT-SORT's sparse optical flow does, on a downscaled grey copy of each frame:
corners (``cv2.goodFeaturesToTrack``) of the previous frame are followed into the current one
with pyramidal Lucas-Kanade (``cv2.calcOpticalFlowPyrLK``), and a rotation + uniform scale +
translation is fitted to the pairs with RANSAC (``cv2.estimateAffinePartial2D``), so moving
people count as outliers. The result is the (2, 3) affine transform that maps pixel
coordinates of the previous frame to the current frame, at full resolution; it is what
:attr:`FrameDetections.camera_motion <hvps_lightning.structures.detections.FrameDetections>`
holds, what the detection cache stores per frame (so replays and sweeps need no images), and
what the tracker applies to its motion predictions (``TrackerConfig.camera_motion``).

Cost: about 1-2 ms per 1080p frame on one core (``benchmarks/tracker_throughput.py``
measures it), most of it the downscaling.

Example:
    >>> import numpy as np
    >>> rng = np.random.default_rng(0)
    >>> scene = (rng.random((120, 200)) * 255).astype(np.uint8)
    >>> import cv2; scene = cv2.GaussianBlur(scene, (5, 5), 0)
    >>> moved = np.roll(scene, 4, axis=1)  # the camera panned: the image moves 4 px right
    >>> transforms = camera_motion_for_frames([scene, moved], width=200)
    >>> transforms.shape, np.round(transforms[1, :, 2]).tolist() == [4.0, 0.0]
    ((2, 2, 3), True)
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import cv2
import numpy as np

from hvps_lightning.errors import HVPSError, file_error

__all__ = ["IDENTITY", "CameraMotionEstimator", "camera_motion_for_frames", "compose"]

#: the transform of a frame without camera motion (and of a sequence's first frame).
IDENTITY = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]])


def compose(second: np.ndarray, first: np.ndarray) -> np.ndarray:
    """The transform ``first`` followed by ``second`` (both (2, 3) affine)."""
    return second[:, :2] @ np.concatenate([first, [[0.0, 0.0, 1.0]]])[:2] + np.concatenate(
        [np.zeros((2, 2)), second[:, 2:]], axis=1
    )


class CameraMotionEstimator:
    """Frame-to-frame camera motion by sparse optical flow on downscaled grey frames.

    Args:
        width: frames are downscaled to this width (keeping the aspect ratio) before
            tracking features; smaller is faster and coarser.
        max_corners: corners followed from frame to frame.
        min_matches: below this many followed corners the motion is unknown and the
            identity is returned.
        ransac_threshold: RANSAC inlier threshold in pixels of the downscaled frame.

    Example:
        >>> estimator = CameraMotionEstimator()
        >>> estimator.update(np.zeros((90, 160), np.uint8)).tolist()
        [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]
    """

    def __init__(
        self, width: int = 320, max_corners: int = 100, min_matches: int = 8, ransac_threshold: float = 1.0
    ) -> None:
        if width < 16:
            raise HVPSError(f"camera motion: width {width} is too small (at least 16 pixels)")
        self.width = width
        self.max_corners = max_corners
        self.min_matches = min_matches
        self.ransac_threshold = ransac_threshold
        self.reset()

    def reset(self) -> None:
        """Forget the previous frame: the next update starts a new sequence."""
        self._previous: np.ndarray | None = None
        self._corners: np.ndarray | None = None
        self._shape: tuple[int, int] | None = None

    def _small_grey(self, image: np.ndarray) -> tuple[np.ndarray, float]:
        image = np.asarray(image)
        if image.ndim not in (2, 3) or image.shape[0] < 2 or image.shape[1] < 2:
            raise HVPSError(f"camera motion: expected an (H, W) or (H, W, C) image, got shape {image.shape}")
        if image.dtype != np.uint8:
            image = np.clip(image, 0, 255).astype(np.uint8)
        height, width = image.shape[:2]
        scale = min(1.0, self.width / width)
        if scale < 1.0:
            # A bilinear resize reads only the pixels it needs (a tenth of an area resize's
            # cost at 1080p); the aliasing it allows does not disturb corner tracking.
            size = (max(2, round(width * scale)), max(2, round(height * scale)))
            image = cv2.resize(image, size, interpolation=cv2.INTER_LINEAR)
        if image.ndim == 3:
            code = cv2.COLOR_BGRA2GRAY if image.shape[2] == 4 else cv2.COLOR_RGB2GRAY
            image = cv2.cvtColor(image, code) if image.shape[2] in (3, 4) else image[..., 0]
        return np.ascontiguousarray(image), scale

    def update(self, image: np.ndarray) -> np.ndarray:
        """Return the transform from the previous frame to ``image`` (identity for the first).

        Raises:
            HVPSError: if the image is not 2-d or 3-d, or its size differs from the previous frame's.
        """
        shape = tuple(np.asarray(image).shape[:2])
        if self._shape is not None and shape != self._shape:
            raise HVPSError(
                f"camera motion: frame is {shape[0]}x{shape[1]}, "
                f"the previous was {self._shape[0]}x{self._shape[1]}"
            )
        grey, scale = self._small_grey(image)
        self._shape = shape
        transform = IDENTITY.copy()
        previous, corners = self._previous, self._corners
        if previous is not None and corners is not None and len(corners) >= self.min_matches:
            moved, status, _ = cv2.calcOpticalFlowPyrLK(
                previous, grey, corners, None, winSize=(11, 11), maxLevel=2
            )
            found = status.ravel() == 1
            if found.sum() >= self.min_matches:
                fitted, inliers = cv2.estimateAffinePartial2D(
                    corners[found],
                    moved[found],
                    method=cv2.RANSAC,
                    ransacReprojThreshold=self.ransac_threshold,
                )
                if fitted is not None and inliers is not None and int(inliers.sum()) >= self.min_matches:
                    transform = fitted.astype(np.float64)
                    transform[:, 2] /= scale  # the linear part is scale-free; shifts are in small pixels
        self._previous = grey
        self._corners = cv2.goodFeaturesToTrack(grey, self.max_corners, 0.01, 6, blockSize=3)
        return transform


def _read_grey(path: str | Path) -> np.ndarray:
    image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if image is None:
        raise file_error(Path(path), "camera motion: not a readable image")
    return image


def camera_motion_for_frames(frames: Iterable[np.ndarray | str | Path], width: int = 320) -> np.ndarray:
    """The transforms of a sequence of frames (image arrays or image paths), in order: (F, 2, 3).

    Frame ``i``'s transform maps pixel coordinates of frame ``i - 1`` to frame ``i``; the
    first frame's is the identity.

    Raises:
        HVPSError: naming an image path that cannot be read, or for frames of different sizes.
    """
    estimator = CameraMotionEstimator(width=width)
    transforms = [
        estimator.update(_read_grey(frame) if isinstance(frame, (str, Path)) else frame) for frame in frames
    ]
    return np.stack(transforms) if transforms else np.zeros((0, 2, 3))
