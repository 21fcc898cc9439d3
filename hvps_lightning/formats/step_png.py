"""STEP panoptic maps: RGB PNGs with R = semantic class, G = instance // 256, B = instance % 256.

Instance 0 is stuff, or crowd where the class is a thing; the ignore label (255) is void.

Example:
    >>> import numpy as np
    >>> semantic = np.array([[4, 255]]); instance = np.array([[300, 0]])
    >>> encode_step(semantic, instance).tolist()
    [[[4, 1, 44], [255, 0, 0]]]
    >>> [a.tolist() for a in decode_step(encode_step(semantic, instance))]
    [[[4, 255]], [[300, 0]]]
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hvps_lightning.errors import file_error
from hvps_lightning.formats.png import read_png, write_png

#: instance ids must fit in the G and B channels.
MAX_INSTANCE = 256 * 256 - 1


def encode_step(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    """Pack a semantic map (0..255) and an instance map (0..65535) into a (H, W, 3) uint8 array.

    Raises:
        ValueError: if the shapes differ or a value does not fit its channel.
    """
    semantic = np.asarray(semantic)
    instance = np.asarray(instance)
    if semantic.shape != instance.shape or semantic.ndim != 2:
        raise ValueError(f"semantic {semantic.shape} and instance {instance.shape} must be equal 2-D shapes")
    if semantic.size and (semantic.min() < 0 or semantic.max() > 255):
        raise ValueError("semantic ids must lie in 0..255")
    if instance.size and (instance.min() < 0 or instance.max() > MAX_INSTANCE):
        raise ValueError(f"instance ids must lie in 0..{MAX_INSTANCE}")
    instance = instance.astype(np.int64, copy=False)
    rgb = np.empty((*semantic.shape, 3), dtype=np.uint8)
    rgb[..., 0] = semantic
    rgb[..., 1] = instance // 256
    rgb[..., 2] = instance % 256
    return rgb


def decode_step(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Unpack a (H, W, 3) STEP map into int32 ``(semantic, instance)`` arrays."""
    rgb = np.asarray(rgb)
    if rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"a STEP map is (H, W, 3), got {rgb.shape}")
    semantic = rgb[..., 0].astype(np.int32)
    instance = rgb[..., 1].astype(np.int32) * 256 + rgb[..., 2].astype(np.int32)
    return semantic, instance


def read_step_png(path: str | Path) -> tuple[np.ndarray, np.ndarray]:
    """Read a STEP panoptic PNG into int32 ``(semantic, instance)`` arrays.

    Raises:
        HVPSError: naming the file if it is missing, unreadable, truncated or not an RGB PNG.
    """
    rgb = read_png(path, mode="RGB")
    if rgb.dtype != np.uint8:
        raise file_error(path, f"expected 8-bit channels, found {rgb.dtype}")
    return decode_step(rgb)


def write_step_png(path: str | Path, semantic: np.ndarray, instance: np.ndarray) -> None:
    """Write ``(semantic, instance)`` as a STEP panoptic PNG (temporary name, then rename)."""
    write_png(path, encode_step(semantic, instance))
