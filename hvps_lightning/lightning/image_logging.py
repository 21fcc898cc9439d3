"""Image logging behind a small interface, so that callbacks never call ``logger.experiment`` directly.

:class:`ImageLogger` is what the callbacks use (``log_images``, ``log_video``);
:func:`image_logger_for` wraps a trainer's loggers: W&B (``WandbLogger``, also
``HVPSWandbLogger``) and TensorBoard are supported, anything else logs nothing. Every method
runs on rank 0 only (``rank_zero_only``), so callbacks can call them from every process.

Example:
    >>> logger = image_logger_for([])  # no logger: images go nowhere
    >>> isinstance(logger, NoOpImageLogger)
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np
from lightning.pytorch.utilities import rank_zero_only


@runtime_checkable
class ImageLogger(Protocol):
    """Where a callback sends images and videos."""

    def log_images(
        self,
        key: str,
        images: Sequence[np.ndarray],
        step: int | None = None,
        captions: Sequence[str] | None = None,
    ) -> None:
        """Log (H, W, 3) uint8 RGB images under ``key``."""

    def log_video(self, key: str, path: str | Path, step: int | None = None) -> None:
        """Log a GIF/MP4 file under ``key``."""


class NoOpImageLogger:
    """Logs nothing (no logger, or a logger without image support)."""

    def log_images(
        self,
        key: str,
        images: Sequence[np.ndarray],
        step: int | None = None,
        captions: Sequence[str] | None = None,
    ) -> None:
        """Do nothing."""

    def log_video(self, key: str, path: str | Path, step: int | None = None) -> None:
        """Do nothing."""


class WandbImageLogger:
    """Images and videos to a Lightning ``WandbLogger``'s run.

    Args:
        logger: a ``lightning.pytorch.loggers.WandbLogger`` (or subclass).
    """

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    @rank_zero_only
    def log_images(
        self,
        key: str,
        images: Sequence[np.ndarray],
        step: int | None = None,
        captions: Sequence[str] | None = None,
    ) -> None:
        """Log images through ``WandbLogger.log_image``."""
        kwargs = {"caption": list(captions)} if captions is not None else {}
        self.logger.log_image(key=key, images=[np.asarray(i) for i in images], step=step, **kwargs)

    @rank_zero_only
    def log_video(self, key: str, path: str | Path, step: int | None = None) -> None:
        """Log a GIF/MP4 file through ``WandbLogger.log_video``."""
        self.logger.log_video(key=key, videos=[str(path)], step=step)


class TensorBoardImageLogger:
    """Images to a Lightning ``TensorBoardLogger`` (videos: not supported, nothing is logged).

    Args:
        logger: a ``lightning.pytorch.loggers.TensorBoardLogger``.
    """

    def __init__(self, logger: Any) -> None:
        self.logger = logger

    @rank_zero_only
    def log_images(
        self,
        key: str,
        images: Sequence[np.ndarray],
        step: int | None = None,
        captions: Sequence[str] | None = None,
    ) -> None:
        """Log each image as ``<key>/<i>`` (or ``<key>/<caption>``)."""
        writer = self.logger.experiment
        for index, image in enumerate(images):
            name = captions[index] if captions is not None else str(index)
            writer.add_image(f"{key}/{name}", np.asarray(image), global_step=step, dataformats="HWC")

    def log_video(self, key: str, path: str | Path, step: int | None = None) -> None:
        """TensorBoard needs moviepy for videos; the overlays are logged as images instead."""


class MultiImageLogger:
    """Sends everything to several image loggers."""

    def __init__(self, loggers: Iterable[ImageLogger]) -> None:
        self.loggers = list(loggers)

    def log_images(
        self,
        key: str,
        images: Sequence[np.ndarray],
        step: int | None = None,
        captions: Sequence[str] | None = None,
    ) -> None:
        """Log to every logger."""
        for logger in self.loggers:
            logger.log_images(key, images, step, captions)

    def log_video(self, key: str, path: str | Path, step: int | None = None) -> None:
        """Log to every logger."""
        for logger in self.loggers:
            logger.log_video(key, path, step)


def image_logger_for(loggers: Any) -> ImageLogger:
    """Return an :class:`ImageLogger` for a Lightning logger or a list of them (``trainer.loggers``)."""
    from lightning.pytorch.loggers import TensorBoardLogger, WandbLogger

    if loggers is None:
        return NoOpImageLogger()
    if not isinstance(loggers, (list, tuple)):
        loggers = [loggers]
    wrapped: list[ImageLogger] = []
    for logger in loggers:
        if isinstance(logger, WandbLogger):
            wrapped.append(WandbImageLogger(logger))
        elif isinstance(logger, TensorBoardLogger):
            wrapped.append(TensorBoardImageLogger(logger))
    if not wrapped:
        return NoOpImageLogger()
    return wrapped[0] if len(wrapped) == 1 else MultiImageLogger(wrapped)
