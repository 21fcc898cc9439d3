from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import pytest
import torch
from pycocotools import mask as mask_utils
from torch.utils.data import DataLoader

from hvps_lightning.errors import HVPSError
from hvps_lightning.models.base import WeightSource, load_checkpoint_file
from hvps_lightning.models.mots.lightning_model import MOTSModule
from hvps_lightning.structures.detections import FrameDetections


def _loader(batches: list[dict[str, Any]]) -> DataLoader:
    return DataLoader(batches, batch_size=None, shuffle=False)


def _trainer(**kwargs: Any) -> L.Trainer:
    options = {"accelerator": "cpu", "logger": False, "enable_progress_bar": False,
               "enable_model_summary": False, "enable_checkpointing": False}  # fmt: skip
    return L.Trainer(**{**options, **kwargs})


def _sequence_batches(
    make_batch: Callable, frames: int = 6, per_batch: int = 2, sequence: int = 0
) -> list[dict]:
    return [
        make_batch(frames=tuple((sequence, f) for f in range(start, start + per_batch)))
        for start in range(0, frames, per_batch)
    ]


def test_fit_logs_every_loss_and_validation_map(make_module: Callable, make_batch: Callable) -> None:
    model = make_module(num_identities=8, loss_weights={"loss_spatial_attention": 0.5})
    trainer = _trainer(fast_dev_run=1)
    trainer.fit(model, train_dataloaders=_loader([make_batch()]), val_dataloaders=_loader([make_batch()]))
    metrics = trainer.callback_metrics
    for name in ("loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask",
                 "loss_spatial_attention", "loss_embedding_triplet", "loss_embedding_identity"):  # fmt: skip
        assert f"train/{name}" in metrics, name
    assert "train/loss" in metrics
    assert "val/segm_map" in metrics and "val/segm_map_50" in metrics
    assert MOTSModule.monitor == "val/segm_map" and MOTSModule.mode == "max"


def test_validation_step_returns_detections_and_counts_map(
    make_module: Callable, make_batch: Callable
) -> None:
    model = make_module(box_score_thresh=0.0).eval()
    batch = make_batch(frames=((0, 0), (0, 1)))
    output = model.validation_step(batch, 0)
    assert [seq for seq, _ in output["detections"]] == ["0000", "0000"]
    assert model.val_map.update_called
    for _, frame in output["detections"]:
        assert isinstance(frame, FrameDetections)
        frame.validate("validation")


def test_predict_emits_valid_frame_detections(make_module: Callable, make_batch: Callable) -> None:
    model = make_module(dataset="kitti_step", box_score_thresh=0.0)
    batches = [make_batch(frames=((0, 0), (0, 1)), labels=(11, 13))]
    predictions = _trainer().predict(model, dataloaders=_loader(batches))
    (items,) = predictions
    assert [(seq, frame.frame) for seq, frame in items] == [("0000", "000000"), ("0000", "000001")]
    for _, frame in items:
        frame.validate("predict")
        assert len(frame) > 0
        assert frame.image_size == (128, 192)  # meta orig_size, twice the network input
        assert set(frame.labels.tolist()) <= {11, 13}
        assert frame.boxes.dtype == np.float32 and frame.embeddings.shape == (len(frame), 16)
        assert all(isinstance(rle["counts"], str) and rle["size"] == [128, 192] for rle in frame.masks)
        decoded = mask_utils.decode(
            [{"size": r["size"], "counts": r["counts"].encode()} for r in frame.masks]
        )
        assert decoded.shape == (128, 192, len(frame))


def test_streaming_predict_equals_clip_predict(make_module: Callable, make_batch: Callable) -> None:
    # frames 0-5 of sequence 0, a gap (8, 9), then frames 0-1 of sequence 1
    batches = [
        *_sequence_batches(make_batch),
        make_batch(frames=((0, 8), (0, 9))),
        *_sequence_batches(make_batch, frames=2, sequence=1),
    ]
    results = {}
    calls: dict[bool, list[int]] = {}
    for streaming in (True, False):
        model = make_module(box_score_thresh=0.0, streaming_inference=streaming)
        for module in model.net.temporal_attention.values():
            torch.nn.init.normal_(module.logits.weight, std=1.0)
        calls[streaming] = []
        model.net.backbone.register_forward_hook(lambda m, i, o, c=calls[streaming]: c.append(i[0].shape[0]))
        results[streaming] = [item for batch in _trainer().predict(model, _loader(batches)) for item in batch]
    # streaming: 3 seeds of 2 context frames (2 sequence starts, 1 gap) + one pass per target
    assert sum(calls[True]) == 3 * 2 + 10 and sum(calls[False]) == 3 * 10
    assert len(results[True]) == len(results[False]) == 10
    for (seq_a, a), (seq_b, b) in zip(results[True], results[False], strict=True):
        assert (seq_a, a.frame) == (seq_b, b.frame)
        assert len(a) == len(b) > 0
        np.testing.assert_allclose(a.boxes, b.boxes, rtol=1e-4, atol=1e-3)
        np.testing.assert_allclose(a.scores, b.scores, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(a.embeddings, b.embeddings, rtol=1e-4, atol=1e-4)
        assert (a.labels == b.labels).all()


def test_checkpoint_round_trip_restores_hparams(
    make_module: Callable, make_batch: Callable, tmp_path: Path
) -> None:
    model = make_module(dataset="kitti_step", temporal_attention=False, embedding_dim=8, warmup_steps=3,
                        loss_weights={"loss_mask": 2.0})  # fmt: skip
    trainer = _trainer(fast_dev_run=1)
    batches = [make_batch(labels=(11, 13))]
    trainer.fit(model, train_dataloaders=_loader(batches))
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    raw = load_checkpoint_file(path)  # weights_only: hparams must be plain data
    # the network is saved as its configuration, and rebuilt from it
    assert raw["hyper_parameters"]["net"]["init_args"]["embedding_dim"] == 8
    assert raw["hyper_parameters"]["net"]["init_args"]["thing_ids"] == (11, 13)
    loaded = MOTSModule.load_from_checkpoint(path)
    assert dict(loaded.hparams) == dict(model.hparams)
    assert loaded.spec.name == "kitti_step" and loaded.net.temporal_attention is None
    assert loaded.loss_weights["loss_mask"] == 2.0
    for key, value in model.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)


