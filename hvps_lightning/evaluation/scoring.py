"""``track_fuse_score``: detections -> tracks -> fused panoptic frames -> AQ/STQ/SQ and MOTS metrics.

The one evaluation path of the project: the offline tracker callback, the tracker sweeps,
``hvps track --gt`` and ``hvps ablate`` all call :func:`track_fuse_score`, so the same
detections, semantic maps, ground truth, tracker configuration and fusion rule give the same
numbers everywhere. Per sequence it runs the tracker, then per frame:

* fuses the tracks into the **ground-truth** semantic map (``fusion_rule`` for thing pixels no
  track covers) and scores it against the ground truth: ``aq`` measures the tracker and the
  instance masks alone (the semantic half is perfect);
* with a semantic source (a semantic cache), fuses the tracks into the predicted semantic map
  and scores that: ``stq``, ``sq`` and ``aq_fused``, the numbers of the real panoptic output;
  each such fused frame is also handed to ``on_fused`` (``hvps track`` writes it as a STEP PNG);
* turns tracks and ground truth into MOTS objects and scores them per MOTS class of the spec:
  ``mots/<class>/<metric>`` (sMOTSA, MOTSA, MOTSP, IDF1, IDSW, HOTA, ...).

Which of the three run is chosen by ``scores``; a trial of a sweep computes only its objective.
With ``block_frames`` the same scores are also kept per block of consecutive frames as
summable statistics (:class:`BlockStatistics`: AQ's sum and tube count, MOTS count vectors),
which the ablation's block bootstrap resamples (:mod:`hvps_lightning.evaluation.statistics`).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hvps_lightning.errors import HVPSError
from hvps_lightning.evaluation.ground_truth import GroundTruth
from hvps_lightning.evaluation.semantic import SemanticSource
from hvps_lightning.formats.mots_txt import MOTS_CLASS_NAMES, MOTSObject
from hvps_lightning.formats.tracked import mots_objects
from hvps_lightning.metrics.functional_stq import STQAccumulator
from hvps_lightning.metrics.stq_inputs import STQLabelSpace
from hvps_lightning.panoptic.fusion import DEFAULT_UNCOVERED, UNCOVERED_RULES, fuse_panoptic
from hvps_lightning.structures.detections import FrameDetections, TrackedObject
from hvps_lightning.structures.panoptic import PanopticFrame
from hvps_lightning.structures.specs import DatasetSpec
from hvps_lightning.tracking.config import TrackerConfig
from hvps_lightning.tracking.tracker import track_sequence

#: what :func:`track_fuse_score` can compute
SCORE_KINDS = ("aq", "stq", "mots")
#: the MOTS metrics reported per class
MOTS_KEYS = ("sMOTSA", "MOTSA", "MOTSP", "IDF1", "IDSW", "HOTA", "DetA", "AssA", "TP", "FP", "FN")

FusedCallback = Callable[[str, str, PanopticFrame], None]


@dataclass
class TrackedSequence:
    """One sequence's detections and the tracker's objects per frame."""

    frames: list[FrameDetections]
    tracks: list[list[TrackedObject]]

    @property
    def frame_names(self) -> list[str]:
        """Frame names, in order."""
        return [f.frame for f in self.frames]

    @property
    def num_tracks(self) -> int:
        """Distinct track ids over the sequence."""
        return len({o.track_id for objects in self.tracks for o in objects})


@dataclass
class BlockStatistics:
    """Summable statistics of blocks of consecutive frames (tracks cut at block boundaries).

    Attributes:
        names: one name per block, ``<sequence>:<first frame>-<last frame>``, in sequence order.
        aq: (blocks, 2) AQ sum and ground-truth tube count per block (AQ = sum / tubes), if AQ was scored.
        mots: MOTS class name -> (blocks, k) :meth:`~hvps_lightning.metrics.mots.MOTSCounts.to_vector`.
    """

    names: list[str] = field(default_factory=list)
    aq: np.ndarray | None = None
    mots: dict[str, np.ndarray] = field(default_factory=dict)

    def metric(self, name: str) -> tuple[np.ndarray, Callable[[np.ndarray], np.ndarray]] | None:
        """The block statistics of score ``name`` and the metric of their sums, or ``None`` if not kept.

        ``name`` is ``aq`` or ``mots/<class>/<metric>``; the metric is vectorised over leading axes.
        """
        if name == "aq" and self.aq is not None:
            return self.aq, _aq_of_sums
        parts = name.split("/")
        if len(parts) == 3 and parts[0] == "mots" and parts[1] in self.mots:
            from hvps_lightning.metrics.mots import metric_from_vectors

            key = parts[2]
            return self.mots[parts[1]], lambda vectors: metric_from_vectors(vectors, key)
        return None


def _aq_of_sums(vectors: np.ndarray) -> np.ndarray:
    return vectors[..., 0] / np.maximum(vectors[..., 1], 1e-12)


@dataclass
class EvaluationResult:
    """What :func:`track_fuse_score` returns.

    Attributes:
        scores: flat ``{name: value}``: ``num_tracks``, ``frames_with_gt``, and as computed
            ``aq``; ``stq``, ``sq``, ``aq_fused``; ``mots/<class>/<metric>``.
        tracked: sequence -> its tracks.
        mots: MOTS class name -> ``evaluate_mots``' full result (combined and per sequence).
        seconds: wall time of ``track`` (the tracker) and ``score`` (fusion, reading, metrics).
        blocks: with ``block_frames``, the per-block statistics.
    """

    scores: dict[str, float] = field(default_factory=dict)
    tracked: dict[str, TrackedSequence] = field(default_factory=dict)
    mots: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: dict[str, float] = field(default_factory=dict)
    blocks: BlockStatistics | None = None


def track_all(
    detections: Mapping[str, Sequence[FrameDetections]],
    tracker_config: TrackerConfig,
    on_tracked: Callable[[], None] | None = None,
) -> dict[str, TrackedSequence]:
    """Run the tracker over every sequence; ``on_tracked`` is called after each frame (progress)."""

    def frames_of(frames: Sequence[FrameDetections]) -> Iterator[FrameDetections]:
        for frame in frames:
            yield frame
            if on_tracked is not None:
                on_tracked()

    return {
        name: TrackedSequence(list(frames), track_sequence(frames_of(frames), tracker_config))
        for name, frames in detections.items()
    }


def track_fuse_score(
    detections: Mapping[str, Sequence[FrameDetections]],
    semantic: SemanticSource | None,
    ground_truth: GroundTruth | None,
    tracker_config: TrackerConfig,
    fusion_rule: str = DEFAULT_UNCOVERED,
    *,
    spec: DatasetSpec,
    scores: Collection[str] = SCORE_KINDS,
    on_fused: FusedCallback | None = None,
    on_tracked: Callable[[], None] | None = None,
    block_frames: int | None = None,
) -> EvaluationResult:
    """Track every sequence, fuse the tracks with the semantic maps and score them.

    Args:
        detections: sequence -> its frames' detections, in frame order.
        semantic: the predicted semantic maps (a semantic cache), or ``None``: no ``stq``/``sq``
            and nothing for ``on_fused``.
        ground_truth: the ground truth, or ``None`` to only track and fuse (``hvps track``).
        tracker_config: the tracker's parameters.
        fusion_rule: what thing pixels no track covers become (``crowd``, ``void``, ``stuff``),
            in both fusions.
        spec: the dataset spec of the detections, the maps and the ground truth.
        scores: which of ``aq``, ``stq``, ``mots`` to compute.
        on_fused: called with ``(sequence, frame, PanopticFrame)`` for every frame fused with
            ``semantic``, in order.
        on_tracked: called after each frame the tracker has seen (a progress bar).
        block_frames: also keep ``aq`` and the MOTS counts per block of this many consecutive
            frames (:attr:`EvaluationResult.blocks`).

    Raises:
        HVPSError: on an unknown score kind or fusion rule, a size mismatch between detections
            and ground truth, and every error of the readers and the fusion (naming the file
            or the frame).
    """
    unknown = set(scores) - set(SCORE_KINDS)
    if unknown:
        raise HVPSError(f"scores: unknown {sorted(unknown)}; choose from {', '.join(SCORE_KINDS)}")
    if fusion_rule not in UNCOVERED_RULES:
        raise HVPSError(f"fusion rule {fusion_rule!r}: expected one of {', '.join(UNCOVERED_RULES)}")
    if block_frames is not None and block_frames < 1:
        raise HVPSError(f"block_frames must be >= 1, got {block_frames}")
    start = time.perf_counter()
    tracked = track_all(detections, tracker_config, on_tracked)
    result = EvaluationResult(tracked=tracked)
    result.seconds["track"] = time.perf_counter() - start
    result.scores["num_tracks"] = float(sum(t.num_tracks for t in tracked.values()))
    want_aq = "aq" in scores and ground_truth is not None
    want_stq = "stq" in scores and ground_truth is not None and semantic is not None
    want_mots = "mots" in scores and ground_truth is not None
    stq_gt = _stq(spec) if want_aq else None
    stq_fused = _stq(spec) if want_stq else None
    stq_blocks = _stq(spec) if want_aq and block_frames else None
    block_names: dict[str, str] = {}  # "<sequence>:<index>" -> its name
    gt_mots: dict[str, list[MOTSObject]] = {}
    pred_mots: dict[str, list[MOTSObject]] = {}
    frames_with_gt = 0
    for sequence, seq in tracked.items():
        names = seq.frame_names
        if block_frames:
            for start in range(0, len(names), block_frames):
                end = min(start + block_frames, len(names)) - 1
                block_names[f"{sequence}:{start // block_frames}"] = f"{sequence}:{names[start]}-{names[end]}"
        for position, (detections_of_frame, objects) in enumerate(zip(seq.frames, seq.tracks, strict=True)):
            frame = detections_of_frame.frame
            where = f"{sequence}/{frame}"
            things = [o for o in objects if o.label in spec.thing_ids]
            truth = ground_truth.frame(sequence, frame) if ground_truth is not None else None
            if truth is not None:
                frames_with_gt += 1
                _check_size(detections_of_frame, truth, where)
            if semantic is not None and (on_fused is not None or (want_stq and truth is not None)):
                predicted = semantic.semantic(sequence, frame)
                probabilities = (
                    semantic.probabilities(sequence, frame, predicted.shape)
                    if fusion_rule == "stuff"
                    else None
                )
                fused = fuse_panoptic(predicted, things, spec, fusion_rule, probabilities, where=where)
                if on_fused is not None:
                    on_fused(sequence, frame, fused)
                if stq_fused is not None and truth is not None:
                    _update(stq_fused, fused, truth, sequence)
            if stq_gt is not None and truth is not None:
                fused_gt = fuse_panoptic(truth.semantic, things, spec, fusion_rule, where=where)
                _update(stq_gt, fused_gt, truth, sequence)
                if stq_blocks is not None and block_frames:
                    _update(stq_blocks, fused_gt, truth, f"{sequence}:{position // block_frames}")
        if want_mots and ground_truth is not None and ground_truth.available(sequence):
            gt_mots[sequence] = ground_truth.mots_objects(sequence, names)
            pred_mots[sequence] = mots_objects(names, seq.tracks, spec)
    result.scores["frames_with_gt"] = float(frames_with_gt)
    if stq_gt is not None and frames_with_gt:
        result.scores["aq"] = float(stq_gt.compute()["aq"])
    if stq_fused is not None and frames_with_gt:
        computed = stq_fused.compute()
        result.scores.update(
            {"stq": float(computed["stq"]), "sq": float(computed["sq"]), "aq_fused": float(computed["aq"])}
        )
    if gt_mots:
        result.mots, mots_scores = _mots(gt_mots, pred_mots, spec)
        result.scores.update(mots_scores)
    if block_frames:
        result.blocks = _block_statistics(
            block_names, stq_blocks, gt_mots, pred_mots, tracked, spec, block_frames
        )
    result.seconds["score"] = time.perf_counter() - start - result.seconds["track"]
    return result


def _mots(
    gt: dict[str, list[MOTSObject]], pred: dict[str, list[MOTSObject]], spec: DatasetSpec
) -> tuple[dict[str, dict[str, Any]], dict[str, float]]:
    from hvps_lightning.metrics.mots import evaluate_mots

    full: dict[str, dict[str, Any]] = {}
    flat: dict[str, float] = {}
    for class_id in sorted(set(spec.mots_class_ids.values())):
        name = MOTS_CLASS_NAMES.get(class_id, str(class_id))
        full[name] = evaluate_mots(gt, pred, class_id=class_id)
        for key in MOTS_KEYS:
            value = full[name]["combined"].get(key)
            if value is not None:
                flat[f"mots/{name}/{key}"] = float(value)
    return full, flat


def _block_statistics(
    block_names: dict[str, str],
    stq_blocks: STQAccumulator | None,
    gt_mots: dict[str, list[MOTSObject]],
    pred_mots: dict[str, list[MOTSObject]],
    tracked: dict[str, TrackedSequence],
    spec: DatasetSpec,
    block_frames: int,
) -> BlockStatistics:
    """The per-block statistics: AQ terms from the block accumulator, MOTS counts of each block's frames."""
    keys = list(block_names)
    blocks = BlockStatistics(names=[block_names[k] for k in keys])
    if stq_blocks is not None:
        terms = stq_blocks.aq_terms()
        blocks.aq = np.array([terms.get(k, (0.0, 0)) for k in keys], dtype=np.float64).reshape(len(keys), 2)
    if gt_mots:
        from hvps_lightning.metrics.mots import MOTSCounts, mots_counts

        def split(objects_of: dict[str, list[MOTSObject]]) -> dict[str, list[MOTSObject]]:
            out: dict[str, list[MOTSObject]] = {k: [] for k in keys if k.rsplit(":", 1)[0] in objects_of}
            for sequence, objects in objects_of.items():
                position = {int(name): i for i, name in enumerate(tracked[sequence].frame_names)}
                for obj in objects:
                    out[f"{sequence}:{position[obj.frame] // block_frames}"].append(obj)
            return out

        gt_blocks, pred_blocks = split(gt_mots), split(pred_mots)
        for class_id in sorted(set(spec.mots_class_ids.values())):
            name = MOTS_CLASS_NAMES.get(class_id, str(class_id))
            counts = mots_counts(gt_blocks, pred_blocks, class_id)
            blocks.mots[name] = np.stack([counts.get(k, MOTSCounts()).to_vector() for k in keys])
    return blocks


def _stq(spec: DatasetSpec) -> STQAccumulator:
    # the NumPy accumulator: the same numbers as the torchmetrics STQ, without torch
    space = STQLabelSpace(spec.num_classes, tuple(spec.thing_ids), spec.ignore_label, spec.label_divisor)
    return STQAccumulator(space, list(spec.class_names))


def _update(metric: STQAccumulator, prediction: PanopticFrame, truth: PanopticFrame, sequence: str) -> None:
    metric.update(
        (prediction.semantic[None], prediction.instance[None]),
        (truth.semantic[None], truth.instance[None]),
        [sequence],
    )


def _check_size(detections: FrameDetections, truth: PanopticFrame, where: str) -> None:
    size = tuple(int(v) for v in detections.image_size)
    if size != (0, 0) and size != truth.shape:
        raise HVPSError(
            f"{where}: detections are {size[0]}x{size[1]} but the ground truth is "
            f"{truth.shape[0]}x{truth.shape[1]} (detections must be at original resolution)"
        )
