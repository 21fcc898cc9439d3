"""Lightning prediction writers: the detection cache and the semantic cache of ``hvps predict``.

``DetectionCacheWriter``: add it to the trainer's callbacks for ``hvps predict`` (or
``trainer.predict``) with a ``MOTSModule``: its ``predict_step`` returns ``[(sequence,
FrameDetections), ...]`` per batch; the writer keeps them per sequence and, at the end of the
epoch, writes one ``<seq>.npz`` + ``<seq>.json`` per sequence
(:mod:`hvps_lightning.formats.detection_cache`) with the model class,
its hyperparameters, the dataset and the checkpoint in the metadata. Under DDP the
detections are gathered to rank 0, which writes.

With ``camera_motion=True`` the writer also estimates each frame's camera motion from the
batches' ``meta`` image paths (:func:`~hvps_lightning.tracking.camera_motion.camera_motion_for_frames`,
on rank 0 at the end, in frame order) and stores it in the cache, so that trackers replaying
the cache compensate a moving camera without reading the images again.

Example (YAML for ``hvps predict``)::

    trainer:
      callbacks:
        - class_path: hvps_lightning.lightning.writers.DetectionCacheWriter
          init_args: {output_dir: cache/detections}

``SemanticCacheWriter`` does the same for ``SemanticModule``: one class-id PNG (and optionally
quantised probabilities) per frame (:mod:`hvps_lightning.formats.semantic_cache`).

When the trainer logs to W&B (the predict configs keep the stage's logger, job type
``predict``), each writer logs its cache as a ``dataset`` artifact of that run
(``detections-<dataset>`` / ``semantic-<dataset>``) whose metadata name the checkpoint, its
step and the W&B run that trained it (from the checkpoint folder's ``run.json``): the lineage
training run -> checkpoint -> predict run -> cache -> sweep / tracking.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch
from lightning.pytorch.callbacks import BasePredictionWriter
from lightning.pytorch.loggers import WandbLogger

from hvps_lightning.errors import HVPSError
from hvps_lightning.formats.detection_cache import json_safe, write_detection_cache
from hvps_lightning.formats.semantic_cache import write_semantic_map
from hvps_lightning.lightning.checkpoint import checkpoint_step, read_run_record
from hvps_lightning.lightning.collect import SequenceCollector
from hvps_lightning.wandb_io import log_path_artifact


def model_metadata(trainer: L.Trainer | None, pl_module: L.LightningModule) -> dict[str, Any]:
    """What produced a set of detections: model class, hparams, dataset, checkpoint, versions."""
    cls = type(pl_module)
    hparams = dict(getattr(pl_module, "hparams", {}) or {})
    spec = getattr(pl_module, "spec", None)
    return json_safe(
        {
            "model_class": f"{cls.__module__}.{cls.__qualname__}",
            "hparams": hparams,
            "dataset": getattr(spec, "name", hparams.get("dataset")),
            "checkpoint": getattr(trainer, "ckpt_path", None) if trainer is not None else None,
            "global_step": getattr(trainer, "global_step", None) if trainer is not None else None,
            "lightning_version": L.__version__,
        }
    )


def log_cache_artifact(
    trainer: L.Trainer, pl_module: L.LightningModule, output_dir: Path, kind: str, sequences: list[str]
) -> Any:
    """Log a cache folder as a ``dataset`` artifact of the trainer's W&B run, if it has one (rank 0)."""
    if trainer.global_rank != 0 or not output_dir.is_dir():
        return None
    run = None
    for logger in trainer.loggers:
        if isinstance(logger, WandbLogger) and getattr(logger, "resolved_mode", "online") != "disabled":
            run = logger.experiment
    if run is None:
        return None
    meta = model_metadata(trainer, pl_module)
    checkpoint = meta.get("checkpoint")
    record = read_run_record(Path(checkpoint).parent) if checkpoint else None
    metadata = {
        "cache": kind,
        "sequences": sorted(sequences),
        "dataset": meta.get("dataset"),
        "model_class": meta.get("model_class"),
        "checkpoint": checkpoint,
        "checkpoint_step": checkpoint_step(checkpoint)[0] if checkpoint else None,
        "trained_by_wandb_run": (record or {}).get("wandb"),
    }
    return log_path_artifact(run, output_dir, f"{kind}-{meta.get('dataset')}", "dataset", json_safe(metadata))


