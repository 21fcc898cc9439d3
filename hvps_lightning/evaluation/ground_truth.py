"""Ground truth for :func:`~hvps_lightning.evaluation.scoring.track_fuse_score`, from wherever it lives.

A :class:`GroundTruth` answers two questions in the label space of one dataset spec: the
STEP panoptic maps of a frame (:meth:`GroundTruth.frame`, a
:class:`~hvps_lightning.structures.panoptic.PanopticFrame`) and the MOTS objects of a sequence
(:meth:`GroundTruth.mots_objects`; by default derived from the panoptic maps by
:func:`panoptic_to_mots`: things with an id, crowd as the ignore region). The sources:

* :class:`DatasetGroundTruth`: the frames a ``ClipDataset`` knows (what the offline tracker
  callback evaluates), read with the training loaders and mapped into the model's spec; or,
  without a dataset, the STEP map beside each frame's image (``images/`` -> ``panoptic_maps/``).
* :class:`StepFolderGroundTruth`: a folder ``<seq>/<frame>.png`` of STEP PNGs (what ``hvps
  evaluate step --gt`` takes, or a dataset root's ``panoptic_maps/<split>``).
* :class:`MOTSFolderGroundTruth`: MOTS txt files ``<seq>.txt`` (what ``hvps evaluate mots --gt``
  takes), optionally over another source's panoptic maps.
* :class:`PreloadedGroundTruth`: another source's frames read once and kept in memory (dense,
  or run-length encoded above a budget), for sweeps that score hundreds of trials.

:func:`locate_ground_truth` finds the folder of a sequence set under a dataset root or a plain
folder, as ``--gt`` arguments are given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hvps_lightning.errors import HVPSError
from hvps_lightning.formats.mots_txt import ID_DIVISOR, IGNORE_CLASS, IGNORE_ID, MOTSObject, read_mots_txt
from hvps_lightning.formats.step_png import read_step_png
from hvps_lightning.formats.tracked import frame_numbers
from hvps_lightning.structures.masks import encode_mask
from hvps_lightning.structures.panoptic import PanopticFrame
from hvps_lightning.structures.specs import DatasetSpec, get_spec, label_lut


def panoptic_to_mots(frame: PanopticFrame, spec: DatasetSpec | str, number: int) -> list[MOTSObject]:
    """MOTS objects of one ground-truth frame: one per (thing class, instance id), plus crowd as ignore.

    Ids are ``MOTS class * 1000 + instance``; thing pixels with instance 0 (crowd) of classes
    with a MOTS class form one ignore region (id 10000, class 10).

    Raises:
        HVPSError: if an instance id does not fit below 1000.
    """
    spec = get_spec(spec)
    semantic, instance = frame
    objects: list[MOTSObject] = []
    crowd = np.zeros(semantic.shape, bool)
    for label, mots_class in sorted(spec.mots_class_ids.items()):
        of_class = semantic == label
        if not of_class.any():
            continue
        crowd |= of_class & (instance == 0)
        for track_id in np.unique(instance[of_class & (instance > 0)]).tolist():
            if track_id >= ID_DIVISOR:
                raise HVPSError(f"frame {number}: ground-truth instance id {track_id} does not fit MOTS ids")
            mask = of_class & (instance == track_id)
            objects.append(
                MOTSObject(number, mots_class * ID_DIVISOR + int(track_id), mots_class, encode_mask(mask))
            )
    if crowd.any():
        objects.append(MOTSObject(number, IGNORE_ID, IGNORE_CLASS, encode_mask(crowd)))
    return objects


class GroundTruth:
    """Ground-truth panoptic maps and MOTS objects in the label space of :attr:`spec`."""

    def __init__(self, spec: DatasetSpec | str) -> None:
        self.spec = get_spec(spec)

    def frame(self, sequence: str, frame: str) -> PanopticFrame | None:
        """The frame's panoptic maps, or ``None`` if it has no labels."""
        raise NotImplementedError

    def available(self, sequence: str) -> bool:
        """Whether ``sequence`` has ground truth."""
        raise NotImplementedError

    def mots_objects(self, sequence: str, frame_names: Sequence[str]) -> list[MOTSObject]:
        """The MOTS ground truth of these frames (MOTS frame numbers as ``hvps track`` writes them)."""
        objects: list[MOTSObject] = []
        for name, number in zip(frame_names, frame_numbers(frame_names), strict=True):
            truth = self.frame(sequence, name)
            if truth is not None:
                objects += panoptic_to_mots(truth, self.spec, number)
        return objects


