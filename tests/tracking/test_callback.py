from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch

from hvps_lightning.data.datamodule import HVPSDataModule
from hvps_lightning.data.synthetic.detections import make_frame
from hvps_lightning.formats import read_mots_txt, read_step_png
from hvps_lightning.formats.detection_cache import list_cached_sequences
from hvps_lightning.formats.semantic_cache import write_semantic_map
from hvps_lightning.lightning.tracker_callback import OfflineTrackerCallback
from hvps_lightning.structures.masks import encode_mask
from hvps_lightning.structures.specs import get_spec

pytestmark = pytest.mark.filterwarnings(
    "ignore:__array__ implementation:DeprecationWarning",
    "ignore:.*does not have many workers:UserWarning",
)


class GroundTruthDetector(L.LightningModule):
    """Emits the ground truth of each frame as detections, as MOTSModule.validation_step does.

    ``drop``: (frame, track id) pairs left out; embeddings are one-hot track ids.
    """

    def __init__(self, drop: set[tuple[str, int]] | None = None) -> None:
        super().__init__()
        self.spec = get_spec("motchallenge_step")
        self.layer = torch.nn.Linear(1, 1)
        self.drop = drop or set()

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        out = []
        for target, meta in zip(batch["targets"], batch["meta"], strict=True):
            ids = target["track_ids"].tolist()
            keep = [i for i, t in enumerate(ids) if (meta["frame"], t) not in self.drop]
            masks = [encode_mask(target["masks"][i].numpy()) for i in keep]
            detections = make_frame(
                meta["frame"],
                masks,
                labels=target["labels"][keep].numpy(),
                embeddings=np.eye(64, dtype=np.float32)[[ids[i] % 64 for i in keep]].reshape(len(keep), 64),
                image_size=tuple(meta["orig_size"]),
            )
            out.append((meta["sequence"], detections))
        return {"detections": out}

    test_step = validation_step

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=0.1)


def _datamodule(root: Path) -> HVPSDataModule:
    return HVPSDataModule(
        finetune_stage="mot_step", root=str(root), batch_size=3, clip_length=1, augment=False
    )


def _trainer(callback: OfflineTrackerCallback, **kwargs: Any) -> L.Trainer:
    options = {"accelerator": "cpu", "devices": 1, "logger": False, "enable_progress_bar": False,
               "enable_model_summary": False, "enable_checkpointing": False}  # fmt: skip
    return L.Trainer(callbacks=[callback], **{**options, **kwargs})


def test_perfect_detections_give_aq_one(synth_mot_step_root: Path) -> None:
    callback = OfflineTrackerCallback()
    results = _trainer(callback).validate(GroundTruthDetector(), datamodule=_datamodule(synth_mot_step_root))
    metrics = results[0]
    assert metrics["val/aq"] == pytest.approx(1.0)
    assert "val/stq" not in metrics  # no semantic cache given
    names, tracks = callback.last_tracks["0002"]
    assert names == [f"{i:06d}" for i in range(1, 11)]
    assert metrics["val/num_tracks"] == len({o.track_id for objects in tracks for o in objects}) > 0
    mots_keys = [k for k in metrics if k.startswith("val/mots/pedestrian/")]
    try:
        import hvps_lightning.metrics.mots  # noqa: F401
    except ImportError:
        assert mots_keys == []
    else:
        assert metrics["val/mots/pedestrian/IDSW"] == 0 and metrics["val/mots/pedestrian/MOTSA"] == 1.0


def test_aq_measures_tracking_reid_repairs_a_gap(synth_mot_step_root: Path) -> None:
    datamodule = _datamodule(synth_mot_step_root)
    datamodule.setup("validate")
    dataset = datamodule.dataset("val")
    # the identity visible longest leaves the detections for three frames in the middle
    counts: dict[int, int] = {}
    for index in range(len(dataset)):
        for t in dataset[index][0]["target"]["track_ids"].tolist():
            counts[t] = counts.get(t, 0) + 1
    victim = max(counts, key=counts.get)
    drop = {(f"{i:06d}", victim) for i in (5, 6, 7)}
    scores = {}
    for reid in (True, False):
        config = {"short_term_frames": 1, "long_term_enabled": reid, "long_term_frames": 10}
        callback = OfflineTrackerCallback(tracker_config=config)
        results = _trainer(callback).validate(
            GroundTruthDetector(drop), datamodule=_datamodule(synth_mot_step_root)
        )
        scores[reid] = results[0]["val/aq"]
    assert 0 < scores[False] < scores[True] < 1


