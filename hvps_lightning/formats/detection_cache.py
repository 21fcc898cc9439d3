"""The detection cache: what the MOTS network detected, stored per sequence, replayed by trackers.

Tracking, sweeps and benchmarks run on the cache, never on the network. Per sequence:

* ``<seq>.npz`` (``numpy.savez``, loaded with ``allow_pickle=False``): ``boxes`` (N, 4)
  float32, ``scores`` (N,) float32, ``labels`` (N,) int64, ``embeddings`` (N, D) float32 and
  ``frame_offsets`` (F + 1,) int64; the detections of frame ``f`` are rows
  ``frame_offsets[f]:frame_offsets[f + 1]``. Optional: ``camera_motion`` (F, 2, 3) float64,
  each frame's :attr:`FrameDetections.camera_motion` (written when every frame has one;
  caches without it load with ``camera_motion=None``).
* ``<seq>.json``: ``format``, ``version``, ``sequence``, ``frames`` (names, in order),
  ``image_sizes`` ([H, W] per frame), ``counts`` (detections per frame), ``masks`` (the
  compressed RLE ``counts`` string of each detection, in row order; a mask's size is its
  frame's image size), ``embedding_dim``, ``sha256`` (of the npz bytes and of this document
  without the checksum, so neither file can be edited or swapped for another run's unnoticed)
  and ``metadata`` (the model class, hparams, checkpoint, dataset... that produced the
  detections). Version 1 caches (a checksum of the npz only) still load.

Everything read is checked before use: sequence and frame names are plain names (they become
output paths), frame names are unique, image sizes are positive and below 65536 a side, and
every RLE decodes to exactly its frame's size (a malformed RLE makes pycocotools loop or crash).

Both files are written under a temporary name and renamed; the json is written last and
marks a complete sequence. Loading runs no code (no pickle), and any missing or malformed
file is an :class:`~hvps_lightning.errors.HVPSError` naming it. ``FrameDetections.extra`` is
not stored.

Example:
    >>> import tempfile
    >>> from hvps_lightning.structures.detections import FrameDetections
from hvps_lightning.structures.masks import check_rle
    >>> root = tempfile.mkdtemp()
    >>> _ = write_detection_cache(root, "0002", [FrameDetections.empty("000000", (4, 6))], {"model": "x"})
    >>> frames, metadata = read_detection_cache(root, "0002")
    >>> list_cached_sequences(root), frames[0].image_size, metadata
    (['0002'], (4, 6), {'model': 'x'})
"""

from __future__ import annotations

import hashlib
import io
import json
import math
import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hvps_lightning.errors import HVPSError, file_error
from hvps_lightning.io import atomic_path, plain_name, read_json_file, write_json
from hvps_lightning.structures.detections import FrameDetections
from hvps_lightning.structures.masks import check_rle

CACHE_FORMAT = "hvps-detection-cache"
CACHE_VERSION = 2
#: versions read (1: checksum of the npz only)
READABLE_VERSIONS = (1, 2)
#: largest image side a cache may declare (RLE run lengths and pycocotools' sizes are 32-bit)
MAX_IMAGE_SIDE = 65535
_ARRAYS = ("boxes", "scores", "labels", "embeddings", "frame_offsets")
_OPTIONAL_ARRAYS = ("camera_motion",)


def cache_paths(directory: str | Path, sequence: str) -> tuple[Path, Path]:
    """Return the ``(<seq>.npz, <seq>.json)`` paths of a sequence in a cache directory."""
    directory = Path(directory)
    sequence = plain_name(sequence, "sequence name")
    return directory / f"{sequence}.npz", directory / f"{sequence}.json"


