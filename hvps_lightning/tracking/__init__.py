"""IA-MOT style tracking: detection cache, tracker, offline tracker callback, ``hvps track``.

The light parts (no Lightning import) are re-exported here; ``OfflineTrackerCallback`` lives
in :mod:`hvps_lightning.tracking.callback` and ``DetectionCacheWriter`` in
:mod:`hvps_lightning.tracking.cache` (imported on first use).
"""

from hvps_lightning.tracking.cache import list_cached_sequences, read_detection_cache, write_detection_cache
from hvps_lightning.tracking.config import ParamRange, TrackerConfig
from hvps_lightning.tracking.detections import FrameDetections
from hvps_lightning.tracking.tracker import TrackedObject, Tracker, track_sequence

__all__ = [
    "FrameDetections",
    "ParamRange",
    "TrackedObject",
    "Tracker",
    "TrackerConfig",
    "list_cached_sequences",
    "read_detection_cache",
    "track_sequence",
    "write_detection_cache",
]
