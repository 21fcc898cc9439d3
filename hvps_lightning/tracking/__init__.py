"""IA-MOT style tracking: detection cache, tracker, offline tracker callback."""
