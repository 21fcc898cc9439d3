"""The semantic cache: per-frame semantic maps (and optional class probabilities) on disk.

Written by :class:`~hvps_lightning.lightning.writers.SemanticCacheWriter` during ``hvps predict``
and read by the panoptic fusion (``hvps track --semantic DIR``). Layout:

* ``<dir>/<seq>/<frame>.png``: 8-bit single-channel PNG of class ids at the original image size
  (the ignore label where the model abstains; SemanticModule never does).
* ``<dir>/<seq>/<frame>.probs.npz`` (optional): ``probabilities`` uint8 (C, h, w), the softmax
  quantised to 0..255 (``round(p * 255)``) at the network's resolution, and ``size`` = (H0, W0),
  the original size the reader upsamples to. At 7 classes and 256x448 this is ~0.8 MB raw,
  far less compressed; full-resolution float16 would be ~30 MB per 1080p frame.

Numpy ``.npz`` (arrays only, read with ``allow_pickle=False``) and PNG keep the cache free of
pickled code. Everything here is plain numpy: the fusion and the tracker CLI do not need torch.

Example:
    >>> import tempfile, numpy as np
    >>> d = tempfile.mkdtemp()
    >>> _ = write_semantic_map(d, "0002", "000000", np.array([[0, 4]], np.uint8))
    >>> read_semantic_map(d, "0002", "000000").tolist()
    [[0, 4]]
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from hvps_lightning.errors import HVPSError, file_error
from hvps_lightning.formats import read_png, write_png
from hvps_lightning.io import atomic_path

PROBABILITY_SUFFIX = ".probs.npz"


def semantic_map_path(directory: str | Path, sequence: str, frame: str) -> Path:
    """Return ``<directory>/<sequence>/<frame>.png``."""
    return Path(directory) / sequence / f"{frame}.png"


def probabilities_path(directory: str | Path, sequence: str, frame: str) -> Path:
    """Return ``<directory>/<sequence>/<frame>.probs.npz``."""
    return Path(directory) / sequence / f"{frame}{PROBABILITY_SUFFIX}"


def quantize_probabilities(probabilities: np.ndarray) -> np.ndarray:
    """Quantise probabilities in [0, 1] to uint8 (``round(p * 255)``; error at most 1/510)."""
    return np.clip(np.rint(np.asarray(probabilities, dtype=np.float32) * 255.0), 0, 255).astype(np.uint8)


def write_semantic_map(
    directory: str | Path,
    sequence: str,
    frame: str,
    semantic: np.ndarray,
    probabilities: np.ndarray | None = None,
) -> Path:
    """Write one frame's semantic map (and optionally its class probabilities); return the PNG path.

    Args:
        directory: the cache root.
        sequence: sequence name (a sub-folder).
        frame: frame name (the file stem).
        semantic: (H0, W0) class ids in 0..255.
        probabilities: optional (C, h, w) class probabilities in [0, 1] (float or already
            quantised uint8), any resolution; stored with the map's size for upsampling.

    Raises:
        ValueError: if the map is not 2-D, holds ids outside 0..255, or the probabilities are not 3-D.
    """
    semantic = np.asarray(semantic)
    if semantic.ndim != 2:
        raise ValueError(f"a semantic map is (H, W), got {semantic.shape}")
    if semantic.size and (semantic.min() < 0 or semantic.max() > 255):
        raise ValueError("semantic ids must lie in 0..255")
    path = semantic_map_path(directory, sequence, frame)
    write_png(path, semantic.astype(np.uint8))
    if probabilities is not None:
        probabilities = np.asarray(probabilities)
        if probabilities.ndim != 3:
            raise ValueError(f"probabilities are (C, h, w), got {probabilities.shape}")
        quantised = (
            probabilities if probabilities.dtype == np.uint8 else quantize_probabilities(probabilities)
        )
        with atomic_path(probabilities_path(directory, sequence, frame)) as tmp:
            np.savez_compressed(tmp, probabilities=quantised, size=np.asarray(semantic.shape, np.int64))
    return path


def read_semantic_map(directory: str | Path, sequence: str, frame: str) -> np.ndarray:
    """Read one frame's semantic map as an (H0, W0) uint8 array.

    Raises:
        HVPSError: naming the file if it is missing, unreadable or not a single-channel 8-bit PNG.
    """
    path = semantic_map_path(directory, sequence, frame)
    if not path.is_file():
        raise file_error(path, f"semantic map of frame {frame} of sequence {sequence} not found in the cache")
    semantic = read_png(path)
    if semantic.ndim != 2 or semantic.dtype != np.uint8:
        raise file_error(
            path, f"expected an 8-bit single-channel PNG of class ids, got {semantic.dtype} {semantic.shape}"
        )
    return semantic


def read_probabilities(
    directory: str | Path, sequence: str, frame: str, size: tuple[int, int] | None = None
) -> np.ndarray | None:
    """Read one frame's class probabilities as float32 (C, H, W), upsampled bilinearly to ``size``.

    ``size`` defaults to the original size stored with them. Returns ``None`` if the cache holds
    no probabilities for the frame.

    Raises:
        HVPSError: naming the file if it exists but is unreadable or malformed.
    """
    path = probabilities_path(directory, sequence, frame)
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            quantised = data["probabilities"]
            stored_size = tuple(int(v) for v in data["size"])
    except (OSError, ValueError, KeyError) as exc:
        raise file_error(path, f"not a readable probability file ({exc})") from None
    if quantised.ndim != 3 or quantised.dtype != np.uint8 or len(stored_size) != 2:
        raise file_error(
            path,
            f"expected uint8 probabilities (C, h, w) and a size (H, W), got "
            f"{quantised.dtype} {quantised.shape} and {stored_size}",
        )
    target = size if size is not None else stored_size
    return resize_probabilities(quantised.astype(np.float32) / 255.0, target)


def resize_probabilities(probabilities: np.ndarray, size: tuple[int, int]) -> np.ndarray:
    """Class probabilities (C, h, w) as float32 (C, H, W) at ``size`` (bilinear), as the fusion takes them."""
    height, width = (int(v) for v in size)
    probabilities = np.asarray(probabilities, dtype=np.float32)
    if probabilities.shape[1:] == (height, width):
        return probabilities
    # cv2 resizes (h, w, C) images channel by channel in one call (C <= 512)
    channels_last = np.ascontiguousarray(probabilities.transpose(1, 2, 0))
    resized = cv2.resize(channels_last, (width, height), interpolation=cv2.INTER_LINEAR)
    if resized.ndim == 2:  # cv2 drops a single channel
        resized = resized[:, :, None]
    return np.ascontiguousarray(resized.transpose(2, 0, 1))


def list_cached_frames(directory: str | Path, sequence: str) -> list[str]:
    """Return the frame names with a semantic map in ``<directory>/<sequence>``, sorted.

    Raises:
        HVPSError: if the sequence folder does not exist.
    """
    folder = Path(directory) / sequence
    if not folder.is_dir():
        raise HVPSError(f"{folder}: no semantic cache for sequence {sequence}")
    return sorted(p.stem for p in folder.glob("*.png") if not p.name.startswith("."))
