"""IA-MOT style tracking: the tracker and its configuration (numpy and scipy only, no Lightning)."""

from hvps_lightning.tracking.config import ParamRange, TrackerConfig
from hvps_lightning.tracking.tracker import SequenceTracker, Tracker, track_sequence

__all__ = ["ParamRange", "SequenceTracker", "Tracker", "TrackerConfig", "track_sequence"]
