"""Tracker outputs as files: MOTS txt per sequence and, with a semantic map, fused STEP PNGs.

Layout written by ``hvps track`` and by ``OfflineTrackerCallback(export_dir=...)``::

    <out>/mots/<seq>.txt            MOTS txt: id = MOTS class * 1000 + track id
    <out>/step/<seq>/<frame>.png    STEP panoptic PNGs (only with a semantic source)

MOTS frame numbers are the frame names read as integers (``000001`` -> 1), as in the
datasets' own ground truth; a sequence with non-numeric frame names is numbered by position
(0-based). The MOTS class of a tracked object comes from ``spec.mots_class_ids`` (MOTChallenge-
STEP person -> 2 pedestrian); objects of classes without a MOTS class are left out of the txt.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hvps_lightning.formats import MOTSObject, write_mots_txt
from hvps_lightning.structures.detections import TrackedObject
from hvps_lightning.structures.specs import DatasetSpec, get_spec

MOTS_DIR = "mots"
STEP_DIR = "step"


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
    mots_class = dict(spec.mots_class_ids)
    objects = []
    for number, frame_objects in zip(frame_numbers(frame_names), tracks, strict=True):
        for obj in frame_objects:
            class_id = mots_class.get(int(obj.label))
            if class_id is None:
                continue
            objects.append(MOTSObject(number, class_id * 1000 + int(obj.track_id), class_id, obj.rle))
    return objects


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
