"""Colours: one stable colour per track id, and the dataset's class colours for stuff.

A track keeps its colour across frames, sequences and runs: the hue steps by the golden
ratio per id, so consecutive ids get well-separated hues, with saturation and value varied
on a slower cycle so that ids far apart rarely collide.

Example:
    >>> track_color(1) == track_color(1), track_color(1) != track_color(2)
    (True, True)
    >>> class_colors("motchallenge_step")[4]  # person
    (220, 20, 60)
"""

from __future__ import annotations

import colorsys
from functools import lru_cache

import numpy as np

from hvps_lightning.structures.specs import DatasetSpec, get_spec

_GOLDEN = 0.6180339887498949


@lru_cache(maxsize=4096)
def track_color(track_id: int) -> tuple[int, int, int]:
    """Return the RGB colour (0..255) of a track id; the same id always gets the same colour."""
    track_id = int(track_id)
    hue = (track_id * _GOLDEN) % 1.0
    saturation = (0.95, 0.7, 0.85)[(track_id // 7) % 3]
    value = (0.95, 0.8)[(track_id // 21) % 2]
    red, green, blue = colorsys.hsv_to_rgb(hue, saturation, value)
    return round(red * 255), round(green * 255), round(blue * 255)


def class_colors(spec: DatasetSpec | str) -> tuple[tuple[int, int, int], ...]:
    """Return the class colours of a dataset spec (Cityscapes palette), index = class id."""
    return get_spec(spec).colors


def class_lut(spec: DatasetSpec | str, void_color: tuple[int, int, int] = (0, 0, 0)) -> np.ndarray:
    """Return a (256, 3) uint8 lookup table class id -> colour (void and unknown ids: ``void_color``)."""
    lut = np.tile(np.asarray(void_color, np.uint8), (256, 1))
    for class_id, color in enumerate(class_colors(spec)):
        lut[class_id] = color
    return lut