class DetectionCacheWriter(BasePredictionWriter):
    """Writes what ``MOTSModule.predict_step`` returns to a detection cache directory.

    Args:
        output_dir: the cache directory (``<seq>.npz`` + ``<seq>.json`` per sequence).
        metadata: extra metadata stored with every sequence (merged over the model's).
        camera_motion: also store each frame's camera motion, estimated from the images.
        log_artifact: log the cache as a W&B ``dataset`` artifact when the trainer logs to W&B.
    """

    def __init__(
        self,
        output_dir: str | Path,
        metadata: dict[str, Any] | None = None,
        camera_motion: bool = False,
        log_artifact: bool = True,
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.metadata = dict(metadata or {})
        self.camera_motion = camera_motion
        self.log_artifact = log_artifact
        self.collector = SequenceCollector()
        self.written: list[Path] = []

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start a new collection."""
        self.collector.reset()

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Any,
        batch_indices: Any,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Keep the ``(sequence, FrameDetections)`` pairs of a batch (and its image paths)."""
        self.collector.add(prediction, where="predict_step output")
        if self.camera_motion:
            for meta in batch.get("meta", []) if isinstance(batch, Mapping) else []:
                if (
                    isinstance(meta, Mapping)
                    and meta.get("image_path")
                    and "sequence" in meta
                    and "frame" in meta
                ):
                    self.collector.note(
                        str(meta["sequence"]), str(meta["frame"]), image_path=meta["image_path"]
                    )

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Gather to rank 0 and write one cache entry per sequence."""
        super().on_predict_epoch_end(trainer, pl_module)
        sequences = self.collector.gather(trainer)
        notes = self.collector.notes
        self.collector.reset()
        if trainer.global_rank != 0:
            return
        metadata = {**model_metadata(trainer, pl_module), **json_safe(self.metadata)}
        for sequence, frames in sequences.items():
            if self.camera_motion:
                add_camera_motion(sequence, frames, notes)
            npz_path, _ = write_detection_cache(self.output_dir, sequence, frames, metadata)
            self.written.append(npz_path)
        if self.log_artifact and sequences:
            log_cache_artifact(trainer, pl_module, self.output_dir, "detections", list(sequences))


class SemanticCacheWriter(BasePredictionWriter):
    """Write ``SemanticModule.predict_step`` results to the semantic cache.

    Files: ``<output_dir>/<seq>/<frame>.png`` (8-bit class ids, written atomically) and, for
    items that carry probabilities, ``<seq>/<frame>.probs.npz`` (uint8-quantised softmax, see
    ``hvps_lightning.formats.semantic_cache``).

    Args:
        output_dir: the cache root.
        write_probabilities: store probabilities when the predictions carry them.
        log_artifact: log the cache as a W&B ``dataset`` artifact when the trainer logs to W&B.
    """

    def __init__(
        self, output_dir: str | Path, write_probabilities: bool = True, log_artifact: bool = True
    ) -> None:
        super().__init__(write_interval="batch")
        self.output_dir = Path(output_dir)
        self.write_probabilities = write_probabilities
        self.log_artifact = log_artifact
        self.sequences: set[str] = set()

    def on_predict_epoch_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Start a new record of the sequences written."""
        self.sequences = set()

    def on_predict_epoch_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Log the cache as a W&B artifact (after every rank has written its frames)."""
        super().on_predict_epoch_end(trainer, pl_module)
        trainer.strategy.barrier("semantic-cache-written")
        if self.log_artifact and self.sequences:
            # every rank's sequences (a rank knows only its own): the folders of the cache
            written = sorted(p.name for p in self.output_dir.iterdir() if p.is_dir())
            log_cache_artifact(trainer, pl_module, self.output_dir, "semantic", written)

    def write_on_batch_end(
        self,
        trainer: L.Trainer,
        pl_module: L.LightningModule,
        prediction: Sequence[tuple],
        batch_indices: Sequence[int] | None,
        batch: Any,
        batch_idx: int,
        dataloader_idx: int,
    ) -> None:
        """Write every frame of the batch."""
        for item in prediction:
            sequence, frame, semantic = item[:3]
            self.sequences.add(str(sequence))
            probabilities = item[3] if self.write_probabilities and len(item) > 3 else None
            if isinstance(probabilities, torch.Tensor):
                probabilities = probabilities.float().cpu().numpy()
            if probabilities is not None:
                probabilities = np.asarray(probabilities, dtype=np.float32)
            write_semantic_map(self.output_dir, sequence, frame, np.asarray(semantic), probabilities)


def add_camera_motion(sequence: str, frames: list[Any], notes: dict[tuple[str, str], dict[str, Any]]) -> None:
    """Set ``camera_motion`` of a sequence's frames (in order) from their noted image paths.

    Raises:
        HVPSError: if a frame's image path is unknown or the image cannot be read.
    """
    from hvps_lightning.tracking.camera_motion import camera_motion_for_frames

    paths = [notes.get((sequence, frame.frame), {}).get("image_path") for frame in frames]
    missing = [frame.frame for frame, path in zip(frames, paths, strict=True) if not path]
    if missing:
        raise HVPSError(f"camera motion: sequence {sequence}: no image path for frame {missing[0]}")
    for frame, transform in zip(frames, camera_motion_for_frames(paths), strict=True):
        frame.camera_motion = transform
