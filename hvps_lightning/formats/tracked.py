"""Tracker outputs as files: MOTS txt per sequence and, with a semantic map, fused STEP PNGs.

Layout written by ``hvps track``, ``OfflineTrackerCallback(export_dir=...)`` and ``hvps infer``::

    <out>/mots/<seq>.txt            MOTS txt: id = MOTS class * 1000 + track id
    <out>/step/<seq>/<frame>.png    STEP panoptic PNGs (only with a semantic source)
    <out>/tracks/<seq>.jsonl        ``hvps infer --save json``: one JSON object per frame

``hvps infer`` streams the text files (:class:`MOTSTxtStream`, :class:`TracksJsonlStream`):
lines go to a temporary file renamed onto the final name when the sequence ends, so memory
stays bounded and no half-written file ever carries the final name.

MOTS frame numbers are the frame names read as integers (``000001`` -> 1), as in the
datasets' own ground truth; a sequence with non-numeric frame names is numbered by position
(0-based). The MOTS class of a tracked object comes from ``spec.mots_class_ids`` (MOTChallenge-
STEP person -> 2 pedestrian); objects of classes without a MOTS class are left out of the txt.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from contextlib import ExitStack
from pathlib import Path
from typing import IO, Any

from hvps_lightning.formats import MOTSObject, write_mots_txt
from hvps_lightning.formats.mots_txt import mots_line
from hvps_lightning.io import atomic_path
from hvps_lightning.structures.detections import TrackedObject
from hvps_lightning.structures.specs import DatasetSpec, get_spec

MOTS_DIR = "mots"
STEP_DIR = "step"
TRACKS_DIR = "tracks"


def frame_numbers(frame_names: Sequence[str]) -> list[int]:
    """MOTS frame numbers of a sequence: ``int(name)`` if every name is a number, else positions."""
    if all(name.isdigit() for name in frame_names):
        return [int(name) for name in frame_names]
    return list(range(len(frame_names)))


def mots_objects(
    frame_names: Sequence[str], tracks: Sequence[Sequence[TrackedObject]], spec: DatasetSpec | str
) -> list[MOTSObject]:
    """Convert a tracked sequence into MOTS objects (see the module docstring for ids and frames).

    Example:
        >>> import numpy as np
        >>> obj = TrackedObject(7, 4, 0.9, np.zeros(4, np.float32), {"size": [2, 2], "counts": "04"})
        >>> [(o.frame, o.obj_id, o.class_id) for o in mots_objects(["000001"], [[obj]], "motchallenge_step")]
        [(1, 2007, 2)]
    """
    spec = get_spec(spec)
    objects = []
    for number, frame_objects in zip(frame_numbers(frame_names), tracks, strict=True):
        objects += frame_mots_objects(number, frame_objects, spec)
    return objects


def frame_mots_objects(number: int, objects: Sequence[TrackedObject], spec: DatasetSpec) -> list[MOTSObject]:
    """One frame's tracked objects as MOTS objects of frame ``number`` (objects of no MOTS class left out)."""
    mots_class = spec.mots_class_ids
    out = []
    for obj in objects:
        class_id = mots_class.get(int(obj.label))
        if class_id is not None:
            out.append(MOTSObject(number, class_id * 1000 + int(obj.track_id), class_id, obj.rle))
    return out


def write_mots_sequence(
    out_dir: str | Path,
    sequence: str,
    frame_names: Sequence[str],
    tracks: Sequence[Sequence[TrackedObject]],
    spec: DatasetSpec | str,
) -> Path:
    """Write ``<out_dir>/mots/<sequence>.txt`` (atomically) and return its path."""
    path = Path(out_dir) / MOTS_DIR / f"{sequence}.txt"
    write_mots_txt(path, mots_objects(frame_names, tracks, spec))
    return path


class _StreamedFile:
    """A text file written line by line under a temporary name, renamed onto ``path`` by :meth:`close`."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stack = ExitStack()
        tmp = self._stack.enter_context(atomic_path(path))
        self._handle: IO[str] = self._stack.enter_context(open(tmp, "w", encoding="utf-8", newline="\n"))

    def close(self) -> Path:
        """Finish the file: it appears under its final name, complete."""
        self._stack.close()
        return self.path

    def abort(self) -> None:
        """Drop the file: the temporary one is removed, an earlier file of that name is left as it was."""
        self._stack.__exit__(RuntimeError, RuntimeError("aborted"), None)


class MOTSTxtStream(_StreamedFile):
    r"""``<out>/mots/<seq>.txt`` written frame by frame, in increasing order, as :func:`write_mots_sequence`.

    Example:
        >>> import tempfile, numpy as np
        >>> out = Path(tempfile.mkdtemp())
        >>> stream = MOTSTxtStream(out, "0002", "motchallenge_step")
        >>> obj = TrackedObject(7, 4, 0.9, np.zeros(4, np.float32), {"size": [2, 2], "counts": "04"})
        >>> stream.add(1, [obj])
        >>> stream.close().read_text()
        '1 2007 2 2 2 04\n'
    """

    def __init__(self, out_dir: str | Path, sequence: str, spec: DatasetSpec | str) -> None:
        self.spec = get_spec(spec)
        super().__init__(Path(out_dir) / MOTS_DIR / f"{sequence}.txt")

    def add(self, number: int, objects: Sequence[TrackedObject]) -> None:
        """Append frame ``number``'s objects (sorted by id, as :func:`write_mots_txt` sorts them)."""
        mots = sorted(frame_mots_objects(number, objects, self.spec), key=lambda o: o.obj_id)
        self._handle.writelines(mots_line(o) for o in mots)


def track_record(
    name: str, index: int, objects: Sequence[TrackedObject], spec: DatasetSpec
) -> dict[str, Any]:
    """One frame's tracks as a JSON object (a line of ``tracks/<seq>.jsonl``).

    ``{"frame": name, "index": i, "tracks": [{"id", "class_id", "class", "score", "box": [x1, y1, x2, y2],
    "mask": {"size": [H, W], "counts": str}}, ...]}``; ``box`` in pixels, ``mask`` a compressed RLE.
    """
    return {
        "frame": name,
        "index": int(index),
        "tracks": [
            {
                "id": int(o.track_id),
                "class_id": int(o.label),
                "class": spec.class_names[int(o.label)] if 0 <= int(o.label) < spec.num_classes else None,
                "score": round(float(o.score), 5),
                "box": [round(float(v), 2) for v in o.box],
                "mask": {"size": [int(v) for v in o.rle["size"]], "counts": _text(o.rle["counts"])},
            }
            for o in objects
        ],
    }


def _text(counts: str | bytes) -> str:
    return counts.decode("ascii") if isinstance(counts, bytes) else counts


class TracksJsonlStream(_StreamedFile):
    """``<out>/tracks/<seq>.jsonl``: one :func:`track_record` per line, per frame in order."""

    def __init__(self, out_dir: str | Path, sequence: str, spec: DatasetSpec | str) -> None:
        self.spec = get_spec(spec)
        super().__init__(Path(out_dir) / TRACKS_DIR / f"{sequence}.jsonl")

    def add(self, name: str, index: int, objects: Sequence[TrackedObject]) -> None:
        """Append one frame's line."""
        self._handle.write(json.dumps(track_record(name, index, objects, self.spec)) + "\n")