class DatasetGroundTruth(GroundTruth):
    """Ground truth of the frames a ``ClipDataset`` knows, in the label space of ``spec``.

    Args:
        spec: the label space the maps are returned in (the model's spec).
        dataset: a ``ClipDataset`` (or anything with ``sequences``, ``source_spec``), or ``None``.
        image_paths: (sequence, frame) -> image path, for the fallback without a dataset.
    """

    def __init__(
        self,
        spec: DatasetSpec | str,
        dataset: Any | None = None,
        image_paths: Mapping[tuple[str, str], str] | None = None,
    ) -> None:
        super().__init__(spec)
        self.dataset = dataset
        self.image_paths = dict(image_paths or {})
        self._sequences: dict[str, Any] = {}
        self._mots: dict[str, Any] = {}
        self._lut: np.ndarray | None = None
        self.source_spec = self.spec
        if dataset is not None and hasattr(dataset, "sequences"):
            self._sequences = {seq.name: seq for seq in dataset.sequences}
            self.source_spec = get_spec(getattr(dataset, "source_spec", self.spec))
            if self.source_spec.name != self.spec.name:
                self._lut = np.asarray(label_lut(self.source_spec.name, self.spec.name), np.int32)

    def available(self, sequence: str) -> bool:
        """Whether ground truth can be read for ``sequence``."""
        if sequence in self._sequences:
            return bool(self._sequences[sequence].labelled)
        return any(seq == sequence for seq, _ in self.image_paths)

    def frame(self, sequence: str, frame: str) -> PanopticFrame | None:
        """The frame's maps, or ``None`` if it has no labels.

        Raises:
            HVPSError: from the readers, naming the file, when a label file is bad.
        """
        if sequence in self._sequences:
            return self._from_dataset(sequence, frame)
        image = self.image_paths.get((sequence, frame))
        if image is None:
            return None
        return self._from_image_path(Path(image))

    def _from_dataset(self, sequence: str, frame: str) -> PanopticFrame | None:
        from hvps_lightning.data.loaders import load_frame, load_sequence_mots

        seq = self._sequences[sequence]
        files = next((f for f in seq.frames if f.stem == frame), None)
        if files is None or not seq.labelled:
            return None
        if self.source_spec.layout == "mots" and sequence not in self._mots:
            self._mots[sequence] = load_sequence_mots(seq)
        loaded = load_frame(self.source_spec, seq, files, self._mots.get(sequence))
        if loaded.semantic is None or loaded.instance is None:
            return None
        return self._convert(loaded.semantic, loaded.instance)

    def _from_image_path(self, image: Path) -> PanopticFrame | None:
        parts = list(image.parts)
        if "images" not in parts:
            return None
        index = len(parts) - 1 - parts[::-1].index("images")
        parts[index] = "panoptic_maps"
        label = Path(*parts).with_suffix(".png")
        if not label.is_file():
            return None
        return self._convert(*read_step_png(label))

    def _convert(self, semantic: np.ndarray, instance: np.ndarray) -> PanopticFrame:
        semantic = np.asarray(semantic, np.int32)
        if self._lut is not None:
            semantic = self._lut[np.clip(semantic, 0, 255)]
        things = np.isin(semantic, self.spec.thing_ids)
        return PanopticFrame(semantic, np.where(things, np.asarray(instance, np.int32), 0))


