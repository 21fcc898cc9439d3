"""``SemanticModule``: the semantic segmenter of HVPS (the EfficientPS role) as a Lightning task.

It reads the target frame of each clip (``frames[:, target_index]``, see ARCHITECTURE.md
"Batches"), trains with cross-entropy that skips the ignore label (optionally plus smp's Lovasz
and Dice losses), and logs mIoU and per-class IoU (torchmetrics ``JaccardIndex``) per epoch as
``val/miou`` and ``val/iou/<class>``. ``predict_step`` returns ``[(sequence, frame, semantic
uint8 (H0, W0)), ...]`` at the original image size; :class:`SemanticCacheWriter` writes them to
the semantic cache that the panoptic fusion reads.

Example (a YAML for ``hvps fit``)::

    model:
      class_path: hvps_lightning.models.semantic.SemanticModule
      init_args:
        arch: efficientps              # or Unet, FPN, DeepLabV3Plus, ...
        encoder_name: efficientnet-b0
        encoder_weights: null          # "imagenet" needs internet on first use
        lovasz_weight: 0.5
        init_from: outputs/kitti_step/last.ckpt   # previous stage; classes mapped via specs
"""

from __future__ import annotations

import logging
import math
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from segmentation_models_pytorch.losses import DiceLoss, LovaszLoss
from torchmetrics.classification import MulticlassJaccardIndex

from hvps_lightning.errors import HVPSError
from hvps_lightning.models.base import BaseTask, _default_optimizer
from hvps_lightning.models.semantic.torch_model import EFFICIENTPS, SemanticNet
from hvps_lightning.structures.specs import DatasetSpec, class_map

log = logging.getLogger(__name__)

#: prefix of the network's parameters in the module's state dict
NET_PREFIX = "net."


def _metric_name(class_name: str) -> str:
    return class_name.replace(" ", "_")


