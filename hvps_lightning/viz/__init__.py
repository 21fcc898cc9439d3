"""Visualisation: colour overlays of tracked and panoptic frames, GIF/MP4 per sequence, image logging.

* :mod:`~hvps_lightning.viz.colors`: a stable colour per track id, class colours for stuff.
* :mod:`~hvps_lightning.viz.overlay`: tracked objects or STEP panoptic maps drawn over images.
* :mod:`~hvps_lightning.viz.video`: GIF (imageio) and MP4 (imageio-ffmpeg) writers.
* :mod:`~hvps_lightning.viz.logging`: the ``ImageLogger`` interface the callbacks use to send
  images to W&B / TensorBoard on rank 0.
"""

from hvps_lightning.viz.colors import class_colors, track_color
from hvps_lightning.viz.logging import (
    ImageLogger,
    NoOpImageLogger,
    TensorBoardImageLogger,
    WandbImageLogger,
    image_logger_for,
)
from hvps_lightning.viz.overlay import colorize_panoptic, overlay_panoptic, overlay_tracks
from hvps_lightning.viz.video import write_gif, write_mp4, write_video

__all__ = [
    "ImageLogger",
    "NoOpImageLogger",
    "TensorBoardImageLogger",
    "WandbImageLogger",
    "class_colors",
    "colorize_panoptic",
    "image_logger_for",
    "overlay_panoptic",
    "overlay_tracks",
    "track_color",
    "write_gif",
    "write_mp4",
    "write_video",
]