def test_loaded_checkpoint_is_not_overwritten_by_start_weights(make_module: Callable, tmp_path: Path) -> None:
    start = tmp_path / "start.pt"
    torch.save(make_module(seed=5).net.state_dict(), start)
    model = make_module(seed=1, init_checkpoint=str(start))
    model.setup("fit")
    torch.nn.init.constant_(model.net.roi_heads.box_predictor.cls_score.bias, 7.0)  # "training"
    path = tmp_path / "trained.ckpt"
    torch.save({"state_dict": model.state_dict(), "hyper_parameters": dict(model.hparams),
                "pytorch-lightning_version": L.__version__}, path)  # fmt: skip
    loaded = MOTSModule.load_from_checkpoint(path)
    loaded.setup("validate")
    assert loaded.net.roi_heads.box_predictor.cls_score.bias.tolist() == [7.0, 7.0]


def test_stage_transfer_keeps_the_person_rows(make_module: Callable, tmp_path: Path) -> None:
    source = make_module(dataset="kitti_step", seed=3)  # things: person (row 1), car (row 2)
    path = tmp_path / "kitti_step.ckpt"
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": dict(source.hparams)}, path)
    target = make_module(dataset="motchallenge_step", seed=4, init_from=str(path))
    fresh = target.init_from_checkpoint(path).fresh
    src, dst = source.net.roi_heads, target.net.roi_heads
    for name in ("box_predictor.cls_score", "mask_predictor.mask_fcn_logits"):
        ours, theirs = dst.get_submodule(name), src.get_submodule(name)
        assert ours.weight.shape[0] == 2  # background + person
        torch.testing.assert_close(ours.weight[:2], theirs.weight[:2])  # background and person, not car
        torch.testing.assert_close(ours.bias[:2], theirs.bias[:2])
    torch.testing.assert_close(dst.box_predictor.bbox_pred.weight, src.box_predictor.bbox_pred.weight[:8])
    torch.testing.assert_close(target.net.backbone.body.conv1.weight, source.net.backbone.body.conv1.weight)
    assert not any("predictor" in key or "backbone" in key for key in fresh), fresh
    assert type(target.net.backbone.body.bn1).__name__ == "FrozenBatchNorm2d"  # keeps the stage's statistics


def test_stage_transfer_without_mots_weights_is_an_error(make_module: Callable) -> None:
    model = make_module()
    with pytest.raises(HVPSError, match="no MOTS network"):
        model.transfer_state({"model.encoder.weight": torch.zeros(1)}, WeightSource("test", spec=model.spec))


def test_unknown_loss_weight_is_an_error(make_module: Callable) -> None:
    with pytest.raises(HVPSError, match="loss_weights: unknown loss loss_typo"):
        make_module(loss_weights={"loss_typo": 1.0})


def test_a_net_for_other_things_is_an_error(make_net: Callable) -> None:
    with pytest.raises(HVPSError, match=r"net.thing_ids \[11, 13\] are not the things of dataset 'motchal"):
        MOTSModule(net=make_net(dataset="kitti_step"), dataset="motchallenge_step")


def test_training_step_under_autocast(make_module: Callable, make_batch: Callable) -> None:
    model = make_module().train()
    batch = make_batch()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = model.training_step(batch, 0)
    assert torch.isfinite(loss) and loss.dtype == torch.float32
    loss.backward()
    assert model.net.temporal_attention["0"].logits.weight.grad is not None
    model.eval()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        detections = model.predict_step(make_batch(frames=((0, 0), (0, 1))), 0)
    for _, frame in detections:
        frame.validate("autocast")
