"""Visualisation: colour overlays of tracked and panoptic frames, GIF/MP4 per sequence.

* :mod:`~hvps_lightning.viz.colors`: a stable colour per track id, class colours for stuff.
* :mod:`~hvps_lightning.viz.overlay`: tracked objects or STEP panoptic maps drawn over images.
* :mod:`~hvps_lightning.viz.video`: GIF (imageio) and MP4 (imageio-ffmpeg) writers.

Sending images to a logger (W&B, TensorBoard) is Lightning glue:
:mod:`hvps_lightning.lightning.image_logging`.
"""

from hvps_lightning.viz.colors import class_colors, track_color
from hvps_lightning.viz.overlay import colorize_panoptic, overlay_panoptic, overlay_tracks
from hvps_lightning.viz.video import Mp4Writer, write_gif, write_mp4, write_video

__all__ = [
    "Mp4Writer",
    "class_colors",
    "colorize_panoptic",
    "overlay_panoptic",
    "overlay_tracks",
    "track_color",
    "write_gif",
    "write_mp4",
    "write_video",
]
