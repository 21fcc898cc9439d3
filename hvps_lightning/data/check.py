"""The check of a dataset root (``hvps data check``): its layout and every file in it.

:func:`check_dataset` walks a root with :func:`~hvps_lightning.data.layout.scan_root`, reads
every image, panoptic map and MOTS txt file through :mod:`hvps_lightning.data.loaders` (the
readers the datasets use), and reports what it found (sequences, frames, classes,
instances) or one line per problem, ``<file>: <what is wrong>``.

Example:
    >>> from hvps_lightning.structures.specs import get_spec
    >>> report = check_dataset(get_spec("kitti_step"), "/nonexistent")
    >>> report.problems
    ['/nonexistent: dataset root not found']
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hvps_lightning.data.layout import Problem, SequenceFiles, scan_root
from hvps_lightning.data.loaders import check_mots_sizes, load_frame, load_sequence_mots
from hvps_lightning.errors import HVPSError
from hvps_lightning.formats.mots_txt import IGNORE_CLASS, MOTSObject
from hvps_lightning.structures.specs import DatasetSpec, get_spec

__all__: list[str] = ["CheckReport", "SplitSummary", "check_dataset"]


@dataclass
class SplitSummary:
    """What the check found in one split folder."""

    folder: str
    sequences: int = 0
    frames: int = 0
    labelled_frames: int = 0
    classes: set[int] = field(default_factory=set)
    instances: set[tuple[str, int, int]] = field(default_factory=set)
    mots_objects: int = 0


@dataclass
class CheckReport:
    """The result of :func:`check_dataset`.

    Attributes:
        problems: one line per problem, ``<file>: <what is wrong>``; empty when the root is fine.
        warnings: one line per warning (a missing official sequence...).
        summary: per split folder, what was found.
        layout: the layout that was checked.
    """

    problems: list[str]
    warnings: list[str]
    summary: list[SplitSummary]
    layout: str = ""

    @property
    def ok(self) -> bool:
        """Whether no problem was found."""
        return not self.problems


def _check_sequence(spec: DatasetSpec, sequence: SequenceFiles, stats: SplitSummary) -> list[Problem]:
    """Read every file of a sequence; return its problems (one per bad file)."""
    problems: list[Problem] = []
    objects: dict[int, list[MOTSObject]] | None = None
    if sequence.mots_txt is not None:
        try:
            objects = load_sequence_mots(sequence)
        except HVPSError as exc:
            problems.append(_as_problem(exc, sequence.key))
        if objects is not None:
            stats.mots_objects += sum(len(v) for v in objects.values())
            for frame_objects in objects.values():
                for obj in frame_objects:
                    if obj.class_id != IGNORE_CLASS and spec.layout == "mots":
                        stats.instances.add((sequence.key, obj.class_id, obj.obj_id))
                        stats.classes.add(obj.class_id)
    mots_for_labels = objects if spec.layout == "mots" else None
    for frame in sequence.frames:
        try:
            loaded = load_frame(
                spec, sequence, frame, mots_for_labels or {}, with_labels=spec.layout != "mots"
            )
        except HVPSError as exc:
            problems.append(_as_problem(exc, sequence.key))
            continue
        stats.frames += 1
        shape = loaded.size
        if sequence.image_size is not None and tuple(shape[:2]) != sequence.image_size:
            height, width = sequence.image_size
            problems.append(
                Problem(
                    frame.image,
                    f"size {shape[1]}x{shape[0]} differs from seqinfo.ini "
                    f"(imWidth={width}, imHeight={height})",
                    sequence.key,
                )
            )
        if loaded.semantic is not None and loaded.instance is not None:
            stats.labelled_frames += 1
            _count_classes(spec, sequence.key, loaded.semantic, loaded.instance, stats)
        elif spec.layout == "mots" and objects is not None:
            stats.labelled_frames += 1
        if objects is not None and frame.number is not None and sequence.mots_txt is not None:
            try:
                check_mots_sizes(
                    objects.get(frame.number, ()), shape, sequence.mots_txt, frame.number, frame.image
                )
            except HVPSError as exc:
                problems.append(_as_problem(exc, sequence.key))
    return problems


def _as_problem(exc: HVPSError, key: str | None) -> Problem:
    text = str(exc)
    path, sep, message = text.partition(": ")
    return Problem(Path(path), message, key) if sep else Problem(Path("?"), text, key)


def _count_classes(
    spec: DatasetSpec, key: str, semantic: np.ndarray, instance: np.ndarray, stats: SplitSummary
) -> None:
    classes = np.unique(semantic)
    stats.classes.update(int(c) for c in classes if c != spec.ignore_label)
    things = np.isin(semantic, spec.thing_ids) & (instance > 0)
    if things.any():
        pairs = np.unique(semantic[things].astype(np.int64) * spec.label_divisor + instance[things])
        stats.instances.update(
            (key, int(p // spec.label_divisor), int(p % spec.label_divisor)) for p in pairs
        )


def check_dataset(
    spec: DatasetSpec | str,
    root: str | Path,
    folders: Iterable[str] | None = None,
    workers: int = 1,
    progress: Callable[[int, int], None] | None = None,
) -> CheckReport:
    """Check a dataset root: its layout and every file in it.

    Args:
        spec: the dataset spec (or its name).
        root: the dataset root.
        folders: restrict the check to these split folders.
        workers: threads reading files (image decoding releases the GIL).
        progress: called with (sequences done, sequences in all) after each sequence.

    Returns:
        A :class:`CheckReport`; ``report.problems`` is empty when the root is fine.
    """
    spec = get_spec(spec)
    scan = scan_root(spec, root, folders)
    summaries: dict[str, SplitSummary] = {}
    for sequence in scan.sequences:
        summary = summaries.setdefault(sequence.split_folder, SplitSummary(sequence.split_folder))
        summary.sequences += 1
    problems = list(scan.problems)

    def run(sequence: SequenceFiles) -> tuple[SequenceFiles, SplitSummary, list[Problem]]:
        stats = SplitSummary(sequence.split_folder)
        return sequence, stats, _check_sequence(spec, sequence, stats)

    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for done, (sequence, stats, found) in enumerate(pool.map(run, scan.sequences), start=1):
            summary = summaries[sequence.split_folder]
            summary.frames += stats.frames
            summary.labelled_frames += stats.labelled_frames
            summary.classes |= stats.classes
            summary.instances |= stats.instances
            summary.mots_objects += stats.mots_objects
            problems.extend(found)
            if progress is not None:
                progress(done, len(scan.sequences))
    if not scan.sequences and not problems:
        problems.append(Problem(Path(root), "no sequences found"))
    return CheckReport([str(p) for p in problems], list(scan.warnings), list(summaries.values()), scan.layout)

