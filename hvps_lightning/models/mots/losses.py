"""Losses of the MOTS network that torchvision does not have.

* :func:`batch_hard_triplet_loss` (Hermans et al., 2017): for every anchor embedding, the
  farthest embedding of the same identity and the nearest of another identity.
* :class:`IdentityClassifier`: the optional identity cross-entropy on the embeddings
  (a cosine classifier, since the embeddings are L2-normalised).
* :func:`spatial_attention_loss`: the spatial-attention map against the GT mask cropped to
  each proposal box.

The detector losses (RPN, box, mask) are torchvision's.

Example:
    >>> import torch
    >>> embeddings = torch.nn.functional.normalize(torch.randn(6, 4), dim=1)
    >>> identities = torch.tensor([0, 0, 1, 1, 2, 2])
    >>> float(batch_hard_triplet_loss(embeddings, identities, margin=0.3)) >= 0
    True
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.models.detection.roi_heads import project_masks_on_boxes


def batch_hard_triplet_loss(embeddings: Tensor, identities: Tensor, margin: float = 0.3) -> Tensor:
    """Batch-hard triplet loss over ``embeddings`` (N, D) with identity labels (N,).

    Anchors without a positive (their identity occurs once) or without a negative (one
    identity in the batch) do not count; when no anchor counts, the loss is a zero that
    still depends on ``embeddings`` (so DDP sees every parameter used).

    Args:
        embeddings: (N, D) embeddings (computed in float32 here whatever their dtype).
        identities: (N,) integer identities.
        margin: the triplet margin.

    Returns:
        The mean hinge ``max(0, d(a, p_hardest) - d(a, n_hardest) + margin)`` over anchors.
    """
    if embeddings.shape[0] != identities.shape[0]:
        raise ValueError(f"{embeddings.shape[0]} embeddings but {identities.shape[0]} identities")
    embeddings = embeddings.float()
    if embeddings.shape[0] < 2:
        return embeddings.sum() * 0.0
    # Squared distances from the Gram matrix, clamped: sqrt(0) has an infinite gradient.
    gram = embeddings @ embeddings.T
    squared_norms = gram.diagonal()
    distances = (squared_norms[:, None] + squared_norms[None, :] - 2 * gram).clamp_min(1e-12).sqrt()
    same = identities[:, None] == identities[None, :]
    eye = torch.eye(len(identities), dtype=torch.bool, device=identities.device)
    positives = same & ~eye
    negatives = ~same
    valid = positives.any(dim=1) & negatives.any(dim=1)
    if not valid.any():
        return embeddings.sum() * 0.0
    hardest_positive = distances.masked_fill(~positives, float("-inf")).amax(dim=1)
    hardest_negative = distances.masked_fill(~negatives, float("inf")).amin(dim=1)
    hinge = F.relu(hardest_positive - hardest_negative + margin)
    return hinge[valid].mean()


class IdentityClassifier(nn.Module):
    """Cosine classifier over ``num_identities`` identities for the identity cross-entropy.

    Identities outside ``[0, num_identities)`` are ignored by the loss (the dataset numbers
    identities globally; a model sized for fewer identities still trains on the rest).

    Args:
        embedding_dim: dimension of the (L2-normalised) embeddings.
        num_identities: number of identity classes.
        scale: logit scale (cosine similarities lie in [-1, 1]; softmax needs a wider range).
    """

    def __init__(self, embedding_dim: int, num_identities: int, scale: float = 16.0) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.randn(num_identities, embedding_dim) * 0.01)
        self.scale = scale

    def forward(self, embeddings: Tensor) -> Tensor:
        """Return the logits (N, num_identities)."""
        return self.scale * F.normalize(embeddings.float(), dim=1) @ F.normalize(self.weight.float(), dim=1).T

    def loss(self, embeddings: Tensor, identities: Tensor) -> Tensor:
        """Cross-entropy of the identities; zero (attached to the graph) when none is in range."""
        logits = self(embeddings)
        targets = identities.clone()
        targets[(targets < 0) | (targets >= logits.shape[1])] = -100
        if not (targets >= 0).any():
            return logits.sum() * 0.0
        return F.cross_entropy(logits, targets, ignore_index=-100)


def spatial_attention_loss(
    attention_logits: Tensor,
    proposals: list[Tensor],
    gt_masks: list[Tensor],
    matched_idxs: list[Tensor],
) -> Tensor:
    """Binary cross-entropy of the spatial-attention map against the GT mask in each box.

    Args:
        attention_logits: (R, 1, M, M) logits of the foreground map of the R positive proposals.
        proposals: per image, the (R_i, 4) positive proposal boxes.
        gt_masks: per image, the (N_i, H, W) GT masks.
        matched_idxs: per image, the (R_i,) index of the GT each proposal is matched to.

    Returns:
        The mean BCE, class-agnostic (the map says "object here", not which class).
    """
    size = attention_logits.shape[-1]
    targets = [
        project_masks_on_boxes(masks, boxes, idxs, size)
        for masks, boxes, idxs in zip(gt_masks, proposals, matched_idxs, strict=True)
        if len(boxes) > 0
    ]
    if not targets:
        return attention_logits.sum() * 0.0
    return F.binary_cross_entropy_with_logits(attention_logits[:, 0].float(), torch.cat(targets).float())
