"""MOTSNet: Mask R-CNN with temporal attention, spatial attention and an embedding head.

Built from torchvision's detection parts: a ResNet + FPN backbone (``BackboneWithFPN``), the
RPN, ``MultiScaleRoIAlign`` and the RoI heads with their losses, in either of torchvision's
two Mask R-CNN architectures (``detector``): ``v1`` (``maskrcnn_resnet50_fpn``) or ``v2``
(``maskrcnn_resnet50_fpn_v2``: BatchNorm in the FPN and the heads, a four-convolution box
head, a two-convolution RPN head). What torchvision lacks is written here or beside it:

* :class:`~hvps_lightning.models.mots.TemporalAttention` per FPN level fuses the features of
  a clip (target frame + context) into the target frame's features.
* spatial attention and the embedding head in the RoI heads (:mod:`.heads`).
* :class:`BatchOnlyTransform`: the DataModule owns resizing and normalisation, so
  torchvision's ``GeneralizedRCNNTransform`` is reduced to batching; outputs are mapped
  back to each frame's original size.
* the pieces streaming inference over a sequence uses (:mod:`.streaming`).

Building the network loads no weights; the task's start-weights loader does
(:mod:`.weights`). Module names follow torchvision's ``MaskRCNN`` (``backbone``, ``rpn``,
``roi_heads``), so its COCO weights load key by key.

Example:
    >>> import torch
    >>> net = MOTSNet(thing_ids=(4,), backbone="resnet18", fpn_channels=32,
    ...               mask_head_channels=32, box_representation_size=64).eval()
    >>> with torch.no_grad():
    ...     detections = net(torch.randn(1, 3, 3, 64, 96))
    >>> sorted(detections[0])
    ['boxes', 'embeddings', 'labels', 'masks', 'scores']
"""

from __future__ import annotations

import math
from collections import OrderedDict
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch
import torch.nn.functional as F
import torchvision
from torch import Tensor, nn
from torchvision.models.detection.anchor_utils import AnchorGenerator
from torchvision.models.detection.backbone_utils import BackboneWithFPN
from torchvision.models.detection.faster_rcnn import FastRCNNConvFCHead, FastRCNNPredictor, TwoMLPHead
from torchvision.models.detection.image_list import ImageList
from torchvision.models.detection.mask_rcnn import MaskRCNNHeads, MaskRCNNPredictor
from torchvision.models.detection.rpn import RegionProposalNetwork, RPNHead
from torchvision.models.detection.transform import GeneralizedRCNNTransform
from torchvision.ops import MultiScaleRoIAlign
from torchvision.ops.misc import FrozenBatchNorm2d

from hvps_lightning.errors import HVPSError
from hvps_lightning.models.mots.attention import TemporalAttention
from hvps_lightning.models.mots.heads import Detections, EmbeddingHead, MOTSRoIHeads, SpatialAttention
from hvps_lightning.models.mots.losses import IdentityClassifier
from hvps_lightning.models.net_config import constructor_arguments

Backbone = Literal["resnet18", "resnet34", "resnet50", "resnet101"]
BackboneNorm = Literal["auto", "frozen", "batch"]
Detector = Literal["v1", "v2"]

BACKBONES: tuple[str, ...] = ("resnet18", "resnet34", "resnet50", "resnet101")
DETECTORS: tuple[str, ...] = ("v1", "v2")
#: FPN outputs of torchvision's BackboneWithFPN (four ResNet stages + the max-pooled top level)
FPN_LEVELS: tuple[str, ...] = ("0", "1", "2", "3", "pool")
#: input sizes are padded to a multiple of the coarsest FPN stride
SIZE_DIVISIBLE = 32
#: convolutions of the v2 box head (torchvision's maskrcnn_resnet50_fpn_v2: four, FPN-wide)
V2_BOX_HEAD_CONVS = 4


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


