"""PNG reading and writing shared by the format modules: clear errors, atomic writes."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image, UnidentifiedImageError

from hvps_lightning.errors import file_error
from hvps_lightning.io import atomic_path

#: zlib level and strategy of written PNGs: run-length matching is ~1.5x faster than the
#: default on noisy camera-like images and smaller on label maps; PNG stays lossless.
PNG_PARAMS = [cv2.IMWRITE_PNG_COMPRESSION, 3, cv2.IMWRITE_PNG_STRATEGY, cv2.IMWRITE_PNG_STRATEGY_RLE]


#: the first bytes of a PNG file, and its last chunk when complete (IEND and its CRC).
_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_PNG_END = b"IEND\xaeB`\x82"


def read_png(path: str | Path, mode: str | None = None) -> np.ndarray:
    """Read an image file fully (so truncation is detected) and return it as a numpy array.

    With ``mode="RGB"`` (the label maps of STEP and COCO panoptic) the file must hold 8-bit RGB:
    a 16-bit or grey PNG is refused rather than narrowed. Other modes keep every value as
    stored (a 16-bit grey PNG reads as uint16).

    Args:
        path: the image file.
        mode: the PIL mode the file must have (e.g. ``"RGB"``); ``None`` accepts any.

    Raises:
        HVPSError: naming the file if it is missing, unreadable, truncated or of another mode.
    """
    path = Path(path)
    if mode == "RGB":
        rgb = _read_rgb8(path)
        if rgb is not None:
            return rgb
    try:
        with Image.open(path) as image:
            image.load()  # decode now: a truncated file fails here, not later in a worker
            if mode is not None and image.mode != mode:
                raise file_error(path, f"expected a {mode} image, found mode {image.mode}")
            return np.asarray(image)
    except FileNotFoundError:
        raise file_error(path, "file not found") from None
    except UnidentifiedImageError:
        raise file_error(path, "not a readable image") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise file_error(path, f"unreadable or truncated image ({exc})") from None


def _read_rgb8(path: Path) -> np.ndarray | None:
    """Decode a complete PNG with OpenCV (faster than PIL) as 8-bit RGB; ``None``: let PIL say why not.

    Raises:
        HVPSError: naming the file if it is missing, or holds other than 8-bit RGB.
    """
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise file_error(path, "file not found") from None
    except OSError:
        return None
    if not (data.startswith(_PNG_SIGNATURE) and data.endswith(_PNG_END)):
        return None  # not a PNG, or cut short: PIL names the problem (libpng would print its own)
    array = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_UNCHANGED)
    if array is None:
        return None
    channels = 1 if array.ndim == 2 else array.shape[2]
    if array.dtype != np.uint8 or channels != 3:
        kind = {1: "grey", 2: "grey with alpha", 3: "RGB", 4: "RGBA"}.get(channels, f"{channels}-channel")
        bits = 8 * array.dtype.itemsize
        raise file_error(path, f"expected an RGB image with 8 bits per channel, found {bits}-bit {kind}")
    return cv2.cvtColor(array, cv2.COLOR_BGR2RGB)


def write_png(path: str | Path, image: np.ndarray) -> None:
    """Write an (H, W, 3) RGB or (H, W) grey uint8 array as a PNG, atomically.

    The bytes depend only on the pixels (no timestamps), so equal inputs give equal files.
    """
    array = np.ascontiguousarray(image)
    if array.dtype != np.uint8:
        raise ValueError(f"write_png needs uint8 pixels, got {array.dtype}")
    if array.ndim == 3:
        if array.shape[2] != 3:
            raise ValueError(f"write_png needs (H, W, 3) or (H, W), got {array.shape}")
        array = array[:, :, ::-1]  # OpenCV writes BGR
    ok, encoded = cv2.imencode(".png", array, PNG_PARAMS)
    if not ok:
        raise OSError(f"{path}: PNG encoding failed")
    with atomic_path(path) as tmp:
        tmp.write_bytes(encoded.tobytes())


PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
#: PNG colour type -> what it is called in messages
COLOUR_TYPES = {0: "grey", 2: "RGB", 3: "palette", 4: "grey + alpha", 6: "RGBA"}


class PNGHeader(NamedTuple):
    """The IHDR fields of a PNG that decide how it decodes."""

    width: int
    height: int
    bit_depth: int
    colour_type: int

    def describe(self) -> str:
        """E.g. ``"8-bit RGB"``."""
        return f"{self.bit_depth}-bit {COLOUR_TYPES.get(self.colour_type, f'colour type {self.colour_type}')}"


def read_png_bytes(path: str | Path) -> bytes:
    """The bytes of an image file.

    Raises:
        HVPSError: naming the file if it is missing or cannot be read.
    """
    try:
        return Path(path).read_bytes()
    except FileNotFoundError:
        raise file_error(path, "file not found") from None
    except OSError as exc:
        raise file_error(path, f"unreadable file ({exc.strerror or exc})") from None


def check_png(path: str | Path, data: bytes) -> PNGHeader:
    """Check the chunk structure of a whole PNG file (every chunk complete, every CRC right, IEND last).

    Catches truncated and corrupted files before a decoder sees them (libpng would print its
    own complaints to stderr), for the price of one CRC pass over the compressed bytes.

    Raises:
        HVPSError: ``<path>: not a readable image`` (no PNG signature or header) or
            ``<path>: unreadable or truncated image (...)``.
    """
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR" or len(data) < 33:
        raise file_error(path, "not a readable image")
    header = PNGHeader(*struct.unpack(">IIBB", data[16:26]))
    view = memoryview(data)
    position = len(PNG_SIGNATURE)
    while True:
        if position + 12 > len(data):
            raise file_error(path, "unreadable or truncated image (the file ends inside a chunk)")
        (length,) = struct.unpack(">I", data[position : position + 4])
        end = position + 12 + length
        if end > len(data):
            raise file_error(path, "unreadable or truncated image (the file ends inside a chunk)")
        kind = data[position + 4 : position + 8]
        (crc,) = struct.unpack(">I", data[end - 4 : end])
        if zlib.crc32(view[position + 4 : end - 4]) != crc:
            name = kind.decode("latin-1")
            raise file_error(path, f"unreadable or truncated image ({name} chunk fails its CRC)")
        position = end
        if kind == b"IEND":
            return header
