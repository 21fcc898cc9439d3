"""One tracker trial: replay the detection cache, fuse, score against the ground truth.

Everything that does not depend on the tracker's parameters is read once per worker
process by :func:`load_sweep_data` (the detection cache, the ground truth, the semantic
cache); :func:`evaluate_config` then runs, per trial, the tracker over every cached sequence
and the objective metric. The network never runs.

Objectives:

* ``stq``: STQ of the fused panoptic prediction (semantic cache ``--semantic`` + tracked
  masks, :func:`~hvps_lightning.panoptic.fusion.fuse_panoptic`) against the STEP panoptic
  ground truth.
* ``aq``: the association quality of the same, with the **ground-truth** semantic map in
  place of the semantic cache, so that AQ measures the tracker alone (no ``--semantic``).
* ``idf1``, ``smotsa``: IDF1 / sMOTSA of the tracks as MOTS txt objects against MOTS txt
  ground truth (pedestrians, MOTS class 2), :func:`~hvps_lightning.metrics.mots.evaluate_mots`.

``--gt DIR`` is read as follows (the first that exists wins):

* STEP panoptic ground truth (``stq``, ``aq``): ``DIR/panoptic_maps/<folder>/<seq>/<frame>.png``
  (a dataset root; ``<folder>`` is ``--split`` — a folder name or a split name of
  ``--dataset`` — or, without ``--split``, the one folder holding every cached sequence), else
  ``DIR/<seq>/<frame>.png`` (a folder as ``hvps evaluate step --gt`` takes).
* MOTS ground truth (``idf1``, ``smotsa``): ``DIR/instances_txt/<folder>/<seq>.txt``, else
  ``DIR/<seq>.txt`` (as ``hvps evaluate mots --gt`` takes). Only the frames in the cache are
  scored: GT objects of other frames are dropped (the cache may hold part of a sequence).

Every cached sequence must have ground truth, and every cached frame its GT panoptic map.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hvps_lightning.errors import HVPSError
from hvps_lightning.structures.specs import DatasetSpec, get_spec

OBJECTIVE_KINDS = {"stq": "panoptic", "aq": "panoptic", "idf1": "mots", "smotsa": "mots"}
#: objective name -> key of evaluate_mots's combined result
MOTS_KEYS = {"idf1": "IDF1", "smotsa": "sMOTSA"}
DEFAULT_DATASET = "motchallenge_step"
#: dense label maps above this size per worker are kept run-length encoded instead
DEFAULT_PRELOAD_MB = 2048


class _RunLengthMap:
    """A label map stored as runs of equal pixel words along the flattened image.

    Label maps are piecewise constant, so at full HD a frame has ~1 % as many runs as pixels:
    600 frames of ground truth take ~150 MB instead of ~5 GB, and rebuilding a frame is one
    ``np.repeat`` (a few ms), several times faster than decoding its PNG again.
    """

    __slots__ = ("dtype", "lengths", "shape", "values")

    def __init__(self, array: np.ndarray) -> None:
        self.shape, self.dtype = array.shape, array.dtype
        # pack the (semantic, instance) pair of a pixel into one word, as the STQ metric does
        words = array.reshape(-1).view(np.int64) if array.dtype == np.int32 else array.reshape(-1)
        starts = np.concatenate([[0], np.flatnonzero(words[1:] != words[:-1]) + 1])
        self.values = words[starts]
        self.lengths = np.diff(np.append(starts, words.size)).astype(np.uint32)

    def decode(self) -> np.ndarray:
        """The dense map."""
        return np.repeat(self.values, self.lengths).view(self.dtype).reshape(self.shape)


class _Frames:
    """Per-frame label maps, dense when they fit the preload budget, else run-length encoded."""

    def __init__(self, paths: Sequence[Path], read: Callable[[Path], np.ndarray], dense: bool) -> None:
        self.dense = dense
        self._items: list[Any] = [read(p) if dense else _RunLengthMap(read(p)) for p in paths]

    def __len__(self) -> int:
        return len(self._items)

    def __getitem__(self, index: int) -> np.ndarray:
        item = self._items[index]
        return item if self.dense else item.decode()


@dataclass
class SequenceData:
    """Everything of one sequence that stays the same across trials."""

    name: str
    frames: list[Any]  # FrameDetections
    frame_names: list[str]
    gt_panoptic: _Frames | None = None  # (1, H, W, 2) int32 (semantic, instance) per frame
    semantic: _Frames | None = None  # semantic cache, uint8 per frame (stq)
    gt_mots: list[Any] = field(default_factory=list)  # MOTSObject of the cached frames


@dataclass
class SweepData:
    """The replayed inputs of a sweep: detections, ground truth, semantic maps."""

    objective: str
    spec: DatasetSpec
    sequences: list[SequenceData]

    @property
    def num_frames(self) -> int:
        """Cached frames over all sequences."""
        return sum(len(s.frames) for s in self.sequences)


# --------------------------------------------------------------------------- locating the ground truth


def _split_folders(root: Path, split: str | None, spec: DatasetSpec) -> list[Path]:
    if split is None:
        return sorted(p for p in root.iterdir() if p.is_dir())
    folder = spec.splits[split].folder if split in spec.splits else split
    if not (root / folder).is_dir():
        raise HVPSError(f"--split {split}: {root / folder} does not exist")
    return [root / folder]


def resolve_gt_root(
    gt: Path, kind: str, sequences: Sequence[str], split: str | None, spec: DatasetSpec
) -> Path:
    """Return the folder holding ``<seq>/`` (panoptic) or ``<seq>.txt`` (mots) for every sequence.

    Raises:
        HVPSError: naming ``--gt`` when the ground truth of some sequence is missing.
    """
    if not gt.is_dir():
        raise HVPSError(f"--gt {gt}: not a folder")
    sub = "panoptic_maps" if kind == "panoptic" else "instances_txt"

    def has_all(folder: Path) -> bool:
        if kind == "panoptic":
            return all((folder / s).is_dir() for s in sequences)
        return all((folder / f"{s}.txt").is_file() for s in sequences)

    if (gt / sub).is_dir():
        candidates = [f for f in _split_folders(gt / sub, split, get_spec(spec)) if has_all(f)]
        if len(candidates) == 1:
            return candidates[0]
        where = f"{gt / sub}/<folder>"
        if not candidates:
            raise HVPSError(f"--gt {gt}: no folder {where} holds the ground truth of every cached sequence")
        names = ", ".join(c.name for c in candidates)
        raise HVPSError(
            f"--gt {gt}: several folders hold the cached sequences ({names}); pick one with --split"
        )
    if has_all(gt):
        return gt
    missing = [
        s for s in sequences if not ((gt / s).is_dir() if kind == "panoptic" else (gt / f"{s}.txt").is_file())
    ]
    layout = (
        "<seq>/<frame>.png or panoptic_maps/<split>/<seq>/"
        if kind == "panoptic"
        else "<seq>.txt or instances_txt/<split>/"
    )
    raise HVPSError(
        f"--gt {gt}: no {kind} ground truth for sequence(s) {', '.join(missing[:5])} (expected {layout})"
    )


# --------------------------------------------------------------------------- loading


def _as_target(semantic: np.ndarray, instance: np.ndarray) -> np.ndarray:
    # (1, H, W, 2) int32: the layout the STQ metric takes and packs into one word per pixel,
    # built once per frame at load instead of once per frame per trial
    target = np.empty((1, *semantic.shape, 2), np.int32)
    target[0, ..., 0], target[0, ..., 1] = semantic, instance
    return target


def _read_step(path: Path) -> np.ndarray:
    from hvps_lightning.formats import read_step_png

    return _as_target(*read_step_png(path))


def _read_semantic(path: Path) -> np.ndarray:
    from hvps_lightning.formats.semantic_cache import read_semantic_map

    return read_semantic_map(path.parent.parent, path.parent.name, path.stem)


def load_sweep_data(
    detections: str | Path,
    gt: str | Path,
    objective: str,
    semantic: str | Path | None = None,
    split: str | None = None,
    dataset: str | None = None,
    preload_mb: float = DEFAULT_PRELOAD_MB,
) -> SweepData:
    """Read the detection cache and the ground truth (and for ``stq`` the semantic cache) once.

    Args:
        detections: the detection cache folder (``<seq>.npz`` + ``<seq>.json``).
        gt: the ground truth (see the module docstring for the layouts).
        objective: ``stq``, ``aq``, ``idf1`` or ``smotsa``.
        semantic: the semantic cache (``<seq>/<frame>.png``), required for ``stq``.
        split: folder or split name under ``panoptic_maps``/``instances_txt`` of a dataset root.
        dataset: the dataset spec name; default: the cache's metadata, else motchallenge_step.
        preload_mb: keep the label maps dense up to this size per worker; above it keep them
            run-length encoded and rebuild each frame in each trial.

    Raises:
        HVPSError: naming the argument or file when an input is missing or inconsistent.
    """
    from hvps_lightning.formats.detection_cache import (
        cache_dataset,
        list_cached_sequences,
        read_detection_cache,
    )

    if objective not in OBJECTIVE_KINDS:
        raise HVPSError(f"--objective {objective}: expected one of {', '.join(OBJECTIVE_KINDS)}")
    kind = OBJECTIVE_KINDS[objective]
    detections, gt = Path(detections), Path(gt)
    if objective == "stq" and semantic is None:
        raise HVPSError("--semantic: the stq objective needs the semantic cache (or use --objective aq)")
    if not detections.is_dir():
        raise HVPSError(f"--detections {detections}: not a folder")
    names = list(list_cached_sequences(detections))
    if not names:
        raise HVPSError(f"--detections {detections}: no cached sequence (<seq>.npz + <seq>.json)")
    cached = [read_detection_cache(detections, name) for name in names]
    if dataset is None:
        dataset = cache_dataset(cached[0][1]) or DEFAULT_DATASET
    spec = get_spec(dataset)
    gt_root = resolve_gt_root(gt, kind, names, split, spec)

    sequences: list[SequenceData] = []
    for name, (frames, _metadata) in zip(names, cached, strict=True):
        frames = list(frames)
        sequences.append(SequenceData(name, frames, [f.frame for f in frames]))
    total_frames = sum(len(s.frames) for s in sequences)
    if kind == "panoptic":
        pixels = sum(int(np.prod(s.frames[0].image_size)) * len(s.frames) for s in sequences if s.frames)
        maps_per_frame = 2 if semantic is not None else 1
        keep = pixels * (8 + maps_per_frame - 1) / 2**20 <= preload_mb  # int32 pair + uint8 semantic
        for seq in sequences:
            paths = [gt_root / seq.name / f"{frame}.png" for frame in seq.frame_names]
            _require_files(paths, "--gt")
            seq.gt_panoptic = _Frames(paths, _read_step, keep)
            if objective == "stq":
                sem_paths = [Path(semantic) / seq.name / f"{frame}.png" for frame in seq.frame_names]
                _require_files(sem_paths, "--semantic")
                seq.semantic = _Frames(sem_paths, _read_semantic, keep)
            _check_sizes(seq)
    else:
        from hvps_lightning.formats import read_mots_txt
        from hvps_lightning.formats.tracked import frame_numbers

        for seq in sequences:
            if not all(frame.isdigit() for frame in seq.frame_names):
                raise HVPSError(
                    f"--detections {detections}: sequence {seq.name} has frame names that are not numbers; "
                    "MOTS ground truth numbers frames"
                )
            numbers = set(frame_numbers(seq.frame_names))
            objects = read_mots_txt(gt_root / f"{seq.name}.txt")
            seq.gt_mots = [o for o in objects if int(o.frame) in numbers]
    if total_frames == 0:
        raise HVPSError(f"--detections {detections}: the cached sequences hold no frames")
    return SweepData(objective=objective, spec=spec, sequences=sequences)


def _require_files(paths: Sequence[Path], option: str) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise HVPSError(f"{option}: missing {missing[0]}{more}")


def _check_sizes(seq: SequenceData) -> None:
    if not seq.frames or seq.gt_panoptic is None:
        return
    height, width = seq.frames[0].image_size
    gt_sem = seq.gt_panoptic[0][0, ..., 0]
    if height and width and gt_sem.shape != (height, width):
        raise HVPSError(
            f"--gt: sequence {seq.name}: ground truth is {gt_sem.shape[0]}x{gt_sem.shape[1]} but the cached "
            f"detections are {height}x{width}"
        )


# --------------------------------------------------------------------------- one trial


def _panoptic_metrics(data: SweepData, tracks: Mapping[str, list[list[Any]]]) -> dict[str, float]:
    import torch

    from hvps_lightning.metrics import STQ
    from hvps_lightning.panoptic.fusion import fuse_panoptic

    spec = data.spec
    metric = STQ(
        num_classes=spec.num_classes,
        things=list(spec.thing_ids),
        ignore_label=spec.ignore_label,
        label_divisor=spec.label_divisor,
    )
    for seq in data.sequences:
        assert seq.gt_panoptic is not None
        pred = np.empty(0)  # (1, H, W, 2) int32, refilled per frame rather than allocated and stacked
        for index, objects in enumerate(tracks[seq.name]):
            target = seq.gt_panoptic[index]
            gt_semantic = target[0, ..., 0]
            source = (
                seq.semantic[index] if data.objective == "stq" and seq.semantic is not None else gt_semantic
            )
            semantic, instance = fuse_panoptic(
                source, objects, spec, where=f"{seq.name}/{seq.frame_names[index]}"
            )
            if pred.shape != target.shape:
                pred = np.empty(target.shape, np.int32)
            pred[0, ..., 0], pred[0, ..., 1] = semantic, instance
            metric.update(torch.from_numpy(pred), torch.from_numpy(target), [seq.name])
    result = metric.compute()
    return {key: float(result[key]) for key in ("stq", "aq", "sq")}


def _mots_metrics(data: SweepData, tracks: Mapping[str, list[list[Any]]]) -> dict[str, float]:
    from hvps_lightning.formats.tracked import mots_objects
    from hvps_lightning.metrics.mots import evaluate_mots

    # the MOTS objects `hvps track` writes (ids MOTS class * 1000 + track id, frame = int(name))
    gt = {seq.name: seq.gt_mots for seq in data.sequences}
    pred = {seq.name: mots_objects(seq.frame_names, tracks[seq.name], data.spec) for seq in data.sequences}
    combined = evaluate_mots(gt, pred)["combined"]
    out = {name: float(combined[key]) for name, key in MOTS_KEYS.items()}
    out.update(
        {key.lower(): float(combined[key]) for key in ("MOTSA", "MOTSP", "IDSW", "HOTA") if key in combined}
    )
    return out


def evaluate_config(data: SweepData, config: Any) -> dict[str, float]:
    """Track every cached sequence with ``config`` and return the metrics (objective included).

    Also returns ``num_tracks`` (distinct track ids over all sequences) and ``track_seconds`` /
    ``metric_seconds`` (where a trial spends its time).
    """
    from hvps_lightning.tracking.tracker import track_sequence

    start = time.perf_counter()
    tracks = {seq.name: track_sequence(seq.frames, config) for seq in data.sequences}
    tracked = time.perf_counter()
    if OBJECTIVE_KINDS[data.objective] == "panoptic":
        metrics = _panoptic_metrics(data, tracks)
    else:
        metrics = _mots_metrics(data, tracks)
    metrics["num_tracks"] = float(
        sum(len({o.track_id for objects in per_frame for o in objects}) for per_frame in tracks.values())
    )
    metrics["track_seconds"] = tracked - start
    metrics["metric_seconds"] = time.perf_counter() - tracked
    return metrics


def load_evaluator(
    config_class: str = "hvps_lightning.tracking.config:TrackerConfig", **data_kwargs: Any
) -> Callable[[dict[str, Any]], dict[str, float]]:
    """Load the sweep data once and return ``evaluate(params) -> metrics`` (the sweep workers' evaluator).

    ``params`` is a full flat tracker config; an invalid combination raises ``HVPSError``
    (the trial is recorded as failed).
    """
    from hvps_lightning.sweeps.study import import_object

    config_type = import_object(config_class)
    data = load_sweep_data(**data_kwargs)

    def evaluate(params: dict[str, Any]) -> dict[str, float]:
        return evaluate_config(data, config_type.from_dict(params, where="trial parameters"))

    return evaluate
