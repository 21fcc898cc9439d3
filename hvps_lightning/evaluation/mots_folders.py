"""MOTS metrics of result folders in the official layouts (``hvps evaluate mots``).

The ground truth is read as the benchmarks ship it, the layout recognised from the folder:

* **MOTS20** (TrackEval's ``MOTSChallenge`` GT folder or a MOTS20 split folder):
  ``<gt>/<seq>/gt/gt.txt`` with ``<gt>/<seq>/seqinfo.ini`` (``seqLength``: the sequence's
  frames, numbered from 1); a MOTS20 root with ``train/<seq>/gt/gt.txt`` works too;
* **KITTI-MOTS**: ``<gt>/instances_txt/<seq>.txt`` (a dataset root) or ``<gt>/label_02/<seq>.txt``
  (TrackEval's ``KittiMOTS`` GT folder), frames numbered from 0; the lengths come from a
  seqmap (``evaluate_mots.seqmap.<split>``: ``0002 empty 000000 000233``), which is used
  when the folder holds exactly one and no ``--seqmap`` is given;
* **flat**: ``<gt>/<seq>.txt`` (what ``hvps track`` writes, a generated root's
  ``instances_txt/<split>``).

A seqmap (``--seqmap``; MOTS20's ``name`` + one sequence per line, or KITTI's rows) chooses
the sequences and gives their lengths; every sequence it names must have ground truth.
Predictions are ``<pred>/<seq>.txt``, or TrackEval's tracker folder ``<pred>/data/<seq>.txt``.
Several classes (``car``, ``pedestrian``) are scored in one pass over the files, each as
TrackEval scores it on its own; with ``output_dir`` TrackEval's ``<class>_summary.txt`` and
``<class>_detailed.csv`` are written too (:mod:`hvps_lightning.formats.trackeval_results`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hvps_lightning.data.layout.mots import read_seqinfo
from hvps_lightning.errors import HVPSError, file_error
from hvps_lightning.formats.mots_txt import MOTS_CLASS_NAMES, MOTSObject, read_mots_txt
from hvps_lightning.formats.trackeval_results import write_trackeval_results
from hvps_lightning.io import read_text_file
from hvps_lightning.metrics.mots import MOTSCounts, mots_counts, spanned_frames

#: class name -> MOTS class id
MOTS_CLASS_IDS = {name: class_id for class_id, name in MOTS_CLASS_NAMES.items()}

Progress = Callable[[int, int], None]


@dataclass
class MOTSGroundTruth:
    """Where the ground truth of each sequence is, and what is known of its length.

    Attributes:
        layout: ``mots20``, ``kitti_mots`` or ``flat``.
        files: sequence -> its ground-truth MOTS txt file, in evaluation order.
        lengths: sequence -> its number of frames, where ``seqinfo.ini`` or a seqmap says.
        seqmap: the seqmap used, if any.
    """

    layout: str
    files: dict[str, Path]
    lengths: dict[str, int] = field(default_factory=dict)
    seqmap: Path | None = None


def read_seqmap(path: str | Path) -> dict[str, int | None]:
    """Sequences named by a seqmap, in order, with the length it gives (KITTI rows) or ``None``.

    MOTS20's seqmaps are a ``name`` header and one sequence per line; KITTI-MOTS's are
    ``<seq> empty <first frame> <last frame>`` rows (the length is last + 1, as TrackEval reads it).

    Raises:
        HVPSError: naming the file and line for a row it cannot read, or an empty seqmap.
    """
    path = Path(path)
    text = read_text_file(path, missing="seqmap not found", unreadable="unreadable seqmap")
    sequences: dict[str, int | None] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        fields = line.replace(",", " ").split()
        if not fields or (number == 1 and fields == ["name"]):
            continue
        if len(fields) >= 4 and fields[0].isdigit():
            if not fields[3].isdigit():
                raise file_error(path, f"line {number}: expected '<seq> empty <first> <last>', got {line!r}")
            sequences[f"{int(fields[0]):04d}"] = int(fields[3]) + 1
        elif len(fields) == 1:
            sequences[fields[0]] = None
        else:
            raise file_error(path, f"line {number}: expected a sequence name or '<seq> empty <first> <last>'")
    if not sequences:
        raise file_error(path, "the seqmap names no sequence")
    return sequences


def locate_ground_truth(
    gt_dir: str | Path, seqmap: str | Path | None = None, sequences: Sequence[str] | None = None
) -> MOTSGroundTruth:
    """Find the ground-truth files under ``gt_dir`` (layouts of the module docstring).

    Args:
        gt_dir: the ground-truth folder.
        seqmap: a seqmap choosing the sequences (default: every sequence; KITTI-MOTS: the
            folder's single ``evaluate_mots.seqmap.*``, if any).
        sequences: evaluate only these sequences (after the seqmap).

    Raises:
        HVPSError: for a folder without ground truth, a seqmap or ``--sequences`` naming a
            sequence that has none, or an unreadable ``seqinfo.ini``.
    """
    gt_dir = Path(gt_dir)
    if not gt_dir.is_dir():
        raise file_error(gt_dir, "--gt is not a folder")
    found = _find_layout(gt_dir)
    if found is None:
        raise file_error(
            gt_dir,
            "no MOTS ground truth: expected <seq>/gt/gt.txt (MOTS20), instances_txt/<seq>.txt or "
            "label_02/<seq>.txt (KITTI-MOTS), or <seq>.txt files",
        )
    truth = found
    if seqmap is None and truth.layout == "kitti_mots":
        candidates = sorted(gt_dir.glob("evaluate_mots.seqmap.*"))
        seqmap = candidates[0] if len(candidates) == 1 else None
    if seqmap is not None:
        named = read_seqmap(seqmap)
        for name in named:
            if name not in truth.files:
                raise file_error(
                    seqmap,
                    f"names sequence {name!r}, which has no ground truth in {gt_dir} ({truth.layout} layout)",
                )
        truth.files = {name: truth.files[name] for name in named}
        truth.lengths.update({name: length for name, length in named.items() if length is not None})
        truth.seqmap = Path(seqmap)
    if sequences is not None:
        unknown = [s for s in sequences if s not in truth.files]
        if unknown:
            raise HVPSError(
                f"--sequences: {', '.join(unknown)} not in {gt_dir} ({', '.join(sorted(truth.files))})"
            )
        truth.files = {s: truth.files[s] for s in truth.files if s in set(sequences)}
    return truth


def _find_layout(gt_dir: Path) -> MOTSGroundTruth | None:
    for root in (gt_dir, gt_dir / "train"):
        mots20 = sorted(p for p in root.glob("*/gt/gt.txt") if p.is_file())
        if mots20:
            lengths = {}
            for gt_file in mots20:
                seqinfo = gt_file.parent.parent / "seqinfo.ini"
                if seqinfo.is_file():
                    length = read_seqinfo(seqinfo).get("seqlength", "").strip()
                    if not length.isdigit():
                        raise file_error(seqinfo, f"seqLength {length!r} is not a number of frames")
                    lengths[gt_file.parent.parent.name] = int(length)
            return MOTSGroundTruth("mots20", {p.parent.parent.name: p for p in mots20}, lengths)
    for folder in ("instances_txt", "label_02"):
        files = sorted(p for p in (gt_dir / folder).glob("*.txt") if p.is_file())
        if files:
            return MOTSGroundTruth("kitti_mots", {p.stem: p for p in files})
    files = sorted(p for p in gt_dir.glob("*.txt") if p.is_file())
    if files:
        return MOTSGroundTruth("flat", {p.stem: p for p in files})
    return None


def locate_predictions(pred_dir: str | Path, sequences: Sequence[str]) -> dict[str, Path]:
    """The prediction file of every sequence: ``<pred>/<seq>.txt`` or ``<pred>/data/<seq>.txt``.

    Raises:
        HVPSError: naming the missing file.
    """
    pred_dir = Path(pred_dir)
    if not pred_dir.is_dir():
        raise file_error(pred_dir, "--pred is not a folder")
    folder = pred_dir
    if not any(pred_dir.glob("*.txt")) and (pred_dir / "data").is_dir():
        folder = pred_dir / "data"  # TrackEval's trackers/<name>/data/
    files = {}
    for sequence in sequences:
        path = folder / f"{sequence}.txt"
        if not path.is_file():
            raise file_error(path, f"missing prediction file for ground-truth sequence {sequence!r}")
        files[sequence] = path
    return files


def class_ids(classes: Sequence[str | int]) -> dict[str, int]:
    """``--classes`` (names or ids) as name -> MOTS class id, in the given order.

    Raises:
        HVPSError: for an unknown class.
    """
    chosen: dict[str, int] = {}
    for value in classes:
        text = str(value).strip().lower()
        if text.isdigit() and int(text) in MOTS_CLASS_NAMES:
            chosen[MOTS_CLASS_NAMES[int(text)]] = int(text)
        elif text in MOTS_CLASS_IDS:
            chosen[text] = MOTS_CLASS_IDS[text]
        else:
            known = ", ".join(f"{name} ({cid})" for name, cid in MOTS_CLASS_IDS.items())
            raise HVPSError(f"--classes: unknown MOTS class {value!r}; known: {known}")
    if not chosen:
        raise HVPSError("--classes: name at least one class")
    return chosen


def evaluate_mots_folders(
    gt_dir: str | Path,
    pred_dir: str | Path,
    classes: Sequence[str | int] = ("pedestrian",),
    sequences: Sequence[str] | None = None,
    seqmap: str | Path | None = None,
    output_dir: str | Path | None = None,
    progress: Progress | None = None,
) -> dict[str, Any]:
    """MOTS metrics of a prediction folder against a ground-truth folder, per class.

    Args:
        gt_dir: the ground truth (MOTS20, KITTI-MOTS or flat layout, see the module docstring).
        pred_dir: ``<seq>.txt`` prediction files (or TrackEval's ``data/`` folder of them).
        classes: the classes to score (names or ids); the first one fills the top-level keys.
        sequences: score only these sequences.
        seqmap: a seqmap choosing the sequences and giving their lengths.
        output_dir: also write TrackEval's ``<class>_summary.txt`` / ``<class>_detailed.csv`` here.
        progress: called with (steps done, steps in all): reading each sequence, then scoring it
            for each class.

    Returns:
        ``{"combined": M, "per_sequence": {seq: M}, "classes": {name: {"combined", "per_sequence"}},
        "layout": ..., "sequence_lengths": {seq: frames}}`` with ``M`` the metrics of
        :func:`~hvps_lightning.metrics.mots.evaluate_mots`; top-level = the first class.

    Raises:
        HVPSError: naming the folder, file or argument (missing, unreadable, malformed,
            overlapping masks, frames beyond the sequence's length).
    """
    chosen = class_ids(classes)
    truth = locate_ground_truth(gt_dir, seqmap, sequences)
    pred_files = locate_predictions(pred_dir, list(truth.files))
    gt: dict[str, list[MOTSObject]] = {}
    pred: dict[str, list[MOTSObject]] = {}
    sources: dict[str, tuple[str, str]] = {}
    lengths: dict[str, int] = {}
    total = len(truth.files) * (1 + len(chosen))
    done = 0

    def step() -> None:
        nonlocal done
        done += 1
        if progress is not None:
            progress(done, total)

    for sequence, gt_file in truth.files.items():
        gt[sequence] = read_mots_txt(gt_file)
        pred[sequence] = read_mots_txt(pred_files[sequence])
        sources[sequence] = (str(gt_file), str(pred_files[sequence]))
        lengths[sequence] = _length(truth, sequence, gt[sequence], pred[sequence], sources[sequence])
        step()
    result: dict[str, Any] = {"classes": {}}
    for name, class_id in chosen.items():
        counts = mots_counts(gt, pred, class_id, sources, lengths, on_sequence=step)
        combined = sum(counts.values(), MOTSCounts())
        result["classes"][name] = {
            "combined": combined.metrics(),
            "per_sequence": {s: c.metrics() for s, c in counts.items()},
        }
        if output_dir is not None:
            write_trackeval_results(
                output_dir, name, {s: c.fields() for s, c in counts.items()}, combined.fields()
            )
    first = result["classes"][next(iter(chosen))]
    return {
        "combined": first["combined"],
        "per_sequence": first["per_sequence"],
        **result,
        "layout": truth.layout,
        "sequence_lengths": lengths,
    }


def _length(
    truth: MOTSGroundTruth,
    sequence: str,
    gt: list[MOTSObject],
    pred: list[MOTSObject],
    sources: tuple[str, str],
) -> int:
    """The sequence's number of frames; frames beyond a known length are an error (as in TrackEval)."""
    known = truth.lengths.get(sequence)
    if known is None:
        return spanned_frames([*gt, *pred])
    # MOTS20 numbers frames 1..seqLength, KITTI-MOTS 0..length-1
    first, last = (1, known) if truth.layout == "mots20" else (0, known - 1)
    for objects, where in ((gt, sources[0]), (pred, sources[1])):
        outside = sorted({o.frame for o in objects if not first <= o.frame <= last})
        if outside:
            said = truth.seqmap if truth.seqmap is not None else "seqLength in seqinfo.ini"
            raise file_error(
                where, f"frame {outside[0]} is outside the sequence's frames {first}..{last} (from {said})"
            )
    return known