def json_safe(value: Any) -> Any:
    """Return ``value`` made JSON-serialisable (numpy scalars/arrays to lists, unknowns to str)."""
    if isinstance(value, dict):
        return {str(k): json_safe(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_safe(v) for v in value]
    if isinstance(value, np.ndarray):
        return json_safe(value.tolist())
    if isinstance(value, np.generic):
        return json_safe(value.item())
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def write_detection_cache(
    directory: str | Path,
    sequence: str,
    frames: Sequence[FrameDetections],
    metadata: dict[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write the detections of one sequence (frames in order) to ``directory``.

    Args:
        directory: the cache directory (created if missing).
        sequence: the sequence name (the file stem).
        frames: the detections of every frame, in order; each is validated first.
        metadata: what produced them (model class, hparams, checkpoint...); made JSON-safe.

    Returns:
        The paths of the npz and the json written.

    Raises:
        HVPSError: for invalid detections, masks whose size differs from their frame's, or
            mixed embedding sizes.
    """
    npz_path, json_path = cache_paths(directory, sequence)
    names, sizes, counts, rle_counts = [], [], [], []
    dims = {int(f.embeddings.shape[1]) for f in frames if len(f) and f.embeddings.ndim == 2}
    if len(dims) > 1:
        raise HVPSError(f"sequence {sequence}: embeddings of different sizes {sorted(dims)}")
    if dims:
        dim = dims.pop()
    else:
        shaped = [f.embeddings.shape[1] for f in frames if f.embeddings.ndim == 2]
        dim = int(shaped[0]) if shaped else 0
    for frame in frames:
        frame.validate(f"sequence {sequence}")
        size = tuple(int(v) for v in frame.image_size)
        for mask in frame.masks:
            try:
                mask_size = (int(mask["size"][0]), int(mask["size"][1]))
                counts_value = mask["counts"]
            except (KeyError, TypeError, IndexError, ValueError):
                raise HVPSError(f"sequence {sequence}: frame {frame.frame}: a mask is not an RLE") from None
            if size == (0, 0):
                size = mask_size
            if mask_size != size:
                raise HVPSError(
                    f"sequence {sequence}: frame {frame.frame}: a mask is {mask_size}, the frame is {size}"
                )
            if isinstance(counts_value, bytes):
                counts_value = counts_value.decode("ascii")
            rle_counts.append(str(counts_value))
        names.append(plain_name(frame.frame, f"sequence {sequence}: frame name"))
        sizes.append(list(size))
        counts.append(len(frame))
    if len(set(names)) != len(names):
        raise HVPSError(f"sequence {sequence}: repeated frame names")
    arrays = {
        "boxes": _stack([f.boxes for f in frames], (0, 4), np.float32),
        "scores": _stack([f.scores for f in frames], (0,), np.float32),
        "labels": _stack([f.labels for f in frames], (0,), np.int64),
        "embeddings": _stack([f.embeddings for f in frames], (0, dim), np.float32),
        "frame_offsets": np.concatenate([[0], np.cumsum(counts, dtype=np.int64)]).astype(np.int64),
    }
    motions = [f.camera_motion for f in frames]
    if any(m is not None for m in motions):
        if any(m is None for m in motions):
            raise HVPSError(f"sequence {sequence}: camera_motion is set for some frames only (all or none)")
        arrays["camera_motion"] = np.stack([np.asarray(m, np.float64) for m in motions]).reshape(-1, 2, 3)
    document = {
        "format": CACHE_FORMAT,
        "version": CACHE_VERSION,
        "sequence": sequence,
        "frames": names,
        "image_sizes": sizes,
        "counts": counts,
        "embedding_dim": dim,
        "masks": rle_counts,
        "metadata": json_safe(metadata or {}),
    }
    with atomic_path(npz_path) as tmp:
        np.savez(tmp, **arrays)
        document["sha256"] = _checksum(tmp.read_bytes(), document)
    write_json(json_path, document, indent=None)
    return npz_path, json_path


def _checksum(npz_bytes: bytes, document: Mapping[str, Any]) -> str:
    # the npz bytes, then the document without its checksum in one canonical JSON form
    fields = {k: v for k, v in document.items() if k not in ("sha256", "arrays_sha256")}
    canonical = json.dumps(fields, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(npz_bytes + canonical.encode("ascii")).hexdigest()


def _stack(parts: list[np.ndarray], empty_shape: tuple[int, ...], dtype: type) -> np.ndarray:
    parts = [np.asarray(p, dtype) for p in parts if len(p)]
    return np.concatenate(parts).astype(dtype, copy=False) if parts else np.zeros(empty_shape, dtype)


def cache_dataset(metadata: Mapping[str, Any]) -> str | None:
    """The dataset spec name recorded in a cache's metadata (``dataset``, else ``hparams.dataset``)."""
    value = metadata.get("dataset")
    if isinstance(value, str):
        return value
    hparams = metadata.get("hparams")
    if isinstance(hparams, Mapping) and isinstance(hparams.get("dataset"), str):
        return str(hparams["dataset"])
    return None


def list_cached_sequences(directory: str | Path) -> list[str]:
    """Return the sequences of a cache directory (those with a ``<seq>.json``), sorted.

    Raises:
        HVPSError: if the directory does not exist.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise file_error(directory, "detection cache directory not found")
    return sorted(p.stem for p in directory.glob("*.json") if _is_plain(p.stem))


def read_cache_metadata(directory: str | Path, sequence: str) -> dict[str, Any]:
    """Read and check the json of a cached sequence (the whole document, not just ``metadata``).

    Raises:
        HVPSError: naming the json if it is missing, not JSON, or not a detection cache.
    """
    _, json_path = cache_paths(directory, sequence)
    document = read_json_file(
        json_path,
        missing="cached sequence not found (no such json)",
        unreadable="not a readable detection cache json",
    )
    if not isinstance(document, dict) or document.get("format") != CACHE_FORMAT:
        raise file_error(json_path, f"not a detection cache (format is not {CACHE_FORMAT!r})")
    version = document.get("version")
    if version not in READABLE_VERSIONS:
        raise file_error(
            json_path, f"detection cache version {version!r}, expected one of {READABLE_VERSIONS}"
        )
    digest_key = "arrays_sha256" if version == 1 else "sha256"
    required = ("frames", "image_sizes", "counts", "masks", "embedding_dim", digest_key)
    missing = [k for k in required if k not in document]
    if missing:
        raise file_error(json_path, f"missing keys {', '.join(missing)}")
    frames, sizes, counts, masks = (document[k] for k in ("frames", "image_sizes", "counts", "masks"))
    lists_ok = all(isinstance(v, list) for v in (frames, sizes, counts, masks))
    if not lists_ok or not (len(frames) == len(sizes) == len(counts)):
        raise file_error(json_path, "frames, image_sizes and counts must be lists of one length")
    if not all(type(c) is int and c >= 0 for c in counts):
        raise file_error(json_path, "counts must be non-negative integers")
    total = sum(counts)
    for name, size in zip(frames, sizes, strict=True):
        if not (isinstance(size, list) and len(size) == 2 and all(type(v) is int for v in size)):
            raise file_error(json_path, f"frame {name!r}: image size must be [H, W] integers, got {size!r}")
        if not all(1 <= v <= MAX_IMAGE_SIDE for v in size):
            raise file_error(
                json_path, f"frame {name!r}: image size {size} outside 1..{MAX_IMAGE_SIDE} a side"
            )
    for name in frames:
        try:
            plain_name(name, "frame name")
        except HVPSError as exc:
            raise file_error(json_path, str(exc)) from None
    if len(set(frames)) != len(frames):
        repeated = next(name for name in frames if frames.count(name) > 1)
        raise file_error(json_path, f"frame {repeated!r} appears more than once")
    if len(masks) != total or not all(isinstance(m, str) for m in masks):
        raise file_error(json_path, f"{len(masks)} mask strings for {total} detections")
    if type(document["embedding_dim"]) is not int or document["embedding_dim"] < 0:
        raise file_error(json_path, "embedding_dim must be a non-negative integer")
    return document


def read_detection_cache(
    directory: str | Path, sequence: str
) -> tuple[list[FrameDetections], dict[str, Any]]:
    """Read one cached sequence; return its frames (in order) and the metadata stored with it.

    Raises:
        HVPSError: naming the file if either file is missing, corrupt, or they disagree.
    """
    npz_path, json_path = cache_paths(directory, sequence)
    document = read_cache_metadata(directory, sequence)
    try:
        raw = npz_path.read_bytes()
    except FileNotFoundError:
        raise file_error(npz_path, "detection arrays not found (the json exists)") from None
    except OSError as exc:
        raise file_error(npz_path, f"unreadable ({exc})") from None
    if document["version"] == 1:
        intact = hashlib.sha256(raw).hexdigest() == document["arrays_sha256"]
    else:
        intact = _checksum(raw, document) == document["sha256"]
    if not intact:
        raise file_error(
            npz_path, f"does not match {json_path.name} (checksum differs: edited, or from another run)"
        )
    arrays = _load_arrays(npz_path, raw)
    counts = [int(c) for c in document["counts"]]
    total = sum(counts)
    offsets = arrays["frame_offsets"]
    dim = int(document["embedding_dim"])
    expected = {"boxes": (total, 4), "scores": (total,), "labels": (total,), "embeddings": (total, dim)}
    for name, shape in expected.items():
        if arrays[name].shape != shape:
            raise file_error(npz_path, f"{name} has shape {arrays[name].shape}, expected {shape}")
    if (
        offsets.shape != (len(counts) + 1,)
        or not np.array_equal(np.diff(offsets), counts)
        or (len(offsets) and offsets[0] != 0)
    ):
        raise file_error(npz_path, "frame_offsets disagree with the counts of the json")
    motion = arrays.get("camera_motion")
    if motion is not None and (motion.shape != (len(counts), 2, 3) or not np.isfinite(motion).all()):
        raise file_error(
            npz_path, f"camera_motion has shape {motion.shape}, expected ({len(counts)}, 2, 3), finite"
        )
    masks = document["masks"]
    frames = []
    for index, (name, size) in enumerate(zip(document["frames"], document["image_sizes"], strict=True)):
        start, stop = int(offsets[index]), int(offsets[index + 1])
        height, width = int(size[0]), int(size[1])
        for row, counts_text in enumerate(masks[start:stop]):
            problem = check_rle({"size": [height, width], "counts": counts_text})
            if problem is not None:
                raise file_error(json_path, f"frame {name}: mask {row}: {problem}")
        frame = FrameDetections(
            frame=str(name),
            boxes=arrays["boxes"][start:stop],
            scores=arrays["scores"][start:stop],
            labels=arrays["labels"][start:stop],
            masks=[{"size": [height, width], "counts": c} for c in masks[start:stop]],
            embeddings=arrays["embeddings"][start:stop],
            image_size=(height, width),
            camera_motion=None if motion is None else motion[index],
        )
        frame.validate(str(npz_path))
        frames.append(frame)
    metadata = document.get("metadata") or {}
    return frames, metadata if isinstance(metadata, dict) else {"metadata": metadata}


def _load_arrays(npz_path: Path, raw: bytes) -> dict[str, np.ndarray]:
    # ``raw``: the file's bytes, already read for the checksum (errors still name ``npz_path``)
    try:
        with np.load(io.BytesIO(raw), allow_pickle=False) as data:
            missing = [k for k in _ARRAYS if k not in data.files]
            if missing:
                raise file_error(npz_path, f"missing arrays {', '.join(missing)}")
            return {k: np.asarray(data[k]) for k in (*_ARRAYS, *_OPTIONAL_ARRAYS) if k in data.files}
    except HVPSError:
        raise
    except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
        raise file_error(npz_path, f"not a readable npz ({type(exc).__name__}: {exc})") from None


def read_detection_cache_dir(
    directory: str | Path, sequences: Sequence[str] | None = None
) -> dict[str, tuple[list[FrameDetections], dict[str, Any]]]:
    """Read several (by default all) sequences of a cache directory.

    Raises:
        HVPSError: if the directory holds no sequence, or a file is bad.
    """
    names = list(sequences) if sequences is not None else list_cached_sequences(directory)
    if not names:
        raise file_error(directory, "no cached sequences (no <seq>.json files)")
    return {name: read_detection_cache(directory, name) for name in names}


def _is_plain(name: str) -> bool:
    try:
        plain_name(name, "sequence")
    except HVPSError:
        return False
    return True
