"""The RoI heads of the MOTS network: torchvision's, plus spatial attention and an embedding head.

* :class:`SpatialAttention` in the mask branch: RoI features -> 2D convs -> sigmoid
  foreground map that weights the RoI features; the mask head predicts from the weighted
  features; the map gets an auxiliary loss against the GT mask.
* :class:`EmbeddingHead`: from the (SA-weighted) RoI features, convs + pooling + FC to an
  L2-normalised appearance embedding, trained with a batch-hard triplet loss over
  identities (plus an optional identity cross-entropy).
* :class:`MOTSRoIHeads`: torchvision's ``RoIHeads`` (box branch, sampling, box and mask
  losses) with both of the above in its mask branch.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import (
    RoIHeads,
    fastrcnn_loss,
    maskrcnn_inference,
    maskrcnn_loss,
)
from torchvision.ops import box_iou

from hvps_lightning.models.mots.losses import (
    IdentityClassifier,
    batch_hard_triplet_loss,
    spatial_attention_loss,
)

#: one frame's detections: boxes, labels, scores, masks, embeddings
Detections = dict[str, Tensor]


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
            per_image = [r["boxes"].shape[0] for r in result]
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

