"""``SemanticModule``: the semantic segmenter of HVPS (the EfficientPS role) as a Lightning task.

It reads the target frame of each clip (``frames[:, target_index]``, see docs/ARCHITECTURE.md
"Batches"), trains with cross-entropy that skips the ignore label (optionally plus smp's Lovasz
and Dice losses), and logs mIoU and per-class IoU (torchmetrics ``JaccardIndex``) per epoch as
``val/miou`` and ``val/iou/<class>``. ``predict_step`` returns ``[(sequence, frame, semantic
uint8 (H0, W0)), ...]`` at the original image size; ``SemanticCacheWriter``
(:mod:`hvps_lightning.lightning.writers`) writes them to the semantic cache that the fusion reads.

The network is passed in (``net``), built by the LightningCLI from the YAML with the
DataModule's class count linked into it. Example (a YAML for ``hvps fit``)::

    model:
      class_path: hvps_lightning.models.semantic.lightning_model.SemanticModule
      init_args:
        net:
          class_path: hvps_lightning.models.semantic.SemanticNet
          init_args:
            arch: efficientps          # or Unet, FPN, DeepLabV3Plus, ...
            encoder_name: efficientnet-b0
        pretrained: none               # "imagenet" needs internet on first use
        lovasz_weight: 0.5
        init_from: outputs/kitti_step/last.ckpt   # previous stage; classes mapped via specs
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from segmentation_models_pytorch.losses import DiceLoss, LovaszLoss
from torchmetrics.classification import MulticlassJaccardIndex

from hvps_lightning.errors import HVPSError
from hvps_lightning.models.base import BaseTask, WeightSource, _default_optimizer, load_checkpoint_file
from hvps_lightning.models.schedule import LRSchedule
from hvps_lightning.models.semantic.efficientps import convert_efficientps, is_efficientps_state
from hvps_lightning.models.semantic.outputs import class_probabilities, semantic_map
from hvps_lightning.models.semantic.torch_model import EFFICIENTPS, SemanticNet, check_encoder, encoder_state
from hvps_lightning.models.state import LoadResult
from hvps_lightning.structures.specs import CITYSCAPES_CLASSES, class_map, get_spec

#: the dataset spec of the official EfficientPS models' 19 classes (Cityscapes train ids, KITTI too)
EFFICIENTPS_SPEC = "kitti_panoptic"


def _metric_name(class_name: str) -> str:
    return class_name.replace(" ", "_")


class SemanticModule(BaseTask):
    """Semantic segmentation of the target frame of each clip.

    Args:
        net: the network; its ``num_classes`` must be the spec's (the CLI links it).
        dataset: dataset spec name (linked from the DataModule by the CLI): classes, ignore label.
        optimizer: optimiser factory (LightningCLI callable).
        lr_scheduler: optional epoch-level LR scheduler factory.
        schedule: warm-up and decay in fractions of the run's optimiser steps (the stage
            configs'; instead of ``lr_scheduler`` and ``warmup_steps``, see :class:`BaseTask`).
        warmup_steps: linear LR warm-up steps.
        pretrained: ``none`` or a weight set smp publishes for the net's encoder (``imagenet``,
            ``advprop``, ...; downloaded on first use).
        init_checkpoint: a local file to start from: a checkpoint or state dict of this project,
            or an official EfficientPS checkpoint (DeepSceneSeg/EfficientPS, recognised by its
            keys and converted by :mod:`~hvps_lightning.models.semantic.efficientps`; its 19
            Cityscapes classes mapped to the spec's).
        init_from: checkpoint of the previous stage; classifier rows are mapped through the
            spec's class map (:meth:`transfer_state`).
        lovasz_weight: weight of smp's multiclass Lovasz-softmax loss added to cross-entropy (0: off).
        dice_weight: weight of smp's multiclass Dice loss added to cross-entropy (0: off).
        ohem_fraction: average the cross-entropy over only this fraction of the valid pixels with
            the highest loss (online hard example mining; EfficientPS uses 0.25). ``None``: all.
        predict_probabilities: ``predict_step`` also returns the softmax at the network's
            resolution (for the fusion's "best stuff class" rule); items become 4-tuples.
    """

    monitor = "val/miou"
    mode = "max"

    def __init__(
        self,
        net: SemanticNet,
        dataset: str = "motchallenge_step",
        optimizer: OptimizerCallable = _default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        schedule: LRSchedule | None = None,
        warmup_steps: int = 0,
        pretrained: str = "none",
        init_checkpoint: str | None = None,
        init_from: str | None = None,
        lovasz_weight: float = 0.0,
        dice_weight: float = 0.0,
        ohem_fraction: float | None = None,
        predict_probabilities: bool = False,
    ) -> None:
        if lovasz_weight < 0 or dice_weight < 0:
            raise HVPSError(f"lovasz_weight and dice_weight must be >= 0, got {lovasz_weight}, {dice_weight}")
        if ohem_fraction is not None and not 0.0 < ohem_fraction <= 1.0:
            raise HVPSError(f"ohem_fraction must lie in (0, 1] or be null, got {ohem_fraction}")
        super().__init__(net, dataset, optimizer, lr_scheduler, warmup_steps, pretrained, init_checkpoint,
                         init_from, schedule=schedule)  # fmt: skip
        self.predict_probabilities = predict_probabilities

    # Construction -------------------------------------------------------------------------
    def configure_models(self) -> None:
        """Check the network against the spec's classes (and ``pretrained`` against its encoder).

        Raises:
            HVPSError: if the net predicts another number of classes than the spec has.
        """
        net = self.net
        if not isinstance(net, SemanticNet):
            raise HVPSError(f"net: SemanticModule needs a SemanticNet, got {type(net).__name__}")
        if net.num_classes != self.spec.num_classes:
            raise HVPSError(
                f"net.num_classes {net.num_classes} is not the {self.spec.num_classes} classes of dataset "
                f"{self.spec.name!r}"
            )
        pretrained = self.hparams.get("pretrained", "none")
        if pretrained != "none":
            check_encoder(net.encoder_name, pretrained)  # fail now, not at the first setup

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
            content = self._content_size(meta, tuple(images.shape[-2:]))
            semantic = semantic_map(logits[index], (height, width), content)
            item: tuple = (str(meta["sequence"]), str(meta["frame"]), semantic)
            if self.predict_probabilities:
                item = (*item, class_probabilities(logits[index], content))
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

    # Start weights --------------------------------------------------------------------------
    def pretrained_state(self, name: str) -> tuple[dict[str, torch.Tensor], WeightSource]:
        """The pretrained encoder weights ``name`` that smp publishes (downloads on first use)."""
        return encoder_state(self.net.encoder_name, name), WeightSource(f"pretrained={name!r}")

    def checkpoint_state(self, path: str) -> tuple[dict[str, torch.Tensor], WeightSource]:
        """A checkpoint of this project, or an official EfficientPS checkpoint (converted)."""
        ckpt = load_checkpoint_file(path, "init_checkpoint")
        official = ckpt.get("state_dict", ckpt)
        if not isinstance(official, dict) or not is_efficientps_state(official):
            return self.project_checkpoint_state(ckpt, path)
        if self.net.arch != EFFICIENTPS:
            raise HVPSError(
                f"init_checkpoint {path}: an EfficientPS checkpoint; it converts into net arch "
                f"{EFFICIENTPS!r} only, not {self.net.arch!r}"
            )
        conversion = convert_efficientps(official, self.net)
        for note in conversion.notes:
            rank_zero_info(f"init_checkpoint {path} (EfficientPS): {note}")
        classifier = official.get("semantic_head.conv_logits.weight")
        spec = get_spec(EFFICIENTPS_SPEC)
        cityscapes = classifier is not None and classifier.shape[0] == len(CITYSCAPES_CLASSES)
        source = WeightSource(f"init_checkpoint {path} (EfficientPS)", spec=spec if cityscapes else None,
                              dropped=tuple(conversion.unmapped))  # fmt: skip
        return conversion.state, source

    def transfer_state(self, state: Mapping[str, torch.Tensor], source: WeightSource) -> LoadResult:
        """Load semantic-network weights, carrying classifier rows through the class map.

        Every tensor whose name and shape match is copied. The classifier's rows (dimension 0 =
        class) of each target class are the mean of the rows of the source classes it is made of
        (``specs.class_map(source, target)``, e.g. MOTChallenge-STEP ``sidewalk`` <- Cityscapes
        road + sidewalk); classes without a source keep their fresh initialisation.

        Args:
            state: network keys (a SemanticModule's ``net.*`` keys are accepted too).
            source: where it comes from; its spec (if known) says which classes the rows are.

        Returns:
            The network's keys that received nothing, and the source's keys nothing took.

        Raises:
            HVPSError: if no tensor of the state fits this network (another architecture or
                task), or no class map between the datasets is known.
        """
        if any(k.startswith("net.") for k in state):
            state = {k[len("net.") :]: v for k, v in state.items() if k.startswith("net.")}
        own = self.net.state_dict()
        mapping = class_map(source.spec.name, self.spec.name) if source.spec is not None else None
        classifier_keys = set(self.net.classifier_parameter_names())
        new_state: dict[str, torch.Tensor] = {}
        fresh: list[str] = []
        for key, current in own.items():
            value = state.get(key)
            if value is None:
                fresh.append(key)
            elif key in classifier_keys and mapping is not None and source.spec is not None:
                if value.shape[0] != source.spec.num_classes or value.shape[1:] != current.shape[1:]:
                    fresh.append(key)
                    continue
                rows = current.clone()
                for target_class, source_classes in mapping.items():
                    rows[target_class] = value[list(source_classes)].to(rows.dtype).mean(dim=0)
                new_state[key] = rows
            elif value.shape == current.shape:
                new_state[key] = value
            else:
                fresh.append(key)
        loaded = [k for k in new_state if not k.endswith("num_batches_tracked")]
        if not loaded:
            raise HVPSError(
                f"{source.description}: no weights fit this {type(self).__name__} "
                f"(net arch {self.net.arch!r}, encoder {self.net.encoder_name!r})"
            )
        self.net.load_state_dict(new_state, strict=False)
        if mapping is not None:
            unmapped = [self.spec.class_names[c] for c in range(self.spec.num_classes) if c not in mapping]
            rank_zero_info(f"{source.description}: classes starting fresh: {', '.join(unmapped) or 'none'}")
        fresh = [k for k in fresh if not k.endswith("num_batches_tracked")]
        unused = sorted(k for k in state if k not in new_state and not k.endswith("num_batches_tracked"))
        return LoadResult(fresh, unused + list(source.dropped))

