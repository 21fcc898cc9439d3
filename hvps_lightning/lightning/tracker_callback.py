"""``OfflineTrackerCallback``: track what the MOTS model detected in validation/test, log AQ/STQ/MOTS.

``MOTSModule.validation_step`` / ``test_step`` return ``{"detections": [(sequence,
FrameDetections), ...]}``. This callback collects them batch by batch; at the end of the
epoch it gathers them on rank 0 (``torch.distributed.gather_object``; frames repeated by DDP
padding are dropped) and hands them to the project's one evaluation path,
:func:`~hvps_lightning.evaluation.scoring.track_fuse_score`, with the ground truth of the
datamodule's dataset; every rank then logs the same numbers (computed once on rank 0 and
broadcast): ``<stage>/aq`` (tracks fused into the ground-truth semantic map: the tracker and the
instance masks alone), with ``semantic_dir`` (a semantic cache of the same frames)
``<stage>/stq``, ``<stage>/sq`` and ``<stage>/aq_fused``, the MOTS metrics per MOTS class
``<stage>/mots/<pedestrian|car>/<metric>`` and ``<stage>/num_tracks``. ``hvps track --gt``, the
tracker sweeps and ``hvps ablate`` give the same numbers for the same inputs.

``<stage>`` is ``val`` or ``test``. Optional exports (``export_dir``): MOTS txt, STEP PNGs (with
``semantic_dir``), overlay GIFs and the detection cache, into a folder per evaluation
(``<export_dir>/<stage>-epoch<E>-step<S>/``) so that runs never overwrite each other's results.
``log_overlays`` sends overlay images/GIFs of the first sequences to the logger (W&B,
TensorBoard) through :mod:`hvps_lightning.lightning.image_logging` on rank 0.

The callback can be listed under ``trainer.callbacks`` in YAML, or returned by a module's
``configure_callbacks``::

    trainer:
      callbacks:
        - class_path: hvps_lightning.lightning.tracker_callback.OfflineTrackerCallback
          init_args: {tracker_config: tracker/default}
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
from lightning.pytorch.callbacks import Callback
from lightning.pytorch.utilities import rank_zero_warn

from hvps_lightning.errors import HVPSError
from hvps_lightning.evaluation.ground_truth import DatasetGroundTruth
from hvps_lightning.evaluation.scoring import track_fuse_score
from hvps_lightning.evaluation.semantic import SemanticCache
from hvps_lightning.lightning.collect import SequenceCollector
from hvps_lightning.lightning.image_logging import image_logger_for
from hvps_lightning.lightning.tracker_exports import (
    draw_overlays,
    log_overlay,
    write_exports,
    write_overlay_gifs,
)
from hvps_lightning.panoptic.fusion import DEFAULT_UNCOVERED, UNCOVERED_RULES
from hvps_lightning.structures.detections import FrameDetections, TrackedObject
from hvps_lightning.structures.panoptic import PanopticFrame
from hvps_lightning.structures.specs import DatasetSpec, get_spec
from hvps_lightning.tracking.config import TrackerConfig


def resolve_tracker_config(config: TrackerConfig | Mapping[str, Any] | str | Path | None) -> TrackerConfig:
    """A :class:`TrackerConfig` from a config, a dict, a YAML path or ``None`` (defaults)."""
    if config is None:
        return TrackerConfig()
    if isinstance(config, TrackerConfig):
        return config
    if isinstance(config, Mapping):
        return TrackerConfig.from_dict(dict(config))
    return TrackerConfig.from_yaml(config)


class OfflineTrackerCallback(Callback):
    """Runs the tracker on validation/test detections at epoch end and logs AQ (+ STQ/SQ, MOTS).

    Args:
        tracker_config: tracker parameters: a YAML file, a dict, a :class:`TrackerConfig`, or
            ``None`` for the defaults.
        semantic_dir: semantic cache of the evaluated frames (``<dir>/<seq>/<frame>.png``): also
            log STQ and SQ of the fused panoptic output.
        export_dir: write the outputs (MOTS txt; STEP PNGs with ``semantic_dir``) per evaluation
            below this folder.
        export_cache: also write the detection cache (``detections/``) of each evaluation.
        export_overlays: also write an overlay GIF per sequence (``overlays/<seq>.gif``).
        log_overlays: send overlays (a few frames and a GIF) of this many sequences to the logger.
        overlay_frames: at most this many frames per overlay GIF.
        mots_metrics: compute the MOTS metrics (needs ``hvps_lightning.metrics.mots``).
        fusion_rule: what thing pixels no track covers become in both fusions (``crowd``, ``void``,
            ``stuff``; see :mod:`hvps_lightning.panoptic.fusion`).
        stages: run after ``validate`` and/or ``test`` epochs.
    """

    def __init__(
        self,
        tracker_config: str | dict[str, Any] | None = None,
        semantic_dir: str | None = None,
        export_dir: str | None = None,
        export_cache: bool = False,
        export_overlays: bool = False,
        log_overlays: int = 0,
        overlay_frames: int = 32,
        mots_metrics: bool = True,
        fusion_rule: str = DEFAULT_UNCOVERED,
        stages: Sequence[str] = ("validate", "test"),
    ) -> None:
        super().__init__()
        self.config = resolve_tracker_config(tracker_config)
        self.semantic_dir = Path(semantic_dir) if semantic_dir else None
        self.export_dir = Path(export_dir) if export_dir else None
        self.export_cache = export_cache
        self.export_overlays = export_overlays
        if log_overlays < 0 or overlay_frames < 1:
            raise HVPSError("log_overlays must be >= 0 and overlay_frames >= 1")
        self.log_overlays = log_overlays
        self.overlay_frames = overlay_frames
        self.mots_metrics = mots_metrics
        if fusion_rule not in UNCOVERED_RULES:
            raise HVPSError(f"fusion_rule {fusion_rule!r}: expected one of {', '.join(UNCOVERED_RULES)}")
        self.fusion_rule = fusion_rule
        unknown = set(stages) - {"validate", "test"}
        if unknown:
            raise HVPSError(f"stages: unknown {sorted(unknown)}; use validate and/or test")
        self.stages = tuple(stages)
        self.collector = SequenceCollector()
        #: the metrics of the last evaluation (same on every rank)
        self.last_metrics: dict[str, float] = {}
        #: the tracks of the last evaluation, on rank 0: sequence -> (frame names, tracks per frame)
        self.last_tracks: dict[str, tuple[list[str], list[list[TrackedObject]]]] = {}
        self._warned: set[str] = set()

    # Collection ---------------------------------------------------------------------------
    def _collect(self, trainer: L.Trainer, outputs: Any, batch: Any, stage: str) -> None:
        if stage not in self.stages or trainer.sanity_checking:
            return
        detections = outputs.get("detections") if isinstance(outputs, Mapping) else outputs
        if detections is None:
            self._warn_once("no-detections", "OfflineTrackerCallback: the step returned no 'detections'")
            return
        self.collector.add(detections, where=f"{stage} step output")
        metas = batch.get("meta", []) if isinstance(batch, Mapping) else []
        for meta in metas:
            if isinstance(meta, Mapping) and "sequence" in meta and "frame" in meta:
                self.collector.note(
                    str(meta["sequence"]), str(meta["frame"]), image_path=meta.get("image_path")
                )

    def on_validation_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start a new collection."""
        self.collector.reset()

    def on_test_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start a new collection."""
        self.collector.reset()

    def on_validation_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the detections of a validation batch."""
        self._collect(trainer, outputs, batch, "validate")

    def on_test_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        outputs: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int = 0,
    ) -> None:
        """Keep the detections of a test batch."""
        self._collect(trainer, outputs, batch, "test")

    def on_validation_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Track, score and log (``val/...``)."""
        if "validate" in self.stages and not trainer.sanity_checking:
            self._finish(trainer, pl_module, "val", "val")

    def on_test_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Track, score and log (``test/...``)."""
        if "test" in self.stages:
            self._finish(trainer, pl_module, "test", "test")

    # Evaluation ---------------------------------------------------------------------------
    def _finish(self, trainer: L.Trainer, pl_module: L.LightningModule, prefix: str, role: str) -> None:
        sequences = self.collector.gather(trainer)  # collective under DDP
        notes = dict(self.collector.notes)
        self.collector.reset()
        metrics: dict[str, float] = {}
        if trainer.is_global_zero:
            metrics = self.evaluate(trainer, pl_module, sequences, notes, prefix, role)
        if trainer.world_size > 1:
            metrics = trainer.strategy.broadcast(metrics, src=0)
        self.last_metrics = dict(metrics)
        # Every rank holds the same numbers now; sync_dist only averages equal values (and keeps
        # Lightning from warning about unsynced epoch metrics under DDP).
        for name, value in metrics.items():
            pl_module.log(name, float(value), on_epoch=True, sync_dist=trainer.world_size > 1)

    def evaluate(
        self,
        trainer: L.Trainer | None,
        pl_module: L.LightningModule | None,
        sequences: Mapping[str, list[FrameDetections]],
        notes: Mapping[tuple[str, str], Mapping[str, Any]],
        prefix: str = "val",
        role: str = "val",
    ) -> dict[str, float]:
        """Track, fuse and score every sequence (``<prefix>/...`` metrics); writes exports and overlays."""
        spec = self._spec(trainer, pl_module)
        image_paths = {
            key: str(facts["image_path"]) for key, facts in notes.items() if facts.get("image_path")
        }
        ground_truth = DatasetGroundTruth(spec, self._dataset(trainer, role), image_paths)
        semantic = SemanticCache(self.semantic_dir) if self.semantic_dir is not None else None
        fused_frames: dict[str, list[tuple[str, PanopticFrame]]] = {}

        def keep(sequence: str, frame: str, fused: PanopticFrame) -> None:
            fused_frames.setdefault(sequence, []).append((frame, fused))

        kinds = ("aq", "stq", "mots") if self.mots_metrics else ("aq", "stq")
        result = track_fuse_score(
            sequences,
            semantic,
            ground_truth,
            self.config,
            self.fusion_rule,
            spec=spec,
            scores=kinds,
            on_fused=keep if self.export_dir is not None else None,
        )
        self.last_tracks = {
            name: (tracked.frame_names, tracked.tracks) for name, tracked in result.tracked.items()
        }
        if not result.scores.get("frames_with_gt") and sequences:
            self._warn_once("no-gt", "OfflineTrackerCallback: no ground truth found for the evaluated frames")
        metrics = {
            f"{prefix}/{name}": value for name, value in result.scores.items() if name != "frames_with_gt"
        }
        self._export(trainer, prefix, sequences, spec, fused_frames, image_paths)
        return metrics

    # Helpers ------------------------------------------------------------------------------
    def _spec(self, trainer: L.Trainer | None, pl_module: L.LightningModule | None) -> DatasetSpec:
        for owner in (pl_module, getattr(trainer, "datamodule", None)):
            spec = getattr(owner, "spec", None)
            if isinstance(spec, DatasetSpec):
                return spec
        return get_spec("motchallenge_step")

    @staticmethod
    def _dataset(trainer: L.Trainer | None, role: str) -> Any | None:
        datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
        getter = getattr(datamodule, "dataset", None)
        if not callable(getter):
            return None
        try:
            return getter(role)
        except HVPSError:
            return None

    def _export(
        self,
        trainer: L.Trainer | None,
        prefix: str,
        sequences: Mapping[str, list[FrameDetections]],
        spec: DatasetSpec,
        fused_frames: Mapping[str, list[tuple[str, PanopticFrame]]],
        image_paths: Mapping[tuple[str, str], str],
    ) -> None:
        want_logged = self.log_overlays > 0 and trainer is not None and trainer.loggers
        if self.export_dir is None and not want_logged:
            return
        epoch = int(getattr(trainer, "current_epoch", 0) or 0)
        step = int(getattr(trainer, "global_step", 0) or 0)
        folder = self.export_dir / f"{prefix}-epoch{epoch:03d}-step{step:06d}" if self.export_dir else None
        if folder is not None:
            write_exports(
                folder, self.last_tracks, fused_frames, sequences if self.export_cache else None, spec
            )
        if not (self.export_overlays or want_logged):
            return
        logged = sorted(self.last_tracks)[: self.log_overlays]
        drawn = [s for s in sorted(self.last_tracks) if self.export_overlays or s in logged]
        overlays = draw_overlays({s: self.last_tracks[s] for s in drawn}, image_paths, self.overlay_frames)
        gif_folder = folder / "overlays" if folder is not None and self.export_overlays else None
        gifs = write_overlay_gifs(overlays, gif_folder)
        logger = image_logger_for(trainer.loggers if trainer is not None else None)
        for sequence in logged:
            if sequence in overlays:
                log_overlay(logger, prefix, sequence, overlays[sequence], gifs[sequence], step)

    def _warn_once(self, key: str, message: str) -> None:
        if key not in self._warned:
            self._warned.add(key)
            rank_zero_warn(message)
