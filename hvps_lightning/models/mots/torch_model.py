"""MOTSNet: Mask R-CNN with temporal attention, spatial attention and an embedding head.

Built from torchvision's detection parts: a ResNet + FPN backbone (``BackboneWithFPN``), the
RPN, ``MultiScaleRoIAlign`` and the RoI heads with their losses. What torchvision lacks is
written here:

* :class:`~hvps_lightning.models.mots.attention.TemporalAttention` per FPN level fuses the
  features of a clip (target frame + context) into the target frame's features.
* :class:`SpatialAttention` in the mask branch: RoI features -> 2D convs -> sigmoid
  foreground map that weights the RoI features; the mask head predicts from the weighted
  features; the map gets an auxiliary loss against the GT mask.
* :class:`EmbeddingHead`: from the (SA-weighted) RoI features, convs + pooling + FC to an
  L2-normalised appearance embedding, trained with a batch-hard triplet loss over
  identities (plus an optional identity cross-entropy).
* :class:`BatchOnlyTransform`: the DataModule owns resizing and normalisation, so
  torchvision's ``GeneralizedRCNNTransform`` is reduced to batching; outputs are mapped
  back to each frame's original size.
* :class:`StreamingMOTS`: per-frame inference that caches the FPN features of the last
  T - 1 frames, so every frame runs the backbone once.

Module names follow torchvision's ``MaskRCNN`` (``backbone``, ``rpn``, ``roi_heads``), so its
COCO weights load key by key.

Example:
    >>> import torch
    >>> net = MOTSNet("motchallenge_step", backbone="resnet18", fpn_channels=32,
    ...               mask_head_channels=32, box_representation_size=64).eval()
    >>> with torch.no_grad():
    ...     detections = net(torch.randn(1, 3, 3, 64, 96))
    >>> sorted(detections[0])
    ['boxes', 'embeddings', 'labels', 'masks', 'scores']
"""

from __future__ import annotations

import math
from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.roi_heads import (
    RoIHeads,
    fastrcnn_loss,
    maskrcnn_inference,
    maskrcnn_loss,
)
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign, box_iou
from torchvision.ops.misc import FrozenBatchNorm2d

from hvps_lightning.errors import HVPSError
from hvps_lightning.models.mots.attention import TemporalAttention
from hvps_lightning.models.mots.losses import (
    IdentityClassifier,
    batch_hard_triplet_loss,
    spatial_attention_loss,
)
from hvps_lightning.models.mots.weights import (
    class_rows_by_name,
    download_state_dict,
    load_with_class_rows,
    read_state_file,
    upgrade_legacy_keys,
)
from hvps_lightning.structures.specs import DatasetSpec, get_spec

Backbone = Literal["resnet18", "resnet34", "resnet50", "resnet101"]
Pretrained = Literal["none", "imagenet", "coco"]
BackboneNorm = Literal["auto", "frozen", "batch"]

BACKBONES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "resnet101")
#: FPN outputs of torchvision's BackboneWithFPN (four ResNet stages + the max-pooled top level)
FPN_LEVELS: tuple[str, ...] = ("0", "1", "2", "3", "pool")
#: input sizes are padded to a multiple of the coarsest FPN stride
SIZE_DIVISIBLE = 32

Detections = dict[str, Tensor]


class BatchOnlyTransform(GeneralizedRCNNTransform):
    """torchvision's detector transform without resizing or normalising (the DataModule does both).

    It keeps what the detector needs from it: padding a batch to a multiple of 32 and, in
    :meth:`postprocess`, mapping boxes and masks from the network's input size to each
    frame's original size.
    """

    def __init__(self, size_divisible: int = SIZE_DIVISIBLE) -> None:
        super().__init__(min_size=1, max_size=1, image_mean=[0.0, 0.0, 0.0], image_std=[1.0, 1.0, 1.0],
                         size_divisible=size_divisible)  # fmt: skip

    def normalize(self, image: Tensor) -> Tensor:
        """Return ``image`` unchanged: batches arrive normalised."""
        return image

    def resize(self, image: Tensor, target: dict[str, Tensor] | None = None) -> tuple[Tensor, Any]:
        """Return ``image`` and ``target`` unchanged: batches arrive at the training size."""
        return image, target

    def padded_size(self, height: int, width: int) -> tuple[int, int]:
        """The size :meth:`pad` gives an image of ``height`` x ``width`` (anchors depend on it)."""
        step = self.size_divisible
        return math.ceil(height / step) * step, math.ceil(width / step) * step

    def pad(self, images: Tensor) -> Tensor:
        """Zero-pad (N, C, H, W) images at the bottom and right to a multiple of ``size_divisible``."""
        height, width = images.shape[-2:]
        padded_height, padded_width = self.padded_size(height, width)
        pad_h, pad_w = padded_height - height, padded_width - width
        return F.pad(images, (0, pad_w, 0, pad_h)) if pad_h or pad_w else images

    def __repr__(self) -> str:
        return f"{self.__class__.__name__}(size_divisible={self.size_divisible})"


