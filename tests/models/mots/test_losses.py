from __future__ import annotations

import pytest
import torch

from hvps_lightning.models.mots.losses import (
    IdentityClassifier,
    batch_hard_triplet_loss,
    spatial_attention_loss,
)


def test_batch_hard_triplet_loss_matches_a_hand_computed_case() -> None:
    # 1-D points: identity 0 at 0 and 1, identity 1 at 3 and 3.5.
    embeddings = torch.tensor([[0.0], [1.0], [3.0], [3.5]], requires_grad=True)
    identities = torch.tensor([0, 0, 1, 1])
    loss = batch_hard_triplet_loss(embeddings, identities, margin=2.5)
    # anchors: 1-3+2.5, 1-2+2.5, 0.5-2+2.5, 0.5-2.5+2.5
    assert loss.item() == pytest.approx((0.5 + 1.5 + 1.0 + 0.5) / 4, abs=1e-5)
    loss.backward()
    assert embeddings.grad is not None and embeddings.grad.abs().sum() > 0


def test_batch_hard_triplet_loss_is_zero_when_separated_by_the_margin() -> None:
    embeddings = torch.tensor([[0.0], [0.1], [5.0], [5.1]])
    assert batch_hard_triplet_loss(embeddings, torch.tensor([0, 0, 1, 1]), margin=0.3).item() == 0.0


def test_batch_hard_triplet_loss_skips_anchors_without_positive_or_negative() -> None:
    embeddings = torch.randn(3, 4, requires_grad=True)
    # every identity once: no positives -> a zero that is still part of the graph
    loss = batch_hard_triplet_loss(embeddings, torch.tensor([0, 1, 2]))
    assert loss.item() == 0.0 and loss.requires_grad
    # one identity only: no negatives
    assert batch_hard_triplet_loss(embeddings, torch.tensor([7, 7, 7])).item() == 0.0
    # only anchors 0 and 1 count (anchor 2 has no positive)
    points = torch.tensor([[0.0], [1.0], [1.5]])
    assert batch_hard_triplet_loss(points, torch.tensor([0, 0, 1]), margin=1.0).item() == pytest.approx(
        ((1 - 1.5 + 1) + (1 - 0.5 + 1)) / 2, abs=1e-5
    )


def test_identity_classifier_ignores_identities_out_of_range() -> None:
    torch.manual_seed(0)
    classifier = IdentityClassifier(embedding_dim=4, num_identities=3)
    embeddings = torch.nn.functional.normalize(torch.randn(4, 4), dim=1)
    in_range = classifier.loss(embeddings[:2], torch.tensor([0, 2]))
    mixed = classifier.loss(embeddings, torch.tensor([0, 2, 3, -1]))
    assert mixed.item() == pytest.approx(in_range.item(), rel=1e-6)
    none = classifier.loss(embeddings, torch.tensor([5, 9, 3, 4]))
    assert none.item() == 0.0 and none.requires_grad


def test_spatial_attention_loss_rewards_the_gt_mask() -> None:
    masks = torch.zeros(1, 32, 32, dtype=torch.uint8)
    masks[0, 4:28, 4:20] = 1
    box = torch.tensor([[8.0, 8.0, 16.0, 24.0]])  # the mask covers the whole box
    matched = [torch.tensor([0])]
    good = torch.full((1, 1, 14, 14), 10.0)
    bad = torch.full((1, 1, 14, 14), -10.0)
    assert spatial_attention_loss(good, [box], [masks], matched).item() < 1e-3
    assert spatial_attention_loss(bad, [box], [masks], matched).item() > 5.0
    # no positive proposals anywhere: zero, attached
    empty = spatial_attention_loss(
        torch.zeros(0, 1, 14, 14, requires_grad=True), [box[:0]], [masks], [matched[0][:0]]
    )
    assert empty.item() == 0.0 and empty.requires_grad