class StepFolderGroundTruth(GroundTruth):
    """STEP PNGs ``<folder>/<seq>/<frame>.png`` in the label space of ``spec``."""

    def __init__(self, folder: str | Path, spec: DatasetSpec | str) -> None:
        super().__init__(spec)
        self.folder = Path(folder)

    def available(self, sequence: str) -> bool:
        """Whether ``<folder>/<sequence>/`` exists."""
        return (self.folder / sequence).is_dir()

    def frame(self, sequence: str, frame: str) -> PanopticFrame | None:
        """The frame's maps, or ``None`` if its PNG is absent."""
        path = self.folder / sequence / f"{frame}.png"
        if not path.is_file():
            return None
        return PanopticFrame(*read_step_png(path))


class MOTSFolderGroundTruth(GroundTruth):
    """MOTS txt ground truth ``<folder>/<seq>.txt``; panoptic maps from ``panoptic`` if given.

    Only the objects of the frames asked for are returned (a detection cache may hold part of a
    sequence).
    """

    def __init__(
        self, folder: str | Path, spec: DatasetSpec | str, panoptic: GroundTruth | None = None
    ) -> None:
        super().__init__(spec)
        self.folder = Path(folder)
        self.panoptic = panoptic
        self._objects: dict[str, list[MOTSObject]] = {}

    def available(self, sequence: str) -> bool:
        """Whether ``<folder>/<sequence>.txt`` exists."""
        return (self.folder / f"{sequence}.txt").is_file()

    def frame(self, sequence: str, frame: str) -> PanopticFrame | None:
        """The panoptic source's maps (``None`` without one)."""
        return self.panoptic.frame(sequence, frame) if self.panoptic is not None else None

    def mots_objects(self, sequence: str, frame_names: Sequence[str]) -> list[MOTSObject]:
        """The file's objects of these frames (frame names must be numbers, as MOTS numbers frames).

        Raises:
            HVPSError: if a frame name is not a number, or the file is bad.
        """
        if not all(name.isdigit() for name in frame_names):
            raise HVPSError(
                f"sequence {sequence}: frame names are not numbers; MOTS ground truth numbers frames"
            )
        if sequence not in self._objects:
            self._objects[sequence] = read_mots_txt(self.folder / f"{sequence}.txt")
        numbers = set(frame_numbers(frame_names))
        return [o for o in self._objects[sequence] if int(o.frame) in numbers]


class _RunLengthFrame:
    """A panoptic frame stored as runs of equal (semantic, instance) pixels along the flat image.

    Label maps are piecewise constant, so at full HD a frame has ~1 % as many runs as pixels:
    600 frames of ground truth take ~150 MB instead of ~5 GB, and rebuilding a frame is one
    ``np.repeat`` (a few ms), several times faster than decoding its PNG again.
    """

    __slots__ = ("lengths", "shape", "values")

    def __init__(self, frame: PanopticFrame) -> None:
        self.shape = frame.shape
        words = frame.stacked().reshape(-1).view(np.int64)  # one int64 word per (semantic, instance)
        starts = np.concatenate([[0], np.flatnonzero(words[1:] != words[:-1]) + 1])
        self.values = words[starts]
        self.lengths = np.diff(np.append(starts, words.size)).astype(np.uint32)

    def decode(self) -> PanopticFrame:
        pair = np.repeat(self.values, self.lengths).view(np.int32).reshape(*self.shape, 2)
        return PanopticFrame(pair[..., 0], pair[..., 1])


