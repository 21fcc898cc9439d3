"""One tracker trial: replay the detection cache, fuse, score against the ground truth.

Everything that does not depend on the tracker's parameters is read once per worker
process by :func:`load_sweep_data` (the detection cache, the ground truth, the semantic
cache); :func:`evaluate_config` then runs, per trial, the project's one evaluation path
(:func:`~hvps_lightning.evaluation.scoring.track_fuse_score`) for the objective only. The
network never runs, and a trial's numbers are those of ``hvps track --gt`` and the offline
tracker callback on the same inputs.

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

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hvps_lightning.errors import HVPSError
from hvps_lightning.evaluation.ground_truth import (
    GroundTruth,
    MOTSFolderGroundTruth,
    PreloadedGroundTruth,
    StepFolderGroundTruth,
    locate_ground_truth,
)
from hvps_lightning.evaluation.scoring import track_fuse_score
from hvps_lightning.evaluation.semantic import PreloadedSemantic, SemanticCache, SemanticSource
from hvps_lightning.panoptic.fusion import DEFAULT_UNCOVERED
from hvps_lightning.structures.detections import FrameDetections
from hvps_lightning.structures.specs import DatasetSpec, get_spec

OBJECTIVE_KINDS = {"stq": "panoptic", "aq": "panoptic", "idf1": "mots", "smotsa": "mots"}
#: objective name -> key of the evaluation's pedestrian MOTS scores
MOTS_KEYS = {"idf1": "IDF1", "smotsa": "sMOTSA"}
DEFAULT_DATASET = "motchallenge_step"
#: dense label maps above this size per worker are kept run-length encoded instead
DEFAULT_PRELOAD_MB = 2048


@dataclass
class SweepData:
    """The replayed inputs of a sweep: detections, ground truth, semantic maps."""

    objective: str
    spec: DatasetSpec
    detections: dict[str, list[FrameDetections]]
    ground_truth: GroundTruth
    semantic: SemanticSource | None = None
    dense: bool = True
    fusion_rule: str = DEFAULT_UNCOVERED

    @property
    def sequence_names(self) -> list[str]:
        """The cached sequences, in order."""
        return list(self.detections)

    @property
    def num_frames(self) -> int:
        """Cached frames over all sequences."""
        return sum(len(frames) for frames in self.detections.values())


def load_sweep_data(
    detections: str | Path,
    gt: str | Path,
    objective: str,
    semantic: str | Path | None = None,
    split: str | None = None,
    dataset: str | None = None,
    preload_mb: float = DEFAULT_PRELOAD_MB,
    fusion_rule: str = DEFAULT_UNCOVERED,
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
        fusion_rule: what thing pixels no track covers become in the fusion.

    Raises:
        HVPSError: naming the argument or file when an input is missing or inconsistent.
    """
    from hvps_lightning.formats.detection_cache import (
        cache_dataset,
        list_cached_sequences,
        read_detection_cache_dir,
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
    cached = read_detection_cache_dir(detections, names)
    if dataset is None:
        dataset = cache_dataset(cached[names[0]][1]) or DEFAULT_DATASET
    spec = get_spec(dataset)
    frames = {name: list(frames) for name, (frames, _metadata) in cached.items()}
    if sum(len(f) for f in frames.values()) == 0:
        raise HVPSError(f"--detections {detections}: the cached sequences hold no frames")
    frame_names = {name: [f.frame for f in seq] for name, seq in frames.items()}
    folder = locate_ground_truth(gt, kind, names, spec, split)
    dense = True
    source: GroundTruth
    if kind == "panoptic":
        pixels = sum(int(np.prod(seq[0].image_size)) * len(seq) for seq in frames.values() if seq)
        maps_per_frame = 2 if semantic is not None else 1
        dense = pixels * (8 + maps_per_frame - 1) / 2**20 <= preload_mb  # int32 pair + uint8 semantic
        _require_files([folder / s / f"{n}.png" for s, ns in frame_names.items() for n in ns], "--gt")
        source = StepFolderGroundTruth(folder, spec)
    else:
        source = MOTSFolderGroundTruth(folder, spec)
    ground_truth = PreloadedGroundTruth(source, frame_names, dense=dense)
    semantic_source = None
    if objective == "stq":
        assert semantic is not None
        semantic_dir = Path(semantic)
        _require_files(
            [semantic_dir / s / f"{n}.png" for s, ns in frame_names.items() for n in ns], "--semantic"
        )
        semantic_source = PreloadedSemantic(SemanticCache(semantic_dir), frame_names)
    if kind == "panoptic":
        _check_sizes(frames, ground_truth)
    return SweepData(objective, spec, frames, ground_truth, semantic_source, dense, fusion_rule)


def _require_files(paths: list[Path], option: str) -> None:
    missing = [p for p in paths if not p.is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise HVPSError(f"{option}: missing {missing[0]}{more}")


def _check_sizes(frames: dict[str, list[FrameDetections]], ground_truth: GroundTruth) -> None:
    for name, seq in frames.items():
        if not seq:
            continue
        height, width = seq[0].image_size
        truth = ground_truth.frame(name, seq[0].frame)
        if truth is not None and height and width and truth.shape != (height, width):
            raise HVPSError(
                f"--gt: sequence {name}: ground truth is {truth.shape[0]}x{truth.shape[1]} but the cached "
                f"detections are {height}x{width}"
            )


def evaluate_config(data: SweepData, config: Any) -> dict[str, float]:
    """Track every cached sequence with ``config`` and return the metrics (objective included).

    Also returns ``num_tracks`` (distinct track ids over all sequences) and ``track_seconds`` /
    ``metric_seconds`` (where a trial spends its time).
    """
    panoptic = OBJECTIVE_KINDS[data.objective] == "panoptic"
    result = track_fuse_score(
        data.detections,
        data.semantic,
        data.ground_truth,
        config,
        data.fusion_rule,
        spec=data.spec,
        scores=(data.objective,) if panoptic else ("mots",),
    )
    scores = result.scores
    if panoptic:
        metrics = {key: scores[key] for key in ("aq", "stq", "sq") if key in scores}
        if data.objective == "stq":
            metrics["aq"] = scores["aq_fused"]
    else:
        prefix = "mots/pedestrian/"
        metrics = {name: scores[prefix + key] for name, key in MOTS_KEYS.items()}
        metrics.update(
            {
                key.lower(): scores[prefix + key]
                for key in ("MOTSA", "MOTSP", "IDSW", "HOTA")
                if prefix + key in scores
            }
        )
    metrics["num_tracks"] = scores["num_tracks"]
    metrics["track_seconds"] = result.seconds["track"]
    metrics["metric_seconds"] = result.seconds["score"]
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
