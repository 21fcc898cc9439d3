"""STEP panoptic maps: RGB PNGs with R = semantic class, G = instance // 256, B = instance % 256.

Instance 0 is stuff, or crowd where the class is a thing; the ignore label (255) is void.

:func:`read_step_png` gives (semantic, instance) int32 arrays; :func:`read_step_panoptic`
decodes straight into packed panoptic ids ``semantic * 65536 + instance`` (uint32), which is
what STQ compares fastest: the R, G, B bytes of a pixel already are that number's bytes, so
decoding to BGR (OpenCV's order) and padding each pixel to four bytes is the whole conversion.

Example:
    >>> import numpy as np
    >>> semantic = np.array([[4, 255]]); instance = np.array([[300, 0]])
    >>> encode_step(semantic, instance).tolist()
    [[[4, 1, 44], [255, 0, 0]]]
    >>> [a.tolist() for a in decode_step(encode_step(semantic, instance))]
    [[[4, 255]], [[300, 0]]]
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from hvps_lightning.errors import file_error
from hvps_lightning.formats.png import check_png, read_png, read_png_bytes, write_png

#: instance ids must fit in the G and B channels.
MAX_INSTANCE = 256 * 256 - 1
#: the label divisor of the packed ids of :func:`read_step_panoptic`.
STEP_LABEL_DIVISOR = 256 * 256


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


def read_step_panoptic(
    path: str | Path, decoder: str | None = None, out: np.ndarray | None = None
) -> np.ndarray:
    """Read a STEP panoptic PNG into (H, W) uint32 panoptic ids ``semantic * 65536 + instance``.

    Args:
        path: the PNG.
        decoder: ``"cv2"`` (OpenCV, the fastest here), ``"pil"`` or None for the fastest one
            available. A file OpenCV cannot decode is handed to PIL, whose message names the
            problem.
        out: an (H, W) uint32 C-contiguous array to decode into, used if its shape fits the
            image (a fresh 1080p array costs page faults worth ~10 % of the decoding).

    Raises:
        HVPSError: naming the file if it is missing, unreadable, truncated, corrupted or not
            an 8-bit RGB PNG.
    """
    data = read_png_bytes(path)
    header = check_png(path, data)
    if (header.bit_depth, header.colour_type) != (8, 2):
        raise file_error(path, f"expected an 8-bit RGB image (a STEP map), found {header.describe()}")
    shape = (header.height, header.width)
    if out is None or out.shape != shape or out.dtype != np.uint32 or not out.flags.c_contiguous:
        out = np.empty(shape, dtype=np.uint32)
    decoder = decoder or ("cv2" if _cv2() is not None else "pil")
    if decoder != "cv2" or not _decode_cv2(data, out):
        np.copyto(out, _decode_pil(path, data))
    return out


def _cv2() -> Any:
    """The cv2 module, or None where OpenCV is missing."""
    try:
        import cv2
    except ImportError:  # pragma: no cover - opencv is a dependency
        return None
    return cv2


def _decode_cv2(data: bytes, out: np.ndarray) -> bool:
    """Decode into ``out``; False where OpenCV cannot."""
    cv2 = _cv2()
    if cv2 is None:  # pragma: no cover - opencv is a dependency
        return False
    bgr = cv2.imdecode(np.frombuffer(data, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if bgr is None or bgr.shape != (*out.shape, 3) or bgr.dtype != np.uint8:
        return False
    # B, G, R, A bytes read as one little-endian uint32 are R << 16 | G << 8 | B, plus A << 24
    cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA, dst=out.view(np.uint8).reshape(*out.shape, 4))
    if sys.byteorder == "big":  # pragma: no cover - the bytes above are little-endian
        out.byteswap(inplace=True)
    np.bitwise_and(out, 0xFFFFFF, out=out)
    return True


def _decode_pil(path: str | Path, data: bytes) -> np.ndarray:
    import io

    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
            if image.mode != "RGB":
                raise file_error(path, f"expected an RGB image, found mode {image.mode}")
            raw = image.tobytes("raw", "BGRX")  # pad byte 0: the bytes of R << 16 | G << 8 | B
            width, height = image.size
    except UnidentifiedImageError:
        raise file_error(path, "not a readable image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise file_error(path, f"unreadable or truncated image ({exc})") from None
    return np.frombuffer(raw, dtype="<u4").reshape(height, width)
