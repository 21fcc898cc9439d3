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

Example YAML (``hvps fit --config``)::

    model:
      class_path: hvps_lightning.models.mots.MOTSModule
      init_args:
        backbone: resnet50
        temporal_attention: true
        spatial_attention: true
        loss_weights: {loss_spatial_attention: 0.5}
        optimizer:
          class_path: torch.optim.SGD
          init_args: {lr: 0.01, momentum: 0.9}
        warmup_steps: 500
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from torch import Tensor
from torchmetrics.detection import MeanAveragePrecision

from hvps_lightning.errors import HVPSError
from hvps_lightning.models.base import BaseTask, _default_optimizer
from hvps_lightning.models.mots.torch_model import Backbone, BackboneNorm, MOTSNet, Pretrained, StreamingMOTS
from hvps_lightning.models.mots.weights import load_with_class_rows, strip_prefix
from hvps_lightning.structures.detections import FrameDetections
from hvps_lightning.structures.masks import encode_masks
from hvps_lightning.structures.specs import DatasetSpec, class_map

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
        dataset: dataset spec (linked from the DataModule by the CLI).
        optimizer: optimiser factory (LightningCLI callable); AdamW(lr=1e-4) by default.
        lr_scheduler: optional epoch-level LR scheduler factory.
        warmup_steps: linear LR warm-up over this many optimiser steps.
        init_from: checkpoint of the previous finetuning stage (class rows mapped through
            the spec's class map, e.g. person stays person; the rest starts new).
        backbone: see :class:`~hvps_lightning.models.mots.MOTSNet` for this and the
            following network arguments.
        trainable_layers: ResNet stages trained (0-5).
        fpn_channels: FPN width.
        backbone_norm: ``auto``, ``frozen`` or ``batch`` (``auto`` freezes them when starting from
            pretrained weights, ``init_checkpoint`` or ``init_from``).
        pretrained: ``none``, ``imagenet`` or ``coco`` (downloads; applied in ``setup``).
        init_checkpoint: local weights to start from (applied in ``setup``).
        num_frames: clip length T.
        temporal_attention: TA on/off.
        spatial_attention: SA on/off.
        temporal_attention_channels: TA width.
        temporal_attention_layers: TA 3x3x3 convolutions.
        context_grad: backpropagate through the context frames.
        anchor_sizes: one anchor size per FPN level.
        aspect_ratios: anchor aspect ratios.
        rpn_pre_nms_top_n_train: RPN proposals per level before NMS (training).
        rpn_pre_nms_top_n_test: the same at inference.
        rpn_post_nms_top_n_train: RPN proposals after NMS (training).
        rpn_post_nms_top_n_test: the same at inference.
        rpn_batch_size_per_image: anchors sampled per image for the RPN loss.
        box_batch_size_per_image: proposals sampled per image for the RoI heads.
        box_positive_fraction: fraction of positives among them.
        box_score_thresh: minimum detection score.
        box_nms_thresh: detection NMS threshold.
        box_detections_per_img: maximum detections per frame.
        box_representation_size: box head width.
        mask_head_layers: mask head convolutions.
        mask_head_channels: mask head width.
        spatial_attention_channels: SA width.
        embedding_dim: embedding dimension.
        embedding_channels: embedding head width.
        triplet_margin: triplet loss margin.
        embedding_iou_thresh: minimum IoU with the GT box of proposals that train the embedding.
        num_identities: > 0 adds the identity cross-entropy.
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
        dataset: str = "motchallenge_step",
        optimizer: OptimizerCallable = _default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        warmup_steps: int = 0,
        init_from: str | None = None,
        backbone: Backbone = "resnet50",
        trainable_layers: int = 3,
        fpn_channels: int = 256,
        backbone_norm: BackboneNorm = "auto",
        pretrained: Pretrained = "none",
        init_checkpoint: str | None = None,
        num_frames: int = 3,
        temporal_attention: bool = True,
        spatial_attention: bool = True,
        temporal_attention_channels: int = 32,
        temporal_attention_layers: int = 1,
        context_grad: bool = False,
        anchor_sizes: tuple[int, ...] = (32, 64, 128, 256, 512),
        aspect_ratios: tuple[float, ...] = (0.5, 1.0, 2.0),
        rpn_pre_nms_top_n_train: int = 2000,
        rpn_pre_nms_top_n_test: int = 1000,
        rpn_post_nms_top_n_train: int = 2000,
        rpn_post_nms_top_n_test: int = 1000,
        rpn_batch_size_per_image: int = 256,
        box_batch_size_per_image: int = 512,
        box_positive_fraction: float = 0.25,
        box_score_thresh: float = 0.05,
        box_nms_thresh: float = 0.5,
        box_detections_per_img: int = 100,
        box_representation_size: int = 1024,
        mask_head_layers: int = 4,
        mask_head_channels: int = 256,
        spatial_attention_channels: int = 64,
        embedding_dim: int = 128,
        embedding_channels: int = 128,
        triplet_margin: float = 0.3,
        embedding_iou_thresh: float = 0.7,
        num_identities: int = 0,
        loss_weights: dict[str, float] | None = None,
        mask_threshold: float = 0.5,
        streaming_inference: bool = True,
    ) -> None:
        super().__init__(dataset, optimizer, lr_scheduler, warmup_steps, init_from)
        # Callables are not plain data (and would break weights_only checkpoint loading);
        # the CLI's saved config keeps them.
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self._initial_weights_done = False
        self._stream: StreamingMOTS | None = None
        # the input frames the stream's cache holds (to check that a clip continues them)
        self._stream_frames: list[Tensor] = []
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    # BaseTask hooks -----------------------------------------------------------------------------
    def configure_models(self) -> None:
        """Build :class:`MOTSNet` from the hyperparameters (start weights come in ``setup``)."""
        hp = self.hparams
        net_args = {name: hp[name] for name in _NET_ARGS}
        if net_args["backbone_norm"] == "auto" and hp.get("init_from"):
            # A previous stage's weights count as pretrained: keep their BatchNorm statistics.
            net_args["backbone_norm"] = "frozen"
        self.net = MOTSNet(dataset=self.spec, load_weights=False, **net_args)

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

    def setup(self, stage: str) -> None:
        """Apply ``pretrained``/``init_checkpoint`` once (never over loaded weights), then ``init_from``."""
        resuming = self._trainer is not None and self.trainer.ckpt_path is not None
        if not self._initial_weights_done and not resuming:
            self.net.load_initial_weights()
        self._initial_weights_done = True
        super().setup(stage)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A checkpoint brings trained weights: never apply the start weights over them."""
        super().on_load_checkpoint(checkpoint)
        self._initial_weights_done = True

    def transfer_state(self, state_dict: dict[str, Tensor], source: DatasetSpec) -> list[str]:
        """Load a previous stage's MOTS weights; class rows go through the spec's class map.

        Returns:
            The keys (``net.``-prefixed) left new: layers whose shape differs, class rows
            without a source class, and the identity classifier of another dataset.

        Raises:
            HVPSError: if the checkpoint holds no MOTS network, or no class map links the specs.
        """
        state = strip_prefix(state_dict)
        if not any(k.startswith("roi_heads.") for k in state):
            raise HVPSError("init_from: the checkpoint holds no MOTS network weights (no roi_heads.* keys)")
        mapping = class_map(source.name, self.spec.name)
        rows: dict[int, int | None] = {0: 0}
        for label, thing in enumerate(self.net.thing_ids, start=1):
            sources = [s for s in mapping.get(thing, ()) if s in source.thing_ids]
            rows[label] = source.thing_ids.index(sources[0]) + 1 if sources else None
        skip = () if source.name == self.spec.name else ("roi_heads.identity_classifier.",)
        fresh = load_with_class_rows(self.net, state, rows, skip)
        return [f"net.{k}" for k in fresh]

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
        return detections["masks"][:, 0] >= float(self.hparams.get("mask_threshold", 0.5))

    def to_frame_detections(
        self, detections: Mapping[str, Tensor], meta: Mapping[str, Any], masks: Tensor | None = None
    ) -> FrameDetections:
        """Convert one frame's network output to :class:`FrameDetections` (RLE masks, spec labels).

        ``masks``: :meth:`binary_masks` of ``detections`` when the caller has them already.
        """
        if masks is None:
            masks = self.binary_masks(detections)
        height, width = masks.shape[-2:]
        frame = FrameDetections(
            frame=str(meta["frame"]),
            boxes=detections["boxes"].detach().float().cpu().numpy().astype(np.float32),
            scores=detections["scores"].detach().float().cpu().numpy().astype(np.float32),
            labels=detections["labels"].detach().cpu().numpy().astype(np.int64),
            masks=encode_masks(masks),
            embeddings=detections["embeddings"].detach().float().cpu().numpy().astype(np.float32),
            image_size=(int(height), int(width)),
        )
        return frame

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


#: MOTSModule arguments passed through to MOTSNet (a test keeps both signatures in sync)
_NET_ARGS: Sequence[str] = (
    "backbone",
    "trainable_layers",
    "fpn_channels",
    "backbone_norm",
    "pretrained",
    "init_checkpoint",
    "num_frames",
    "temporal_attention",
    "spatial_attention",
    "temporal_attention_channels",
    "temporal_attention_layers",
    "context_grad",
    "anchor_sizes",
    "aspect_ratios",
    "rpn_pre_nms_top_n_train",
    "rpn_pre_nms_top_n_test",
    "rpn_post_nms_top_n_train",
    "rpn_post_nms_top_n_test",
    "rpn_batch_size_per_image",
    "box_batch_size_per_image",
    "box_positive_fraction",
    "box_score_thresh",
    "box_nms_thresh",
    "box_detections_per_img",
    "box_representation_size",
    "mask_head_layers",
    "mask_head_channels",
    "spatial_attention_channels",
    "embedding_dim",
    "embedding_channels",
    "triplet_margin",
    "embedding_iou_thresh",
    "num_identities",
)