class PreloadedGroundTruth(GroundTruth):
    """Another source's frames, read once: dense, or run-length encoded when ``dense`` is false.

    Args:
        source: where the frames come from.
        frames: sequence -> the frame names to load (every one must have ground truth).
        dense: keep the decoded maps (fast, 8 bytes a pixel) or run-length encode them.

    Raises:
        HVPSError: naming the first frame without ground truth.
    """

    def __init__(self, source: GroundTruth, frames: Mapping[str, Sequence[str]], dense: bool = True) -> None:
        super().__init__(source.spec)
        self.source = source
        self._frames: dict[tuple[str, str], Any] = {}
        self._mots: dict[str, list[MOTSObject]] = {}
        self._sequences = {sequence for sequence in frames if source.available(sequence)}
        for sequence, names in frames.items():
            for name in names:
                truth = source.frame(sequence, name)
                if truth is None:
                    continue
                self._frames[(sequence, name)] = truth if dense else _RunLengthFrame(truth)
            if sequence in self._sequences:
                self._mots[sequence] = source.mots_objects(sequence, list(names))

    def available(self, sequence: str) -> bool:
        """Whether the source had ground truth for ``sequence``."""
        return sequence in self._sequences

    def frame(self, sequence: str, frame: str) -> PanopticFrame | None:
        """The loaded frame (``None`` if it had none)."""
        item = self._frames.get((sequence, frame))
        return item.decode() if isinstance(item, _RunLengthFrame) else item

    def mots_objects(self, sequence: str, frame_names: Sequence[str]) -> list[MOTSObject]:
        """The MOTS objects loaded for ``sequence`` (those of the frames given at load time)."""
        return self._mots.get(sequence, [])


def _split_folders(root: Path, split: str | None, spec: DatasetSpec, option: str) -> list[Path]:
    if split is None:
        return sorted(p for p in root.iterdir() if p.is_dir())
    folder = spec.splits[split].folder if split in spec.splits else split
    if not (root / folder).is_dir():
        raise HVPSError(f"--split {split}: {root / folder} does not exist")
    return [root / folder]


def locate_ground_truth(
    gt: str | Path,
    kind: str,
    sequences: Sequence[str],
    spec: DatasetSpec | str,
    split: str | None = None,
    option: str = "--gt",
) -> Path:
    """The folder holding ``<seq>/`` (kind ``panoptic``) or ``<seq>.txt`` (``mots``) of every sequence.

    ``gt`` is a dataset root (``panoptic_maps/<folder>/`` or ``instances_txt/<folder>/``, the
    folder being ``split`` — a folder name or a split name of ``spec`` — or, without it, the
    one folder that holds every sequence) or such a folder itself.

    Raises:
        HVPSError: naming ``option`` when the ground truth of some sequence is missing.
    """
    gt = Path(gt)
    spec = get_spec(spec)
    if not gt.is_dir():
        raise HVPSError(f"{option} {gt}: not a folder")
    sub = "panoptic_maps" if kind == "panoptic" else "instances_txt"

    def has(folder: Path, sequence: str) -> bool:
        return (folder / sequence).is_dir() if kind == "panoptic" else (folder / f"{sequence}.txt").is_file()

    if (gt / sub).is_dir():
        candidates = [
            f for f in _split_folders(gt / sub, split, spec, option) if all(has(f, s) for s in sequences)
        ]
        if len(candidates) == 1:
            return candidates[0]
        if not candidates:
            raise HVPSError(
                f"{option} {gt}: no folder {gt / sub}/<folder> holds the ground truth of every sequence"
            )
        names = ", ".join(c.name for c in candidates)
        raise HVPSError(f"{option} {gt}: several folders hold the sequences ({names}); pick one with --split")
    missing = [s for s in sequences if not has(gt, s)]
    if not missing:
        return gt
    layout = (
        "<seq>/<frame>.png or panoptic_maps/<split>/<seq>/"
        if kind == "panoptic"
        else "<seq>.txt or instances_txt/<split>/"
    )
    raise HVPSError(
        f"{option} {gt}: no {kind} ground truth for sequence(s) {', '.join(missing[:5])} (expected {layout})"
    )