class SpatialAttention(nn.Module):
    """Foreground map over RoI features: 2D convs -> sigmoid; the map weights the features.

    Args:
        channels: channels of the RoI features.
        hidden_channels: width of the hidden convolution(s).
        num_layers: hidden 3x3 convolutions before the 1-channel logit convolution.
    """

    def __init__(self, channels: int, hidden_channels: int = 64, num_layers: int = 1) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        width = channels
        for _ in range(num_layers):
            layers += [nn.Conv2d(width, hidden_channels, 3, padding=1), nn.ReLU(inplace=True)]
            width = hidden_channels
        self.body = nn.Sequential(*layers)
        self.logits = nn.Conv2d(width, 1, 3, padding=1)

    def forward(self, roi_features: Tensor) -> tuple[Tensor, Tensor]:
        """Return the weighted features (R, C, M, M) and the map's logits (R, 1, M, M)."""
        logits = self.logits(self.body(roi_features))
        return roi_features * torch.sigmoid(logits).to(roi_features.dtype), logits


class EmbeddingHead(nn.Module):
    """RoI features -> convs -> pooled grid -> FC -> L2-normalised appearance embedding.

    The first convolution has stride 2 (14x14 RoIs -> 7x7) to keep the head cheap next to
    the mask head; pooling to a small grid rather than to one cell keeps the coarse layout
    (upper versus lower clothing), which identities differ by.

    Args:
        in_channels: channels of the RoI features.
        embedding_dim: output dimension.
        channels: width of the convolutions.
        num_convs: number of 3x3 convolutions (>= 1).
        pool_size: side of the pooled grid.
    """

    def __init__(
        self,
        in_channels: int,
        embedding_dim: int = 128,
        channels: int = 128,
        num_convs: int = 2,
        pool_size: int = 3,
    ) -> None:
        super().__init__()
        if num_convs < 1 or embedding_dim < 1 or channels < 1 or pool_size < 1:
            raise ValueError("EmbeddingHead needs num_convs, embedding_dim, channels and pool_size >= 1")
        layers: list[nn.Module] = []
        width = in_channels
        for i in range(num_convs):
            layers += [
                nn.Conv2d(width, channels, 3, stride=2 if i == 0 else 1, padding=1),
                nn.ReLU(inplace=True),
            ]
            width = channels
        layers += [
            nn.AdaptiveAvgPool2d(pool_size),
            nn.Flatten(),
            nn.Linear(channels * pool_size**2, embedding_dim),
        ]
        self.body = nn.Sequential(*layers)
        self.embedding_dim = embedding_dim

    def forward(self, roi_features: Tensor) -> Tensor:
        """Return (R, embedding_dim) L2-normalised embeddings (float32)."""
        return F.normalize(self.body(roi_features).float(), dim=1)