class SemanticModule(BaseTask):
    """Semantic segmentation of the target frame of each clip.

    Args:
        dataset: dataset spec name (linked from the DataModule by the CLI): classes, ignore label.
        arch: ``"efficientps"`` (EfficientPS-style head on a 2-way FPN) or an smp architecture
            (``Unet``, ``FPN``, ``DeepLabV3Plus``, ...).
        encoder_name: smp encoder (``efficientnet-b0`` is CPU-friendly; the paper uses b5).
        encoder_weights: ``None`` (default, offline) or e.g. ``"imagenet"`` (needs internet).
        fpn_channels: EfficientPS: 2-way FPN channels (256 in the paper).
        head_channels: EfficientPS: semantic head branch channels (128 in the paper).
        arch_kwargs: extra keyword arguments of the smp architecture.
        lovasz_weight: weight of smp's multiclass Lovasz-softmax loss added to cross-entropy (0: off).
        dice_weight: weight of smp's multiclass Dice loss added to cross-entropy (0: off).
        ohem_fraction: average the cross-entropy over only this fraction of the valid pixels with
            the highest loss (online hard example mining; EfficientPS uses 0.25). ``None``: all.
        predict_probabilities: ``predict_step`` also returns the softmax at the network's
            resolution (for the fusion's "best stuff class" rule); items become 4-tuples.
        optimizer: optimiser factory (LightningCLI callable).
        lr_scheduler: optional epoch-level LR scheduler factory.
        warmup_steps: linear LR warm-up steps.
        init_from: checkpoint of the previous stage; classifier rows are mapped through the
            spec's class map (:meth:`transfer_state`).
    """

    monitor = "val/miou"
    mode = "max"

    def __init__(
        self,
        dataset: str = "motchallenge_step",
        arch: str = EFFICIENTPS,
        encoder_name: str = "efficientnet-b0",
        encoder_weights: str | None = None,
        fpn_channels: int = 256,
        head_channels: int = 128,
        arch_kwargs: dict[str, Any] | None = None,
        lovasz_weight: float = 0.0,
        dice_weight: float = 0.0,
        ohem_fraction: float | None = None,
        predict_probabilities: bool = False,
        optimizer: OptimizerCallable = _default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        warmup_steps: int = 0,
        init_from: str | None = None,
    ) -> None:
        super().__init__(dataset, optimizer, lr_scheduler, warmup_steps, init_from)
        if lovasz_weight < 0 or dice_weight < 0:
            raise HVPSError(f"lovasz_weight and dice_weight must be >= 0, got {lovasz_weight}, {dice_weight}")
        if ohem_fraction is not None and not 0.0 < ohem_fraction <= 1.0:
            raise HVPSError(f"ohem_fraction must lie in (0, 1] or be null, got {ohem_fraction}")
        self.save_hyperparameters(ignore=["optimizer", "lr_scheduler"])
        self.predict_probabilities = predict_probabilities
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    # Construction -------------------------------------------------------------------------
    def configure_models(self) -> None:
        """Build the network for the spec's classes."""
        hp = self.hparams
        self.net = SemanticNet(
            num_classes=self.spec.num_classes,
            arch=hp.arch,
            encoder_name=hp.encoder_name,
            encoder_weights=hp.encoder_weights,
            fpn_channels=hp.fpn_channels,
            head_channels=hp.head_channels,
            arch_kwargs=hp.arch_kwargs,
        )

    def configure_losses(self) -> None:
        """Cross-entropy (always) and the optional Lovasz / Dice terms, all skipping the ignore label."""
        ignore = self.spec.ignore_label
        self.lovasz_loss = (
            LovaszLoss(mode="multiclass", ignore_index=ignore) if self.hparams.lovasz_weight else None
        )
        self.dice_loss = (
            DiceLoss(mode="multiclass", ignore_index=ignore, from_logits=True)
            if self.hparams.dice_weight
            else None
        )

    def configure_metrics(self) -> None:
        """Per-class IoU (NaN where a class is absent from both prediction and ground truth)."""
        kwargs = {"average": "none", "ignore_index": self.spec.ignore_label, "zero_division": math.nan}
        self.val_iou = MulticlassJaccardIndex(self.spec.num_classes, **kwargs)
        self.test_iou = MulticlassJaccardIndex(self.spec.num_classes, **kwargs)

    # Forward and losses ---------------------------------------------------------------------
    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return (B, C, H, W) logits for normalised (B, 3, H, W) images."""
        return self.net(images)

    @staticmethod
    def target_images(batch: dict[str, Any]) -> torch.Tensor:
        """Return the target frame of each clip: ``frames[:, target_index]``, (B, 3, H, W)."""
        frames = batch["frames"]
        if frames.ndim == 4:  # already single frames
            return frames
        return frames[:, int(batch.get("target_index", frames.shape[1] - 1))]

    def compute_losses(self, logits: torch.Tensor, target: torch.Tensor) -> dict[str, torch.Tensor]:
        """Return the loss terms and their weighted sum under ``"loss"``."""
        if logits.shape[-2:] != target.shape[-2:]:
            logits = F.interpolate(logits, size=target.shape[-2:], mode="bilinear", align_corners=False)
        ce = self._cross_entropy(logits, target)
        losses = {"loss_ce": ce}
        total = ce
        if self.lovasz_loss is not None:
            losses["loss_lovasz"] = self.lovasz_loss(logits, target)
            total = total + self.hparams.lovasz_weight * losses["loss_lovasz"]
        if self.dice_loss is not None:
            losses["loss_dice"] = self.dice_loss(logits, target)
            total = total + self.hparams.dice_weight * losses["loss_dice"]
        losses["loss"] = total
        return losses

    def _cross_entropy(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Mean cross-entropy over valid pixels (or the hardest ``ohem_fraction`` of them); 0 if none."""
        valid = target != self.spec.ignore_label
        pixel_losses = F.cross_entropy(logits, target, ignore_index=self.spec.ignore_label, reduction="none")
        pixel_losses = pixel_losses[valid]
        if pixel_losses.numel() == 0:  # an all-void batch: 0 (with a graph), not NaN
            return logits.sum() * 0.0
        fraction = self.hparams.get("ohem_fraction")
        if fraction is not None and fraction < 1.0:
            keep = max(1, math.ceil(fraction * pixel_losses.numel()))
            pixel_losses = pixel_losses.topk(keep, sorted=False).values
        return pixel_losses.mean()

    def _semantic_target(self, batch: dict[str, Any]) -> torch.Tensor:
        return torch.stack([t["semantic"] for t in batch["targets"]]).long()

    def _shared_step(self, batch: dict[str, Any], stage: str) -> tuple[dict[str, torch.Tensor], torch.Tensor]:
        images = self.target_images(batch)
        target = self._semantic_target(batch).to(images.device)
        logits = self(images)
        losses = self.compute_losses(logits, target)
        batch_size = images.shape[0]
        for name, value in losses.items():
            self.log(
                f"{stage}/{name}",
                value,
                batch_size=batch_size,
                on_step=stage == "train",
                on_epoch=True,
                prog_bar=name == "loss",
                sync_dist=stage != "train",
            )
        return losses, logits

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        """Return the training loss of the batch."""
        losses, _ = self._shared_step(batch, "train")
        return losses["loss"]

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Log the validation losses and accumulate IoU."""
        losses, logits = self._shared_step(batch, "val")
        self.val_iou.update(
            self._predict_labels(logits, batch), self._semantic_target(batch).to(logits.device)
        )
        return losses

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        """Log the test losses and accumulate IoU."""
        losses, logits = self._shared_step(batch, "test")
        self.test_iou.update(
            self._predict_labels(logits, batch), self._semantic_target(batch).to(logits.device)
        )
        return losses

    def _predict_labels(self, logits: torch.Tensor, batch: dict[str, Any]) -> torch.Tensor:
        target_size = batch["targets"][0]["semantic"].shape[-2:]
        if logits.shape[-2:] != target_size:
            logits = F.interpolate(logits, size=target_size, mode="bilinear", align_corners=False)
        return logits.argmax(dim=1)

    def on_validation_epoch_end(self) -> None:
        """Log ``val/miou`` and ``val/iou/<class>``."""
        self._log_iou(self.val_iou, "val")

    def on_test_epoch_end(self) -> None:
        """Log ``test/miou`` and ``test/iou/<class>``."""
        self._log_iou(self.test_iou, "test")

    def _log_iou(self, metric: MulticlassJaccardIndex, stage: str) -> None:
        if not metric.update_called:
            return
        per_class = metric.compute()
        present = ~torch.isnan(per_class)
        # mean over classes present in prediction or ground truth, as STQ's IoU does
        miou = per_class[present].mean() if present.any() else per_class.new_zeros(())
        self.log(f"{stage}/miou", miou)
        for class_id, name in enumerate(self.spec.class_names):
            if present[class_id]:
                self.log(f"{stage}/iou/{_metric_name(name)}", per_class[class_id])
        metric.reset()

    # Prediction ---------------------------------------------------------------------------
    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[tuple]:
        """Return ``[(sequence, frame, semantic uint8 (H0, W0)), ...]`` at the original image size.

        With ``predict_probabilities`` each item carries a fourth element: the float16 softmax
        (C, H, W) at the network's resolution.
        """
        images = self.target_images(batch)
        logits = self(images)
        results: list[tuple] = []
        for index, meta in enumerate(batch["meta"]):
            height, width = (int(v) for v in meta["orig_size"])
            content_height, content_width = self._content_size(meta, tuple(images.shape[-2:]))
            item_logits = logits[index : index + 1, :, :content_height, :content_width]
            full = F.interpolate(item_logits, size=(height, width), mode="bilinear", align_corners=False)
            semantic = full.argmax(dim=1)[0].to(torch.uint8).cpu().numpy()
            item: tuple = (str(meta["sequence"]), str(meta["frame"]), semantic)
            if self.predict_probabilities:
                probabilities = item_logits.softmax(dim=1)[0].to(torch.float16).cpu().numpy()
                item = (*item, probabilities)
            results.append(item)
        return results

    def _content_size(self, meta: dict[str, Any], batch_size_hw: tuple[int, int]) -> tuple[int, int]:
        """The part of a (collate-padded) batch frame that holds this item's image.

        With a fixed ``image_size`` every frame fills the batch and is resized back to
        ``orig_size``; at native size (``image_size: null``) the collate function pads frames of
        different sizes at the bottom/right, so the item's image is its ``orig_size`` corner.
        """
        if "input_size" in meta:
            return int(meta["input_size"][0]), int(meta["input_size"][1])
        datamodule = getattr(self._trainer, "datamodule", None) if self._trainer is not None else None
        if datamodule is not None and getattr(datamodule, "image_size", ()) is None:
            height, width = (int(v) for v in meta["orig_size"])
            return min(height, batch_size_hw[0]), min(width, batch_size_hw[1])
        return batch_size_hw

    # Stage transfer -----------------------------------------------------------------------
    def transfer_state(self, state_dict: dict[str, torch.Tensor], source_spec: DatasetSpec) -> list[str]:
        """Load a previous stage's weights, carrying classifier rows through the class map.

        Every tensor whose name and shape match is copied. The classifier's rows (dimension 0 =
        class) of each target class are the mean of the rows of the source classes it is made of
        (``specs.class_map(source, target)``, e.g. MOTChallenge-STEP ``sidewalk`` <- Cityscapes
        road + sidewalk); classes without a source keep their fresh initialisation.

        Args:
            state_dict: the previous stage's ``state_dict`` (of a SemanticModule, keys
                ``net.*``; a bare SemanticNet state dict is accepted too).
            source_spec: the dataset spec the previous stage was trained on.

        Returns:
            The names of this module's tensors that received nothing from the checkpoint.

        Raises:
            HVPSError: if no tensor of the checkpoint fits this model (another architecture or
                task), or no class map between the datasets is known.
        """
        own = self.state_dict()
        if not any(key in own for key in state_dict):
            state_dict = {NET_PREFIX + key: value for key, value in state_dict.items()}
        mapping = class_map(source_spec.name, self.spec.name)
        classifier_keys = {NET_PREFIX + name for name in self.net.classifier_parameter_names()}
        new_state: dict[str, torch.Tensor] = {}
        fresh: list[str] = []
        for key, current in own.items():
            source = state_dict.get(key)
            if source is None:
                fresh.append(key)
            elif key in classifier_keys:
                if source.shape[0] != source_spec.num_classes or source.shape[1:] != current.shape[1:]:
                    fresh.append(key)
                    continue
                rows = current.clone()
                for target_class, source_classes in mapping.items():
                    rows[target_class] = source[list(source_classes)].to(rows.dtype).mean(dim=0)
                new_state[key] = rows
            elif source.shape == current.shape:
                new_state[key] = source
            else:
                fresh.append(key)
        loaded = [k for k in new_state if not k.endswith("num_batches_tracked")]
        if not loaded:
            raise HVPSError(
                f"init_from: no weights of the checkpoint fit this {type(self).__name__} "
                f"(arch {self.hparams.arch!r}, encoder {self.hparams.encoder_name!r})"
            )
        self.load_state_dict(new_state, strict=False)
        unmapped = [self.spec.class_names[c] for c in range(self.spec.num_classes) if c not in mapping]
        log.info(
            "init_from: %d tensors loaded from %s, %d fresh; classes starting fresh: %s",
            len(new_state),
            source_spec.name,
            len(fresh),
            ", ".join(unmapped) or "none",
        )
        return fresh
