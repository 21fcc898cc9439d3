"""Overfitting one generated batch: the mask and embedding losses must fall by a large factor."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torchvision.models.detection.roi_heads import maskrcnn_loss

from hvps_lightning.data.datamodule import HVPSDataModule
from hvps_lightning.models.mots import MOTSNet
from hvps_lightning.models.mots.losses import batch_hard_triplet_loss


def gt_box_losses(net: MOTSNet, batch: dict[str, Any]) -> dict[str, float]:
    """Mask and triplet losses of the GT objects themselves (boxes = GT boxes).

    The training losses depend on which proposals the sampler draws (one badly placed
    proposal decides a batch-hard triplet loss), so progress is measured without sampling.
    """
    targets = [net.prepare_target(t) for t in batch["targets"]]
    boxes = [t["boxes"] for t in targets]
    image_shapes = [tuple(batch["frames"].shape[-2:])] * len(boxes)
    with torch.no_grad():
        features = net.clip_features(batch["frames"], batch["target_index"])
        heads = net.roi_heads
        roi_features, _, mask_logits = heads.mask_branch(features, boxes, image_shapes)
        matched = [torch.arange(len(b)) for b in boxes]
        mask = maskrcnn_loss(
            mask_logits, boxes, [t["masks"] for t in targets], [t["labels"] for t in targets], matched
        )
        identities = torch.cat([t["identities"] for t in targets])
        triplet = batch_hard_triplet_loss(
            heads.embedding_head(roi_features), identities, heads.triplet_margin
        )
    return {"loss_mask": mask.item(), "loss_embedding_triplet": triplet.item()}


@pytest.mark.slow
def test_overfitting_a_generated_batch_drives_mask_and_embedding_losses_down(
    synth_mot_step_root: Path,
) -> None:
    torch.manual_seed(0)
    data = HVPSDataModule(
        finetune_stage="mot_step", root=str(synth_mot_step_root), batch_size=1, augment=False
    )
    data.setup("fit")
    batch = next(iter(data.train_dataloader()))
    # one item = two clips of one sequence at different times, sharing identities
    assert batch["frames"].shape[:2] == (2, 3)
    shared = set(batch["targets"][0]["identities"].tolist()) & set(batch["targets"][1]["identities"].tolist())
    assert shared
    net = MOTSNet(
        thing_ids=(4,),
        backbone="resnet18",
        trainable_layers=3,
        fpn_channels=32,
        temporal_attention_channels=8,
        anchor_sizes=(16, 32, 64, 128, 256),
        rpn_pre_nms_top_n_train=200,
        rpn_post_nms_top_n_train=100,
        rpn_batch_size_per_image=64,
        box_batch_size_per_image=64,
        box_representation_size=128,
        mask_head_layers=2,
        mask_head_channels=32,
        embedding_channels=32,
        embedding_dim=32,
    ).train()
    before = gt_box_losses(net, batch)
    optimizer = torch.optim.Adam([p for p in net.parameters() if p.requires_grad], lr=2e-3)
    for _ in range(50):
        losses = net(batch["frames"], batch["targets"], target_index=batch["target_index"])
        optimizer.zero_grad()
        sum(losses.values()).backward()
        optimizer.step()
    after = gt_box_losses(net, batch)
    print({name: (round(before[name], 4), round(after[name], 4)) for name in before})
    # measured here: mask 1.199 -> 0.415, triplet 0.176 -> 0.000. The mask loss levels off near
    # 0.4 because the 96x160 fixture's people are 5-15 pixels wide: limbs fall below the
    # stride-4 features; what matters is that it goes well below a constant prediction (~0.69).
    assert after["loss_mask"] < before["loss_mask"] / 2.5
    assert after["loss_mask"] < 0.5
    assert after["loss_embedding_triplet"] < before["loss_embedding_triplet"] / 10