class MOTSRoIHeads(RoIHeads):
    """torchvision's RoI heads with spatial attention in the mask branch and an embedding head.

    The box branch, sampling and the box and mask losses are torchvision's. The mask branch
    pools RoI features, weights them with the spatial-attention map (when ``spatial_attention``
    is set), and feeds the result to both the mask head and the embedding head. Training
    uses the positive proposals (matched to a GT object), as torchvision's mask loss does.

    Args:
        *args: torchvision ``RoIHeads`` arguments (box and mask parts).
        spatial_attention: the SA module, or None for the plain mask head.
        embedding_head: the embedding head.
        identity_classifier: optional identity cross-entropy classifier.
        triplet_margin: margin of the batch-hard triplet loss.
        embedding_iou_thresh: positive proposals train the embedding only from this IoU
            with their GT box on.
        **kwargs: torchvision ``RoIHeads`` keyword arguments.
    """

    def __init__(
        self,
        *args: Any,
        spatial_attention: SpatialAttention | None = None,
        embedding_head: EmbeddingHead,
        identity_classifier: IdentityClassifier | None = None,
        triplet_margin: float = 0.3,
        embedding_iou_thresh: float = 0.7,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self.spatial_attention = spatial_attention
        self.embedding_head = embedding_head
        self.identity_classifier = identity_classifier
        self.triplet_margin = triplet_margin
        self.embedding_iou_thresh = embedding_iou_thresh

    def forward(  # type: ignore[override]
        self,
        features: dict[str, Tensor],
        proposals: list[Tensor],
        image_shapes: list[tuple[int, int]],
        targets: list[dict[str, Tensor]] | None = None,
    ) -> tuple[list[Detections], dict[str, Tensor]]:
        """Return per-image detections (eval) or the losses (training), like torchvision's."""
        losses: dict[str, Tensor] = {}
        result: list[Detections] = []
        if self.training:
            if targets is None:
                raise ValueError("training needs targets")
            proposals, matched_idxs, labels, regression_targets = self.select_training_samples(
                proposals, targets
            )
        box_features = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(box_features)

        if self.training:
            loss_classifier, loss_box_reg = fastrcnn_loss(
                class_logits, box_regression, labels, regression_targets
            )
            losses = {"loss_classifier": loss_classifier, "loss_box_reg": loss_box_reg}
            positives = [torch.where(image_labels > 0)[0] for image_labels in labels]
            mask_proposals = [p[pos] for p, pos in zip(proposals, positives, strict=True)]
            pos_matched_idxs = [m[pos] for m, pos in zip(matched_idxs, positives, strict=True)]
        else:
            boxes, scores, det_labels = self.postprocess_detections(
                class_logits, box_regression, proposals, image_shapes
            )
            result = [
                {"boxes": b, "labels": lab, "scores": s}
                for b, lab, s in zip(boxes, det_labels, scores, strict=True)
            ]
            mask_proposals = boxes

        roi_features, attention_logits, mask_logits = self.mask_branch(features, mask_proposals, image_shapes)

        if self.training:
            assert targets is not None
            gt_masks = [t["masks"] for t in targets]
            gt_labels = [t["labels"] for t in targets]
            losses["loss_mask"] = maskrcnn_loss(
                mask_logits, mask_proposals, gt_masks, gt_labels, pos_matched_idxs
            )
            if attention_logits is not None:
                losses["loss_spatial_attention"] = spatial_attention_loss(
                    attention_logits, mask_proposals, gt_masks, pos_matched_idxs
                )
            # Loose proposals (IoU 0.5 with their GT) often hold much of a neighbour; the
            # hardest-sample mining would pick exactly those, so the embedding learns from
            # well-placed ones only.
            overlaps = torch.cat(
                [
                    box_iou(p, t["boxes"][m]).diagonal() if len(p) else p.new_zeros(0)
                    for p, t, m in zip(mask_proposals, targets, pos_matched_idxs, strict=True)
                ]
            )
            well_placed = overlaps >= self.embedding_iou_thresh
            identities = torch.cat(
                [t["identities"][m] for t, m in zip(targets, pos_matched_idxs, strict=True)]
            )[well_placed]
            embeddings = self.embedding_head(roi_features[well_placed])
            losses["loss_embedding_triplet"] = batch_hard_triplet_loss(
                embeddings, identities, self.triplet_margin
            )
            if self.identity_classifier is not None:
                losses["loss_embedding_identity"] = self.identity_classifier.loss(embeddings, identities)
        else:
            mask_probs = maskrcnn_inference(mask_logits, [r["labels"] for r in result])
            embeddings = self.embedding_head(roi_features)
            per_image = [len(r["boxes"]) for r in result]
            for r, probs, emb in zip(result, mask_probs, embeddings.split(per_image), strict=True):
                r["masks"] = probs
                r["embeddings"] = emb
        return result, losses

    def mask_branch(
        self, features: Mapping[str, Tensor], boxes: list[Tensor], image_shapes: list[tuple[int, int]]
    ) -> tuple[Tensor, Tensor | None, Tensor]:
        """RoI features of ``boxes`` (SA-weighted with SA), the SA logits (or None) and the mask logits.

        The embedding head takes the returned RoI features: ``embedding_head(roi_features)``.
        """
        roi_features = self.mask_roi_pool(dict(features), boxes, image_shapes)
        attention_logits = None
        if self.spatial_attention is not None:
            roi_features, attention_logits = self.spatial_attention(roi_features)
        return roi_features, attention_logits, self.mask_predictor(self.mask_head(roi_features))


class MOTSNet(nn.Module):
    """Mask R-CNN + temporal attention + spatial attention + embedding head (HVPS, section 3.1).

    Input: a batch of clips ``frames`` (B, T, 3, H, W), normalised by the DataModule, with
    targets for frame ``target_index`` (T - 1 by default: the target and its predecessors).
    In training mode :meth:`forward` returns the losses (unweighted, torchvision's names plus
    ``loss_spatial_attention``, ``loss_embedding_triplet`` and, with ``num_identities``,
    ``loss_embedding_identity``); in eval mode it returns one dict per clip with ``boxes``
    (N, 4) in original-image pixels, ``scores``, ``labels`` (spec semantic ids),
    ``masks`` (N, 1, H0, W0) probabilities and ``embeddings`` (N, D).

    Args:
        dataset: dataset spec whose thing classes the detector predicts (contiguous detector
            labels 1..K internally, spec semantic ids outside).
        backbone: ResNet depth.
        trainable_layers: ResNet stages trained, counted from the top (0-5; 5 = all).
        fpn_channels: FPN width (256 to load COCO weights).
        backbone_norm: ``frozen`` (FrozenBatchNorm2d), ``batch`` (BatchNorm2d) or ``auto``
            (frozen when starting from pretrained weights or a checkpoint, as torchvision does).
        pretrained: ``none``; ``imagenet`` (backbone); ``coco`` (torchvision's COCO Mask R-CNN,
            resnet50 only; class rows mapped by name, e.g. person -> person). Both download.
        init_checkpoint: local state dict or Lightning checkpoint to start from (loaded
            with ``torch.load(weights_only=True)``; COCO files with 91 classes are mapped by name).
        load_weights: False builds the network only; :meth:`load_initial_weights` then
            applies ``pretrained``/``init_checkpoint`` later (the LightningModule does so in
            ``setup`` so that loading a trained checkpoint never downloads anything).
        num_frames: clip length T the network is built for (streaming keeps T - 1 frames).
        temporal_attention: fuse the clip's features with TA (False: target-frame features).
        spatial_attention: SA in the mask branch (False: plain mask head).
        temporal_attention_channels: width of the TA 3D convolutions.
        temporal_attention_layers: 3x3x3 convolutions of TA before its logits.
        context_grad: backpropagate through the context frames' backbone pass (False: they
            run without grad, which keeps a TA training step near a plain one).
        anchor_sizes: one anchor size per FPN level (5 values).
        aspect_ratios: anchor aspect ratios (height / width).
        rpn_pre_nms_top_n_train: RPN proposals kept per level before NMS in training.
        rpn_pre_nms_top_n_test: the same at inference.
        rpn_post_nms_top_n_train: RPN proposals kept after NMS in training.
        rpn_post_nms_top_n_test: the same at inference.
        rpn_batch_size_per_image: anchors sampled per image for the RPN loss.
        box_batch_size_per_image: proposals sampled per image for the RoI heads.
        box_positive_fraction: fraction of positives among them.
        box_score_thresh: minimum score of a detection.
        box_nms_thresh: NMS IoU threshold of the detections.
        box_detections_per_img: maximum detections per frame.
        box_representation_size: width of the box head's two FC layers.
        mask_head_layers: 3x3 convolutions of the mask head.
        mask_head_channels: their width.
        spatial_attention_channels: width of the SA hidden convolution.
        embedding_dim: dimension of the appearance embedding.
        embedding_channels: width of the embedding head's convolutions.
        triplet_margin: margin of the batch-hard triplet loss.
        embedding_iou_thresh: minimum IoU of a positive proposal with its GT box for the
            embedding losses (0.5 would use every positive).
        num_identities: > 0 adds the identity cross-entropy over that many identities
            (identities outside the range are ignored by it).
    """

    def __init__(
        self,
        dataset: str | DatasetSpec = "motchallenge_step",
        backbone: Backbone = "resnet50",
        trainable_layers: int = 3,
        fpn_channels: int = 256,
        backbone_norm: BackboneNorm = "auto",
        pretrained: Pretrained = "none",
        init_checkpoint: str | None = None,
        load_weights: bool = True,
        num_frames: int = 3,
        temporal_attention: bool = True,
        spatial_attention: bool = True,
        temporal_attention_channels: int = 32,
        temporal_attention_layers: int = 1,
        context_grad: bool = False,
        anchor_sizes: Sequence[int] = (32, 64, 128, 256, 512),
        aspect_ratios: Sequence[float] = (0.5, 1.0, 2.0),
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
    ) -> None:
        super().__init__()
        self.spec = get_spec(dataset)
        if backbone not in BACKBONES:
            raise HVPSError(f"backbone: {backbone!r} is not one of {', '.join(BACKBONES)}")
        if not 0 <= trainable_layers <= 5:
            raise HVPSError(f"trainable_layers: must be in 0..5, got {trainable_layers}")
        if pretrained not in ("none", "imagenet", "coco"):
            raise HVPSError(f"pretrained: {pretrained!r} is not one of none, imagenet, coco")
        if pretrained == "coco" and backbone != "resnet50":
            raise HVPSError(
                f"pretrained='coco': torchvision's COCO Mask R-CNN is a resnet50, got backbone={backbone!r}"
            )
        if pretrained == "coco" and fpn_channels != 256:
            raise HVPSError(f"pretrained='coco' needs fpn_channels=256, got {fpn_channels}")
        if backbone_norm not in ("auto", "frozen", "batch"):
            raise HVPSError(f"backbone_norm: {backbone_norm!r} is not one of auto, frozen, batch")
        if num_frames < 1:
            raise HVPSError(f"num_frames: must be >= 1, got {num_frames}")
        if len(anchor_sizes) != len(FPN_LEVELS):
            raise HVPSError(
                f"anchor_sizes: need one size per FPN level ({len(FPN_LEVELS)}), got {list(anchor_sizes)}"
            )
        if embedding_dim < 1:
            raise HVPSError(f"embedding_dim: must be >= 1, got {embedding_dim}")

        self.thing_ids: tuple[int, ...] = tuple(self.spec.thing_ids)
        self.thing_names: tuple[str, ...] = tuple(self.spec.class_names[i] for i in self.thing_ids)
        self.num_classes = len(self.thing_ids) + 1  # + background
        self.num_frames = num_frames
        self.context_grad = context_grad
        self.embedding_dim = embedding_dim
        self.pretrained = pretrained
        self.backbone_name = backbone
        self.init_checkpoint = init_checkpoint
        # spec semantic id -> detector label (0: not a thing); detector label -> spec id
        lut = torch.zeros(max(256, max(self.thing_ids) + 1), dtype=torch.int64)
        lut[torch.tensor(self.thing_ids)] = torch.arange(1, self.num_classes)
        self.register_buffer("semantic_to_label", lut, persistent=False)
        self.register_buffer("label_to_semantic", torch.tensor((-1, *self.thing_ids)), persistent=False)

        frozen = backbone_norm == "frozen" or (
            backbone_norm == "auto" and (pretrained != "none" or init_checkpoint is not None)
        )
        self.transform = BatchOnlyTransform()
        self.backbone = build_resnet_fpn(backbone, trainable_layers, fpn_channels, frozen)

        anchor_generator = AnchorGenerator(
            tuple((int(s),) for s in anchor_sizes),
            (tuple(float(r) for r in aspect_ratios),) * len(anchor_sizes),
        )
        self.rpn = RegionProposalNetwork(
            anchor_generator,
            RPNHead(fpn_channels, anchor_generator.num_anchors_per_location()[0]),
            fg_iou_thresh=0.7,
            bg_iou_thresh=0.3,
            batch_size_per_image=rpn_batch_size_per_image,
            positive_fraction=0.5,
            pre_nms_top_n={"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
            post_nms_top_n={"training": rpn_post_nms_top_n_train, "testing": rpn_post_nms_top_n_test},
            nms_thresh=0.7,
        )
        roi_levels = list(FPN_LEVELS[:4])
        mask_width = mask_head_channels if mask_head_layers > 0 else fpn_channels
        self.roi_heads = MOTSRoIHeads(
            MultiScaleRoIAlign(roi_levels, output_size=7, sampling_ratio=2),
            TwoMLPHead(fpn_channels * 7 * 7, box_representation_size),
            FastRCNNPredictor(box_representation_size, self.num_classes),
            fg_iou_thresh=0.5,
            bg_iou_thresh=0.5,
            batch_size_per_image=box_batch_size_per_image,
            positive_fraction=box_positive_fraction,
            bbox_reg_weights=None,
            score_thresh=box_score_thresh,
            nms_thresh=box_nms_thresh,
            detections_per_img=box_detections_per_img,
            mask_roi_pool=MultiScaleRoIAlign(roi_levels, output_size=14, sampling_ratio=2),
            mask_head=MaskRCNNHeads(fpn_channels, (mask_head_channels,) * mask_head_layers, 1),
            mask_predictor=MaskRCNNPredictor(mask_width, mask_width, self.num_classes),
            spatial_attention=SpatialAttention(fpn_channels, spatial_attention_channels)
            if spatial_attention
            else None,
            embedding_head=EmbeddingHead(fpn_channels, embedding_dim, embedding_channels),
            identity_classifier=IdentityClassifier(embedding_dim, num_identities)
            if num_identities > 0
            else None,
            triplet_margin=triplet_margin,
            embedding_iou_thresh=embedding_iou_thresh,
        )
        self.temporal_attention: nn.ModuleDict | None = None
        if temporal_attention:
            self.temporal_attention = nn.ModuleDict(
                {
                    level: TemporalAttention(
                        fpn_channels, temporal_attention_channels, temporal_attention_layers
                    )
                    for level in FPN_LEVELS
                }
            )
        self.fresh_keys: list[str] = []
        if load_weights:
            self.load_initial_weights()

    # Weights ---------------------------------------------------------------------------------
    def load_initial_weights(self) -> list[str]:
        """Apply ``pretrained`` then ``init_checkpoint``; return the keys they left at initial values.

        Raises:
            HVPSError: offline use of a download option, or an unreadable ``init_checkpoint``.
        """
        fresh = [k for k in self.state_dict() if not k.endswith("num_batches_tracked")]
        if self.pretrained == "imagenet":
            weights = torchvision.models.get_model_weights(self.backbone_name)["IMAGENET1K_V1"]
            state = download_state_dict(weights, "pretrained='imagenet'")
            loaded = {f"backbone.body.{k}": v for k, v in state.items() if not k.startswith("fc.")}
            fresh = load_with_class_rows(self, loaded, None)
        elif self.pretrained == "coco":
            weights = torchvision.models.detection.MaskRCNN_ResNet50_FPN_Weights.COCO_V1
            state = download_state_dict(weights, "pretrained='coco'")
            fresh = self.load_foreign_state(state)
        if self.init_checkpoint is not None:
            fresh = self.load_foreign_state(read_state_file(self.init_checkpoint))
        self.fresh_keys = fresh
        return fresh

    def load_foreign_state(self, state: Mapping[str, Tensor]) -> list[str]:
        """Load a MOTSNet or torchvision Mask R-CNN state dict; return keys left new.

        A 91-row classifier is torchvision's COCO model: its rows are mapped by class name
        (person -> person, car -> car, ...). A classifier with our number of rows is copied
        as is; any other leaves the class-specific layers new.
        """
        state = upgrade_legacy_keys(state)
        classifier = state.get("roi_heads.box_predictor.cls_score.weight")
        rows: dict[int, int | None] | None = None
        if classifier is not None and classifier.shape[0] == 91 and self.num_classes != 91:
            categories = torchvision.models.detection.MaskRCNN_ResNet50_FPN_Weights.COCO_V1.meta["categories"]
            rows = class_rows_by_name(self.thing_names, categories)
        return load_with_class_rows(self, state, rows)

    # Features --------------------------------------------------------------------------------
    def frame_features(self, images: Tensor) -> OrderedDict[str, Tensor]:
        """Backbone + FPN on (N, 3, H, W) images (padded to a multiple of 32 here)."""
        return self.backbone(self.transform.pad(images))

    def fuse(
        self, clip_features: Mapping[str, Sequence[Tensor]], target_index: int
    ) -> OrderedDict[str, Tensor]:
        """Fuse per-level clip features (T maps (B, C, h, w) each) into the target frame's (B, C, h, w)."""
        if self.temporal_attention is None:
            return OrderedDict((level, frames[target_index]) for level, frames in clip_features.items())
        return OrderedDict(
            (level, self.temporal_attention[level](frames, target_index))
            for level, frames in clip_features.items()
        )

    def clip_features(self, frames: Tensor, target_index: int) -> OrderedDict[str, Tensor]:
        """The features RPN and RoI heads use for the target frame of each clip (B, T, 3, H, W)."""
        batch, num_frames = frames.shape[:2]
        if self.temporal_attention is None or num_frames == 1:
            return self.frame_features(frames[:, target_index])
        if self.training and not self.context_grad and torch.is_grad_enabled():
            target = self.frame_features(frames[:, target_index])
            context_index = [t for t in range(num_frames) if t != target_index]
            with torch.no_grad():
                context = self.frame_features(frames[:, context_index].flatten(0, 1))
            clip: OrderedDict[str, list[Tensor]] = OrderedDict()
            for level, feats in target.items():
                ctx = list(context[level].unflatten(0, (batch, num_frames - 1)).unbind(1))
                clip[level] = [*ctx[:target_index], feats, *ctx[target_index:]]
        else:
            feats = self.frame_features(frames.flatten(0, 1))
            clip = OrderedDict(
                (level, list(f.unflatten(0, (batch, num_frames)).unbind(1))) for level, f in feats.items()
            )
        return self.fuse(clip, target_index)

    # Detection -------------------------------------------------------------------------------
    def forward(
        self,
        frames: Tensor,
        targets: list[dict[str, Tensor]] | None = None,
        target_index: int | None = None,
        orig_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> dict[str, Tensor] | list[Detections]:
        """Losses (training) or detections (eval) for the target frame of each clip.

        Args:
            frames: (B, T, 3, H, W) normalised clips, or (B, 3, H, W) single frames.
            targets: per clip, the target frame's ``boxes``, ``labels`` (spec semantic ids),
                ``masks`` and ``identities`` (training only).
            target_index: index in T of the target frame (default T - 1).
            orig_sizes: per clip, the (H0, W0) to map detections to (default: (H, W)).
        """
        if frames.dim() == 4:
            frames = frames[:, None]
        if frames.dim() != 5 or frames.shape[2] != 3:
            raise ValueError(f"frames must have shape (B, T, 3, H, W), got {tuple(frames.shape)}")
        num_frames = frames.shape[1]
        target_index = num_frames - 1 if target_index is None else int(target_index)
        if not 0 <= target_index < num_frames:
            raise ValueError(f"target_index {target_index} outside a clip of {num_frames} frames")
        features = self.clip_features(frames, target_index)
        image_size = (int(frames.shape[-2]), int(frames.shape[-1]))
        return self.detect(features, image_size, targets, orig_sizes)

    def detect(
        self,
        features: Mapping[str, Tensor],
        image_size: tuple[int, int],
        targets: list[dict[str, Tensor]] | None = None,
        orig_sizes: Sequence[tuple[int, int]] | None = None,
    ) -> dict[str, Tensor] | list[Detections]:
        """RPN + RoI heads on (fused) target-frame features of images of ``image_size``."""
        first = next(iter(features.values()))
        batch = first.shape[0]
        padded = self.transform.padded_size(*image_size)
        # The anchor generator reads only the padded shape, dtype and device of the images.
        images = ImageList(first.new_zeros(()).expand(batch, 3, *padded), [image_size] * batch)
        if self.training:
            if targets is None:
                raise ValueError("MOTSNet in training mode needs targets")
            targets = [self.prepare_target(t) for t in targets]
        proposals, rpn_losses = self.rpn(images, dict(features), targets)
        detections, roi_losses = self.roi_heads(features, proposals, images.image_sizes, targets)
        if self.training:
            return {**rpn_losses, **roi_losses}
        sizes = [(int(h), int(w)) for h, w in orig_sizes] if orig_sizes is not None else [image_size] * batch
        detections = self.transform.postprocess(detections, images.image_sizes, sizes)
        for det in detections:
            det["labels"] = self.label_to_semantic[det["labels"]]
        return detections

    def prepare_target(self, target: Mapping[str, Tensor]) -> dict[str, Tensor]:
        """Map spec semantic labels to detector labels; drop non-things and degenerate boxes."""
        missing = [k for k in ("boxes", "labels", "masks", "identities") if k not in target]
        if missing:
            raise ValueError(f"a training target lacks {', '.join(missing)}")
        labels = target["labels"].long()
        valid = (labels >= 0) & (labels < len(self.semantic_to_label))
        detector_labels = torch.zeros_like(labels)
        detector_labels[valid] = self.semantic_to_label[labels[valid]]
        boxes = target["boxes"].float()
        keep = (detector_labels > 0) & (boxes[:, 2] > boxes[:, 0]) & (boxes[:, 3] > boxes[:, 1])
        return {
            "boxes": boxes[keep],
            "labels": detector_labels[keep],
            "masks": target["masks"][keep],
            "identities": target["identities"].long()[keep],
        }

    # Streaming -------------------------------------------------------------------------------
    def stream(
        self,
        frames: Iterable[Tensor],
        orig_size: tuple[int, int] | None = None,
        target_index: int | None = None,
    ) -> Iterator[Detections]:
        """Detections of each frame of a sequence, in order, with one backbone pass per frame.

        See :class:`StreamingMOTS` (a centred window yields each frame's detections once its
        following frames have arrived, the last ones at the end of ``frames``).
        """
        streamer = StreamingMOTS(self, target_index=target_index)
        for frame in frames:
            for _, det in streamer.push(frame, orig_size):
                yield det
        for _, det in streamer.flush():
            yield det


class StreamingMOTS:
    """Frame-by-frame inference that keeps the FPN features of the last T - 1 frames.

    Each :meth:`push` runs the backbone once on the new frame and fuses the cached features
    with temporal attention. At a sequence start the window is padded by repeating the first
    frame (as the clip dataset does); with a centred window (``target_index < T - 1``) a
    frame's detections come out once its following frames have been pushed, and
    :meth:`flush` pads the end by repeating the last frame. The detections equal clip
    inference on the same windows (to floating-point tolerance).

    Args:
        net: the network, in eval mode.
        target_index: index of the target frame in the window (default T - 1: causal).

    Example:
        >>> import torch
        >>> net = MOTSNet("motchallenge_step", backbone="resnet18", fpn_channels=32,
        ...               mask_head_channels=32, box_representation_size=64).eval()
        >>> streamer = StreamingMOTS(net)
        >>> [len(streamer.push(torch.randn(3, 64, 96))) for _ in range(3)]
        [1, 1, 1]
    """

    def __init__(self, net: MOTSNet, target_index: int | None = None) -> None:
        self.net = net
        self.num_frames = net.num_frames if net.temporal_attention is not None else 1
        self.target_index = self.num_frames - 1 if target_index is None else int(target_index)
        if not 0 <= self.target_index < self.num_frames:
            raise ValueError(f"target_index {self.target_index} outside a window of {self.num_frames} frames")
        self._features: deque[OrderedDict[str, Tensor]] = deque(maxlen=self.num_frames)
        self._pending: deque[tuple[Any, tuple[int, int] | None]] = deque()
        self._image_size: tuple[int, int] = (0, 0)

    def reset(self) -> None:
        """Forget the cached frames (call between sequences; :meth:`flush` does it too)."""
        self._features.clear()
        self._pending.clear()

    @torch.no_grad()
    def seed(self, frames: Tensor) -> None:
        """Start a sequence from real preceding frames (k, 3, H, W) instead of padding.

        ``k`` must be ``target_index`` (the frames before the next pushed one in the window).
        """
        self.reset()
        if frames.shape[0] != self.target_index:
            raise ValueError(
                f"seed needs {self.target_index} frames before the target, got {frames.shape[0]}"
            )
        if frames.shape[0] == 0:
            return
        features = self.net.frame_features(frames)
        for i in range(frames.shape[0]):
            self._features.append(OrderedDict((level, f[i : i + 1]) for level, f in features.items()))

    @torch.no_grad()
    def push(
        self, frame: Tensor, orig_size: tuple[int, int] | None = None, meta: Any = None
    ) -> list[tuple[Any, Detections]]:
        """Add a normalised frame (3, H, W); return the ``(meta, detections)`` now complete."""
        if frame.dim() == 3:
            frame = frame[None]
        image_size = (int(frame.shape[-2]), int(frame.shape[-1]))
        return self.push_features(self.net.frame_features(frame), image_size, orig_size, meta)

    @torch.no_grad()
    def push_features(
        self,
        features: Mapping[str, Tensor],
        image_size: tuple[int, int],
        orig_size: tuple[int, int] | None = None,
        meta: Any = None,
    ) -> list[tuple[Any, Detections]]:
        """Like :meth:`push` for a frame whose FPN features (1, C, h, w per level) are known."""
        if self.net.training:
            raise RuntimeError("StreamingMOTS needs the network in eval mode (call net.eval())")
        features = OrderedDict(features)
        self._image_size = image_size
        if not self._features:
            self._features.extend([features] * self.target_index)
        self._features.append(features)
        self._pending.append((meta, orig_size))
        return [self._emit()] if len(self._features) == self.num_frames else []

    @torch.no_grad()
    def flush(self) -> list[tuple[Any, Detections]]:
        """Emit the frames still waiting for successors (centred window), then reset."""
        out = []
        while self._pending and self._features:
            self._features.append(self._features[-1])
            out.append(self._emit())
        self.reset()
        return out

    def _emit(self) -> tuple[Any, Detections]:
        meta, orig_size = self._pending.popleft()
        clip = OrderedDict((level, [f[level] for f in self._features]) for level in self._features[-1])
        fused = self.net.fuse(clip, self.target_index)
        sizes = None if orig_size is None else [orig_size]
        detections = self.net.detect(fused, self._image_size, None, sizes)
        assert isinstance(detections, list)
        return meta, detections[0]


def build_resnet_fpn(
    name: str, trainable_layers: int, out_channels: int, frozen_norm: bool
) -> BackboneWithFPN:
    """Torchvision's ResNet + FPN with a configurable FPN width (``resnet_fpn_backbone`` fixes 256)."""
    norm_layer = FrozenBatchNorm2d if frozen_norm else nn.BatchNorm2d
    resnet = getattr(torchvision.models, name)(weights=None, norm_layer=norm_layer)
    # Same freezing rule as torchvision's _resnet_fpn_extractor.
    train = ["layer4", "layer3", "layer2", "layer1", "conv1"][:trainable_layers]
    if trainable_layers == 5:
        train.append("bn1")
    for param_name, param in resnet.named_parameters():
        if not any(param_name.startswith(layer) for layer in train):
            param.requires_grad_(False)
    stage2 = resnet.inplanes // 8
    return BackboneWithFPN(
        resnet,
        return_layers={f"layer{i}": str(i - 1) for i in range(1, 5)},
        in_channels_list=[stage2 * 2 ** (i - 1) for i in range(1, 5)],
        out_channels=out_channels,
    )