def test_semantic_cache_adds_stq_and_exports(synth_mot_step_root: Path, tmp_path: Path) -> None:
    semantic_dir = tmp_path / "semantic"
    for png in sorted((synth_mot_step_root / "panoptic_maps" / "train" / "0002").glob("*.png")):
        semantic, _ = read_step_png(png)
        write_semantic_map(semantic_dir, "0002", png.stem, semantic.astype(np.uint8))
    callback = OfflineTrackerCallback(
        semantic_dir=str(semantic_dir),
        export_dir=str(tmp_path / "export"),
        export_cache=True,
        export_overlays=True,
    )
    metrics = _trainer(callback).validate(GroundTruthDetector(), datamodule=_datamodule(synth_mot_step_root))[
        0
    ]
    assert metrics["val/sq"] == pytest.approx(1.0)
    assert metrics["val/stq"] == pytest.approx(np.sqrt(metrics["val/aq_fused"]))
    assert metrics["val/aq"] == pytest.approx(1.0)
    folder = tmp_path / "export" / "val-epoch000-step000000"
    objects = read_mots_txt(folder / "mots" / "0002.txt")
    assert {o.frame for o in objects} <= set(range(1, 11)) and objects
    assert len(list((folder / "step" / "0002").glob("*.png"))) == 10
    assert (folder / "overlays" / "0002.gif").stat().st_size > 0
    assert list_cached_sequences(folder / "detections") == ["0002"]


def test_test_stage_logs_under_test(synth_mot_step_root: Path) -> None:
    callback = OfflineTrackerCallback(stages=("test",))
    datamodule = _datamodule(synth_mot_step_root)
    metrics = _trainer(callback).test(GroundTruthDetector(), datamodule=datamodule)[0]
    assert metrics["test/aq"] == pytest.approx(1.0)
    assert _trainer(callback).validate(GroundTruthDetector(), datamodule=datamodule)[0] == {}


def test_bad_arguments() -> None:
    from hvps_lightning.errors import HVPSError

    with pytest.raises(HVPSError, match="stages"):
        OfflineTrackerCallback(stages=("fit",))
    with pytest.raises(HVPSError, match="unknown tracker parameter"):
        OfflineTrackerCallback(tracker_config={"nope": 1})


def test_callback_logs_aq_in_fast_dev_run_with_mots_module(synth_mot_step_root: Path) -> None:
    from hvps_lightning.models.mots import MOTSNet
    from hvps_lightning.models.mots.lightning_model import MOTSModule

    tiny = {
        "backbone": "resnet18", "trainable_layers": 2, "fpn_channels": 32, "temporal_attention_channels": 8,
        "anchor_sizes": (16, 32, 64, 128, 256), "rpn_pre_nms_top_n_test": 100, "rpn_post_nms_top_n_test": 30,
        "rpn_pre_nms_top_n_train": 100, "rpn_post_nms_top_n_train": 50, "rpn_batch_size_per_image": 32,
        "box_batch_size_per_image": 16, "box_representation_size": 32, "box_detections_per_img": 10,
        "mask_head_layers": 1, "mask_head_channels": 16, "spatial_attention_channels": 8,
        "embedding_dim": 8, "embedding_channels": 16, "box_score_thresh": 0.0,
    }  # fmt: skip
    torch.manual_seed(0)
    model = MOTSModule(net=MOTSNet(thing_ids=(4,), **tiny))
    datamodule = HVPSDataModule(finetune_stage="mot_step", root=str(synth_mot_step_root), batch_size=2,
                                clip_length=3, augment=False, clips_per_item=1)  # fmt: skip
    callback = OfflineTrackerCallback(tracker_config={"score_threshold": 0.0, "birth_score_threshold": 0.0})
    trainer = _trainer(callback, fast_dev_run=True)
    trainer.fit(model, datamodule=datamodule)
    assert "val/aq" in trainer.callback_metrics
    assert 0.0 <= float(trainer.callback_metrics["val/aq"]) <= 1.0
    assert callback.last_metrics["val/aq"] == pytest.approx(float(trainer.callback_metrics["val/aq"]))