class MOTSNet(nn.Module):
    """Mask R-CNN + temporal attention + spatial attention + embedding head (HVPS, section 3.1).

    Input: a batch of clips ``frames`` (B, T, 3, H, W), normalised by the DataModule, with
    targets for frame ``target_index`` (T - 1 by default: the target and its predecessors).
    In training mode :meth:`forward` returns the losses (unweighted, torchvision's names plus
    ``loss_spatial_attention``, ``loss_embedding_triplet`` and, with ``num_identities``,
    ``loss_embedding_identity``); in eval mode it returns one dict per clip with ``boxes``
    (N, 4) in original-image pixels, ``scores``, ``labels`` (semantic ids, from ``thing_ids``),
    ``masks`` (N, 1, H0, W0) probabilities and ``embeddings`` (N, D).

    Args:
        thing_ids: the semantic class ids the detector predicts (the dataset spec's things; the
            CLI links them from the DataModule). Detector labels are 1..K inside, these ids outside.
        detector: torchvision's Mask R-CNN architecture, ``v1`` or ``v2`` (see the module docstring);
            each loads the COCO weights of its own layout.
        backbone: ResNet depth.
        trainable_layers: ResNet stages trained, counted from the top (0-5; 5 = all).
        fpn_channels: FPN width (256 to load COCO weights).
        backbone_norm: ResNet norm layers: ``frozen`` (FrozenBatchNorm2d), ``batch``
            (BatchNorm2d) or ``auto`` (BatchNorm2d, frozen by the task when it starts from
            weights: pretrained, a checkpoint or a previous stage, as torchvision does).
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
        box_representation_size: width of the box head's FC layers (two in v1, one in v2).
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
        thing_ids: tuple[int, ...],
        detector: Detector = "v1",
        backbone: Backbone = "resnet50",
        trainable_layers: int = 3,
        fpn_channels: int = 256,
        backbone_norm: BackboneNorm = "auto",
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
    ) -> None:
        super().__init__()
        self.init_args = constructor_arguments()
        things = tuple(int(t) for t in thing_ids)
        if not things or len(set(things)) != len(things) or min(things) < 0:
            raise HVPSError(f"thing_ids: need distinct class ids >= 0, got {list(thing_ids)}")
        if detector not in DETECTORS:
            raise HVPSError(f"detector: {detector!r} is not one of {', '.join(DETECTORS)}")
        if backbone not in BACKBONES:
            raise HVPSError(f"backbone: {backbone!r} is not one of {', '.join(BACKBONES)}")
        if not 0 <= trainable_layers <= 5:
            raise HVPSError(f"trainable_layers: must be in 0..5, got {trainable_layers}")
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

        self.thing_ids: tuple[int, ...] = things
        self.num_classes = len(things) + 1  # + background
        self.detector = detector
        self.backbone_name = backbone
        self.backbone_norm = backbone_norm
        self.fpn_channels = fpn_channels
        self.num_frames = num_frames
        self.context_grad = context_grad
        self.embedding_dim = embedding_dim
        # semantic id -> detector label (0: not a thing); detector label -> semantic id
        lut = torch.zeros(max(256, max(things) + 1), dtype=torch.int64)
        lut[torch.tensor(things)] = torch.arange(1, self.num_classes)
        self.register_buffer("semantic_to_label", lut, persistent=False)
        self.register_buffer("label_to_semantic", torch.tensor((-1, *things)), persistent=False)

        v2 = detector == "v2"
        # torchvision's v2 puts BatchNorm in the FPN and the heads (its v1 has none there).
        head_norm = nn.BatchNorm2d if v2 else None
        self.transform = BatchOnlyTransform()
        self.backbone = build_resnet_fpn(
            backbone, trainable_layers, fpn_channels, backbone_norm == "frozen", fpn_norm=head_norm
        )
        anchor_generator = AnchorGenerator(
            tuple((int(s),) for s in anchor_sizes),
            (tuple(float(r) for r in aspect_ratios),) * len(anchor_sizes),
        )
        self.rpn = RegionProposalNetwork(
            anchor_generator,
            RPNHead(fpn_channels, anchor_generator.num_anchors_per_location()[0], conv_depth=2 if v2 else 1),
            fg_iou_thresh=0.7,
            bg_iou_thresh=0.3,
            batch_size_per_image=rpn_batch_size_per_image,
            positive_fraction=0.5,
            pre_nms_top_n={"training": rpn_pre_nms_top_n_train, "testing": rpn_pre_nms_top_n_test},
            post_nms_top_n={"training": rpn_post_nms_top_n_train, "testing": rpn_post_nms_top_n_test},
            nms_thresh=0.7,
        )
        roi_levels = list(FPN_LEVELS[:4])
        if v2:
            box_head: nn.Module = FastRCNNConvFCHead(
                (fpn_channels, 7, 7), [fpn_channels] * V2_BOX_HEAD_CONVS, [box_representation_size],
                norm_layer=nn.BatchNorm2d,
            )  # fmt: skip
        else:
            box_head = TwoMLPHead(fpn_channels * 7 * 7, box_representation_size)
        mask_width = mask_head_channels if mask_head_layers > 0 else fpn_channels
        self.roi_heads = MOTSRoIHeads(
            MultiScaleRoIAlign(roi_levels, output_size=7, sampling_ratio=2),
            box_head,
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
            mask_head=MaskRCNNHeads(fpn_channels, (mask_head_channels,) * mask_head_layers, 1, head_norm),
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

    def freeze_backbone_norm(self) -> None:
        """Replace the ResNet's BatchNorm2d by FrozenBatchNorm2d with the same statistics.

        What ``backbone_norm: auto`` does when the task starts from weights; a no-op when they
        are frozen already.
        """
        _freeze_batch_norms(self.backbone.body)

    # Features --------------------------------------------------------------------------------
    def frame_features(self, images: Tensor) -> OrderedDict[str, Tensor]:
        """Backbone + FPN on (N, 3, H, W) images (padded to a multiple of 32 here)."""
        return self.backbone(self.transform.pad(images))

    def reduce_features(self, features: Mapping[str, Tensor]) -> OrderedDict[str, Tensor] | None:
        """Per level, what temporal attention computes from these frames' features alone (None without TA).

        See :meth:`TemporalAttention.reduce_frame`; streaming keeps it per frame.
        """
        if self.temporal_attention is None:
            return None
        attention = self.temporal_attention
        return OrderedDict((level, attention[level].reduce_frame(f)) for level, f in features.items())

    def fuse(
        self,
        clip_features: Mapping[str, Sequence[Tensor]],
        target_index: int,
        reduced: Mapping[str, Sequence[Tensor]] | None = None,
    ) -> OrderedDict[str, Tensor]:
        """Fuse per-level clip features (T maps (B, C, h, w) each) into the target frame's (B, C, h, w).

        ``reduced``: per level, the T frames' :meth:`reduce_features` when the caller keeps them.
        """
        if self.temporal_attention is None:
            return OrderedDict((level, frames[target_index]) for level, frames in clip_features.items())
        attention = self.temporal_attention
        return OrderedDict(
            (level, attention[level](frames, target_index, None if reduced is None else reduced[level]))
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
            targets: per clip, the target frame's ``boxes``, ``labels`` (semantic ids),
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
        """Map semantic labels to detector labels; drop non-things and degenerate boxes."""
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


def build_resnet_fpn(
    name: str,
    trainable_layers: int,
    out_channels: int,
    frozen_norm: bool,
    fpn_norm: type[nn.Module] | None = None,
) -> BackboneWithFPN:
    """Torchvision's ResNet + FPN with a configurable FPN width (``resnet_fpn_backbone`` fixes 256).

    Args:
        name: the torchvision ResNet.
        trainable_layers: ResNet stages trained, from the top (torchvision's freezing rule).
        out_channels: FPN width.
        frozen_norm: FrozenBatchNorm2d in the ResNet (else BatchNorm2d).
        fpn_norm: norm layer of the FPN convolutions (None as in Mask R-CNN v1, BatchNorm2d in v2).
    """
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
        norm_layer=fpn_norm,
    )


def _freeze_batch_norms(module: nn.Module) -> None:
    for name, child in module.named_children():
        if isinstance(child, nn.BatchNorm2d):
            frozen = FrozenBatchNorm2d(child.num_features, eps=child.eps)
            for key in ("weight", "bias", "running_mean", "running_var"):
                getattr(frozen, key).copy_(getattr(child, key).detach())
            setattr(module, name, frozen.to(child.weight.device))
        else:
            _freeze_batch_norms(child)
