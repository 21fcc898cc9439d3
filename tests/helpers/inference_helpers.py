"""Helpers of the inference tests (tests/inference): tiny network settings, checkpoints, videos."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

#: a MOTSNet small enough for CPU tests, every module present (also tests/models/mots' TINY_NET)
TINY_MOTS: dict[str, Any] = {
    "backbone": "resnet18",
    "trainable_layers": 2,
    "fpn_channels": 32,
    "temporal_attention_channels": 8,
    "anchor_sizes": (16, 32, 64, 128, 256),
    "rpn_pre_nms_top_n_test": 200,
    "rpn_post_nms_top_n_test": 50,
    "rpn_pre_nms_top_n_train": 200,
    "rpn_post_nms_top_n_train": 100,
    "rpn_batch_size_per_image": 64,
    "box_batch_size_per_image": 32,
    "box_representation_size": 64,
    "box_detections_per_img": 20,
    "mask_head_layers": 2,
    "mask_head_channels": 32,
    "spatial_attention_channels": 16,
    "embedding_dim": 16,
    "embedding_channels": 32,
}
TINY_SEMANTIC: dict[str, Any] = {"arch": "efficientps", "encoder_name": "efficientnet-b0", "fpn_channels": 16,
                                 "head_channels": 8}  # fmt: skip
#: tracker settings under which the briefly trained network's weak detections become tracks
LOOSE_TRACKER: dict[str, Any] = {"score_threshold": 0.05, "birth_score_threshold": 0.05}


def _trainer() -> Any:
    import lightning as L

    return L.Trainer(
        accelerator="cpu",
        max_steps=1,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
        num_sanity_val_steps=0,
        limit_val_batches=0,
    )


def train_checkpoint(role: str, root: Path, path: Path, seed: int = 0, **net_args: Any) -> Path:
    """Train a tiny task for one step on ``root`` and save its checkpoint at ``path``."""
    import torch

    from hvps_lightning.data.datamodule import HVPSDataModule
    from hvps_lightning.models.mots import MOTSNet
    from hvps_lightning.models.mots.lightning_model import MOTSModule
    from hvps_lightning.models.semantic import SemanticNet
    from hvps_lightning.models.semantic.lightning_model import SemanticModule
    from hvps_lightning.structures.specs import get_spec

    torch.manual_seed(seed)
    spec = get_spec("motchallenge_step")
    if role == "mots":
        task: Any = MOTSModule(net=MOTSNet(thing_ids=spec.thing_ids, **{**TINY_MOTS, **net_args}),
                               dataset=spec.name)  # fmt: skip
        data = HVPSDataModule(root=str(root), batch_size=1, clips_per_item=1, max_frames=4)
    else:
        task = SemanticModule(net=SemanticNet(num_classes=spec.num_classes, **{**TINY_SEMANTIC, **net_args}),
                              dataset=spec.name)  # fmt: skip
        data = HVPSDataModule(root=str(root), batch_size=2, clip_length=1, clips_per_item=1,
                              targets="semantic", max_frames=4)  # fmt: skip
    trainer = _trainer()
    trainer.fit(task, datamodule=data)
    trainer.save_checkpoint(path)
    return path


def write_video(path: Path, frames: list[np.ndarray], fps: float = 5.0) -> Path:
    """An MP4 of ``frames`` (H.264, as a camera or phone writes them)."""
    from hvps_lightning.viz.video import write_mp4

    return write_mp4(path, frames, fps=fps)
