"""MOTSModule: the LightningModule around :class:`~hvps_lightning.models.mots.MOTSNet`.

Training logs every loss on its own (``train/loss_classifier``, ``train/loss_mask``,
``train/loss_embedding_triplet``, ...) and their weighted sum (``train/loss``). Validation
and test compute segmentation mAP (torchmetrics ``MeanAveragePrecision(iou_type="segm")``,
``val/segm_map``, which checkpoints watch) and emit the per-frame detections the tracker
consumes: ``validation_step`` returns ``{"detections": [(sequence, FrameDetections), ...]}``
and ``predict_step`` returns ``[(sequence, FrameDetections), ...]`` with masks as RLE at each
frame's original size.

When a clip continues the previous one (its earlier frames are exactly the frames seen
before, as when a sequence is read in order) and the window is causal, inference streams:
the FPN features of the previous frames are reused, so each frame runs the backbone once
(same detections as clip inference).

The network is passed in (``net``), built by the LightningCLI from the YAML; the
DataModule's thing classes are linked into it. Start weights come from the one loader of
:class:`~hvps_lightning.models.base.BaseTask` (``pretrained``, ``init_checkpoint``,
``init_from``). Example YAML (``hvps fit --config``)::

    model:
      class_path: hvps_lightning.models.mots.lightning_model.MOTSModule
      init_args:
        net:
          class_path: hvps_lightning.models.mots.MOTSNet
          init_args:
            backbone: resnet50
            temporal_attention: true
            spatial_attention: true
        pretrained: coco
        loss_weights: {loss_spatial_attention: 0.5}
        optimizer:
          class_path: torch.optim.SGD
          init_args: {lr: 0.01, momentum: 0.9}
        warmup_steps: 500
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torchmetrics.detection import MeanAveragePrecision

from hvps_lightning.errors import HVPSError
from hvps_lightning.models.base import BaseTask, WeightSource, _default_optimizer
from hvps_lightning.models.mots.net import MOTSNet
from hvps_lightning.models.mots.outputs import DEFAULT_MASK_THRESHOLD, binary_masks, to_frame_detections
from hvps_lightning.models.mots.streaming import StreamingMOTS
from hvps_lightning.models.mots.weights import (
    class_rows_by_name,
    coco_categories,
    coco_weights,
    detector_layout,
    download_state_dict,
    imagenet_state,
    load_with_class_rows,
    strip_prefix,
    upgrade_legacy_keys,
)
from hvps_lightning.models.schedule import LRSchedule
from hvps_lightning.models.state import LoadResult
from hvps_lightning.structures.detections import FrameDetections
from hvps_lightning.structures.specs import class_map

Pretrained = Literal["none", "imagenet", "coco"]
PRETRAINED: tuple[str, ...] = ("none", "imagenet", "coco")

#: the losses MOTSNet returns (each logged as train/<name>)
LOSS_NAMES: tuple[str, ...] = (
    "loss_objectness",
    "loss_rpn_box_reg",
    "loss_classifier",
    "loss_box_reg",
    "loss_mask",
    "loss_spatial_attention",
    "loss_embedding_triplet",
    "loss_embedding_identity",
)


class MOTSModule(BaseTask):
    """Mask R-CNN + TA + SA + embeddings as a Lightning task (see the module docstring).

    Args:
        net: the network; its ``thing_ids`` must be the spec's things (the CLI links them).
        dataset: dataset spec (linked from the DataModule by the CLI).
        optimizer: optimiser factory (LightningCLI callable); AdamW(lr=1e-4) by default.
        lr_scheduler: optional epoch-level LR scheduler factory.
        schedule: warm-up and decay in fractions of the run's optimiser steps (the stage
            configs'; instead of ``lr_scheduler`` and ``warmup_steps``, see :class:`BaseTask`).
        warmup_steps: linear LR warm-up over this many optimiser steps.
        pretrained: ``none``, ``imagenet`` (the ResNet) or ``coco`` (torchvision's COCO Mask
            R-CNN of the net's ``detector`` layout, resnet50 with 256 FPN channels; class rows
            mapped by name, person -> person). Both download on first use.
        init_checkpoint: a local file to start from: a checkpoint or state dict of this project,
            or a torchvision Mask R-CNN state dict (v1 or v2 layout, as the net's ``detector``;
            91 COCO rows mapped by name).
        init_from: checkpoint of the previous finetuning stage (class rows mapped through
            the spec's class map, e.g. person stays person; the rest starts new).
        loss_weights: weight per loss name (see ``LOSS_NAMES``; missing ones weigh 1).
        mask_threshold: probability above which a mask pixel is foreground in the emitted RLEs
            and in the mAP.
        streaming_inference: reuse the cached features of earlier frames when batches come in
            sequence order (causal window only).
    """

    monitor = "val/segm_map"
    mode = "max"

    def __init__(
        self,
        net: MOTSNet,
        dataset: str = "motchallenge_step",
        optimizer: OptimizerCallable = _default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        schedule: LRSchedule | None = None,
        warmup_steps: int = 0,
        pretrained: Pretrained = "none",
        init_checkpoint: str | None = None,
        init_from: str | None = None,
        loss_weights: dict[str, float] | None = None,
        mask_threshold: float = 0.5,
        streaming_inference: bool = True,
    ) -> None:
        super().__init__(net, dataset, optimizer, lr_scheduler, warmup_steps, pretrained, init_checkpoint,
                         init_from, schedule=schedule)  # fmt: skip
        self._stream: StreamingMOTS | None = None
        # the input frames the stream's cache holds (to check that a clip continues them)
        self._stream_frames: list[Tensor] = []

    # BaseTask hooks -----------------------------------------------------------------------------
    def configure_models(self) -> None:
        """Check the network against the spec and the start weights; freeze its norms for them.

        Raises:
            HVPSError: if the net's things are not the spec's, or ``pretrained`` does not fit the net.
        """
        net, hp = self.net, self.hparams
        if not isinstance(net, MOTSNet):
            raise HVPSError(f"net: MOTSModule needs a MOTSNet, got {type(net).__name__}")
        if tuple(net.thing_ids) != tuple(self.spec.thing_ids):
            raise HVPSError(
                f"net.thing_ids {list(net.thing_ids)} are not the things of dataset {self.spec.name!r} "
                f"{list(self.spec.thing_ids)}"
            )
        pretrained = hp.get("pretrained", "none")
        if pretrained not in PRETRAINED:
            raise HVPSError(f"pretrained: {pretrained!r} is not one of {', '.join(PRETRAINED)}")
        if pretrained == "coco" and (net.backbone_name != "resnet50" or net.fpn_channels != 256):
            raise HVPSError(
                "pretrained='coco': torchvision's COCO Mask R-CNN is a resnet50 with 256 FPN channels, "
                f"got backbone={net.backbone_name!r}, fpn_channels={net.fpn_channels}"
            )
        starts_from_weights = pretrained != "none" or hp.get("init_checkpoint") or hp.get("init_from")
        if net.backbone_norm == "auto" and starts_from_weights:
            # Trained BatchNorm statistics are kept, as torchvision does with pretrained weights.
            net.freeze_backbone_norm()

    def configure_losses(self) -> None:
        """Check and store the loss weights."""
        weights = dict(self.hparams.get("loss_weights") or {})
        unknown = sorted(set(weights) - set(LOSS_NAMES))
        if unknown:
            raise HVPSError(
                f"loss_weights: unknown loss {', '.join(unknown)}; known: {', '.join(LOSS_NAMES)}"
            )
        self.loss_weights = {name: float(weights.get(name, 1.0)) for name in LOSS_NAMES}

    def configure_metrics(self) -> None:
        """Segmentation mAP for validation and test."""
        self.val_map = MeanAveragePrecision(iou_type="segm")
        self.test_map = MeanAveragePrecision(iou_type="segm")

    def pretrained_state(self, name: str) -> tuple[dict[str, Tensor], WeightSource]:
        """Torchvision's ImageNet ResNet or COCO Mask R-CNN (of the net's ``detector`` layout); downloads."""
        if name == "imagenet":
            return imagenet_state(self.net.backbone_name), WeightSource("pretrained='imagenet'")
        weights = coco_weights(self.net.detector)
        state = download_state_dict(weights, "pretrained='coco'")
        return state, WeightSource("pretrained='coco'", class_names=tuple(weights.meta["categories"]))

    def checkpoint_state(self, path: str) -> tuple[dict[str, Tensor], WeightSource]:
        """A checkpoint of this project, or a torchvision Mask R-CNN state dict (COCO rows by name)."""
        state, source = super().checkpoint_state(path)
        classifier = strip_prefix(state).get("roi_heads.box_predictor.cls_score.weight")
        if source.spec is None and classifier is not None and classifier.shape[0] == len(coco_categories()):
            source = WeightSource(source.description, class_names=coco_categories())
        return state, source

    def transfer_state(self, state: Mapping[str, Tensor], source: WeightSource) -> LoadResult:
        """Load MOTS (or torchvision Mask R-CNN) weights; class rows go through the spec's class map or names.

        Raises:
            HVPSError: if the state holds no detector weights, is torchvision's other Mask
                R-CNN layout, or no class map links the specs.
        """
        state = upgrade_legacy_keys(strip_prefix(state))
        if not any(k.startswith(("roi_heads.", "backbone.")) for k in state):
            raise HVPSError(
                f"{source.description}: holds no MOTS network weights (no roi_heads.* or backbone.* keys)"
            )
        layout = detector_layout(state)
        if layout is not None and layout != self.net.detector:
            raise HVPSError(
                f"{source.description}: a Mask R-CNN {layout} state dict, but the net is built as detector "
                f"{self.net.detector!r}; set --model.init_args.net.init_args.detector {layout}"
            )
        rows: dict[int, int | None] | None = None
        if source.spec is not None:
            mapping = class_map(source.spec.name, self.spec.name)
            rows = {0: 0}
            for label, thing in enumerate(self.net.thing_ids, start=1):
                sources = [s for s in mapping.get(thing, ()) if s in source.spec.thing_ids]
                rows[label] = source.spec.thing_ids.index(sources[0]) + 1 if sources else None
        elif source.class_names is not None:
            names = [self.spec.class_names[t] for t in self.net.thing_ids]
            rows = class_rows_by_name(names, source.class_names)
        same_identities = source.spec is not None and source.spec.name == self.spec.name
        skip = () if same_identities or source.spec is None else ("roi_heads.identity_classifier.",)
        return load_with_class_rows(self.net, state, rows, skip)

    # Steps ------------------------------------------------------------------------------------
    def forward(self, frames: Tensor, target_index: int | None = None) -> Any:
        """Detections (eval) of the target frame of each clip; see :meth:`MOTSNet.forward`."""
        return self.net(frames, target_index=target_index)

    def training_step(self, batch: Mapping[str, Any], batch_idx: int) -> Tensor:
        """Weighted sum of the network's losses; each one is logged on its own."""
        frames = batch["frames"]
        losses = self.net(frames, list(batch["targets"]), target_index=batch.get("target_index"))
        assert isinstance(losses, dict)
        total = sum(
            (self.loss_weights.get(name, 1.0) * value for name, value in losses.items()), frames.new_zeros(())
        )
        batch_size = frames.shape[0]
        for name, value in losses.items():
            self.log(f"train/{name}", value.detach(), batch_size=batch_size)
        self.log("train/loss", total.detach(), prog_bar=True, batch_size=batch_size)
        return total

    def validation_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        """Update segm mAP; return ``{"detections": [(sequence, FrameDetections), ...]}``."""
        return {"detections": self._evaluate(batch, self.val_map)}

    def test_step(self, batch: Mapping[str, Any], batch_idx: int) -> dict[str, Any]:
        """As :meth:`validation_step`, logged under ``test/``."""
        return {"detections": self._evaluate(batch, self.test_map)}

    def predict_step(
        self, batch: Mapping[str, Any], batch_idx: int, dataloader_idx: int = 0
    ) -> list[tuple[str, FrameDetections]]:
        """Per-frame detections for the tracker: ``[(sequence, FrameDetections), ...]``."""
        return [
            (str(meta["sequence"]), self.to_frame_detections(det, meta)) for meta, det in self.infer(batch)
        ]

    def on_validation_epoch_start(self) -> None:
        """Start each pass over the sequences without cached frames."""
        self._reset_stream()

    def on_test_epoch_start(self) -> None:
        """Start each pass over the sequences without cached frames."""
        self._reset_stream()

    def on_predict_epoch_start(self) -> None:
        """Start each pass over the sequences without cached frames."""
        self._reset_stream()

    def on_validation_epoch_end(self) -> None:
        """Log segm mAP (``val/segm_map``, ``val/segm_map_50``, ``val/segm_map_75``)."""
        self._log_map(self.val_map, "val")

    def on_test_epoch_end(self) -> None:
        """Log segm mAP under ``test/``."""
        self._log_map(self.test_map, "test")

    # Inference --------------------------------------------------------------------------------
    @torch.no_grad()
    def infer(self, batch: Mapping[str, Any]) -> list[tuple[dict[str, Any], dict[str, Tensor]]]:
        """Detections at original resolution for each clip of ``batch``: ``[(meta, detections)]``."""
        frames = batch["frames"]
        metas = list(batch["meta"])
        num_frames = frames.shape[1]
        target_index = batch.get("target_index")
        target_index = num_frames - 1 if target_index is None else int(target_index)
        orig_sizes = [_size(meta.get("orig_size"), frames) for meta in metas]
        streamable = (
            self.hparams.get("streaming_inference", True)
            and not self.net.training
            and self.net.temporal_attention is not None
            and num_frames == self.net.num_frames
            and target_index == num_frames - 1
        )
        if not streamable:
            detections = self.net(frames, target_index=target_index, orig_sizes=orig_sizes)
            assert isinstance(detections, list)
            return list(zip(metas, detections, strict=True))
        image_size = (int(frames.shape[-2]), int(frames.shape[-1]))
        target_features = self.net.frame_features(frames[:, target_index])
        out = []
        for b, meta in enumerate(metas):
            context = list(frames[b, :target_index])
            # The cache is reused only when this clip's earlier frames are exactly the frames it
            # holds (the next frame of the same sequence, clip stride 1); anything else (a new
            # sequence, a gap, another rank's share) starts again from the clip's own frames.
            continues = (
                self._stream is not None
                and len(self._stream_frames) == len(context)
                and all(torch.equal(a, c) for a, c in zip(self._stream_frames, context, strict=True))
            )
            if not continues:
                self._stream = StreamingMOTS(self.net, target_index=target_index)
                self._stream.seed(frames[b, :target_index])
            assert self._stream is not None
            features = {level: f[b : b + 1] for level, f in target_features.items()}
            out += self._stream.push_features(features, image_size, orig_sizes[b], meta)
            self._stream_frames = [*context[1:], frames[b, target_index]]
        return out

    def binary_masks(self, detections: Mapping[str, Tensor]) -> Tensor:
        """(N, H, W) bool masks: the network's mask probabilities at ``mask_threshold``."""
        return binary_masks(detections, float(self.hparams.get("mask_threshold", DEFAULT_MASK_THRESHOLD)))

    def to_frame_detections(
        self, detections: Mapping[str, Tensor], meta: Mapping[str, Any], masks: Tensor | None = None
    ) -> FrameDetections:
        """Convert one frame's network output to :class:`FrameDetections` (see :mod:`.outputs`).

        ``masks``: :meth:`binary_masks` of ``detections`` when the caller has them already.
        """
        threshold = float(self.hparams.get("mask_threshold", DEFAULT_MASK_THRESHOLD))
        return to_frame_detections(detections, str(meta["frame"]), threshold, masks)

    def _evaluate(
        self, batch: Mapping[str, Any], metric: MeanAveragePrecision
    ) -> list[tuple[str, FrameDetections]]:
        results = self.infer(batch)
        binary = [self.binary_masks(det) for _, det in results]
        targets = batch.get("targets")
        if targets is not None:
            preds, gts = [], []
            for (_, det), masks, target in zip(results, binary, targets, strict=True):
                preds.append({"masks": masks, "scores": det["scores"], "labels": det["labels"]})
                gt_masks = target["masks"].to(masks.device)
                if gt_masks.shape[-2:] != masks.shape[-2:]:
                    gt_masks = F.interpolate(
                        gt_masks[:, None].float(), size=masks.shape[-2:], mode="nearest"
                    )[:, 0]
                gts.append({"masks": gt_masks.bool(), "labels": target["labels"].to(masks.device)})
            metric.update(preds, gts)
        return [
            (str(meta["sequence"]), self.to_frame_detections(det, meta, masks))
            for (meta, det), masks in zip(results, binary, strict=True)
        ]

    def _log_map(self, metric: MeanAveragePrecision, prefix: str) -> None:
        if not metric.update_called:
            return
        values = metric.compute()
        for key in ("map", "map_50", "map_75"):
            self.log(f"{prefix}/segm_{key}", values[key].float(), sync_dist=False)
        metric.reset()

    def _reset_stream(self) -> None:
        self._stream = None
        self._stream_frames = []


def _size(orig_size: Any, frames: Tensor) -> tuple[int, int]:
    if orig_size is None:
        return int(frames.shape[-2]), int(frames.shape[-1])
    if isinstance(orig_size, Tensor):
        orig_size = orig_size.tolist()
    return int(orig_size[0]), int(orig_size[1])
