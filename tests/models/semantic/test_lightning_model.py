from __future__ import annotations

from collections.abc import Callable

import lightning as L
import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from hvps_lightning.errors import HVPSError
from hvps_lightning.formats.semantic_cache import read_probabilities, read_semantic_map
from hvps_lightning.lightning.writers import SemanticCacheWriter
from hvps_lightning.models.base import WeightSource
from hvps_lightning.models.semantic.lightning_model import SemanticModule
from hvps_lightning.structures.specs import get_spec

TINY = {"fpn_channels": 16, "head_channels": 8}


def make_batch(
    batch_size: int = 2, clip: int = 2, height: int = 32, width: int = 48, num_classes: int = 7, seed: int = 0
) -> dict:
    """A collated batch as docs/ARCHITECTURE.md "Batches" describes (only what SemanticModule reads)."""
    g = torch.Generator().manual_seed(seed)
    semantic = torch.randint(0, num_classes, (batch_size, height, width), generator=g)
    semantic[:, :2] = 255
    return {
        "frames": torch.randn(batch_size, clip, 3, height, width, generator=g),
        "target_index": clip - 1,
        "targets": [{"semantic": semantic[i]} for i in range(batch_size)],
        "meta": [
            {"sequence": "0002", "frame": f"{i:06d}", "frame_index": i, "orig_size": (45, 70), "group": 0}
            for i in range(batch_size)
        ],
    }


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def test_hparams_monitor_and_defaults(make_module: Callable) -> None:
    module = make_module(**TINY)
    assert SemanticModule.monitor == "val/miou" and SemanticModule.mode == "max"
    assert module.hparams.net["init_args"]["arch"] == "efficientps" and module.hparams.pretrained == "none"
    assert module.hparams.dataset == "motchallenge_step"
    assert "optimizer" not in module.hparams
    assert module.net.num_classes == 7


def test_input_is_the_target_frame_of_the_clip() -> None:
    batch = make_batch(clip=3)
    batch["target_index"] = 1
    assert torch.equal(SemanticModule.target_images(batch), batch["frames"][:, 1])


def test_cross_entropy_skips_the_ignore_label(make_module: Callable) -> None:
    module = make_module(**TINY)
    logits = torch.randn(2, 7, 5, 6)
    target = torch.randint(0, 7, (2, 5, 6))
    target[0, :2] = 255
    losses = module.compute_losses(logits, target)
    expected = F.cross_entropy(logits, target, ignore_index=255)
    assert torch.allclose(losses["loss"], expected, atol=1e-6)
    assert set(losses) == {"loss", "loss_ce"}
    all_void = module.compute_losses(logits, torch.full_like(target, 255))
    assert all_void["loss"].item() == 0.0


def test_ohem_keeps_the_hardest_pixels(make_module: Callable) -> None:
    module = make_module(**TINY, ohem_fraction=0.25)
    logits = torch.randn(1, 7, 4, 8)
    target = torch.randint(0, 7, (1, 4, 8))
    target[0, 0] = 255  # 24 valid pixels -> the 6 hardest
    pixel = F.cross_entropy(logits, target, ignore_index=255, reduction="none")[target != 255]
    expected = pixel.sort(descending=True).values[:6].mean()
    assert torch.allclose(module.compute_losses(logits, target)["loss"], expected)
    assert module.compute_losses(logits, target)["loss"] > F.cross_entropy(logits, target, ignore_index=255)
    with pytest.raises(HVPSError, match="ohem_fraction"):
        make_module(**TINY, ohem_fraction=0.0)


def test_lovasz_and_dice_terms_are_weighted_in(make_module: Callable) -> None:
    module = make_module(**TINY, lovasz_weight=0.5, dice_weight=2.0)
    logits = torch.randn(2, 7, 5, 6)
    target = torch.randint(0, 7, (2, 5, 6))
    losses = module.compute_losses(logits, target)
    assert set(losses) == {"loss", "loss_ce", "loss_lovasz", "loss_dice"}
    total = losses["loss_ce"] + 0.5 * losses["loss_lovasz"] + 2.0 * losses["loss_dice"]
    assert torch.allclose(losses["loss"], total)
    assert losses["loss_lovasz"] > 0 and losses["loss_dice"] > 0
    with pytest.raises(HVPSError, match="must be >= 0"):
        make_module(**TINY, dice_weight=-1.0)


@pytest.mark.parametrize("arch", ["efficientps", "Unet"])
def test_a_few_steps_fit_a_fixed_batch(make_module: Callable, arch: str) -> None:
    small_decoder = {"arch_kwargs": {"decoder_channels": [32, 16, 16, 8, 8]}} if arch == "Unet" else {}
    module = make_module(arch=arch, encoder_name="efficientnet-b0", **TINY, **small_decoder)
    batch = make_batch(height=32, width=32)
    # a learnable task: the class is the sign of the first colour channel in 8x8 blocks
    blocks = torch.randint(0, 2, (2, 1, 4, 4), generator=torch.Generator().manual_seed(1)).float()
    blocks = F.interpolate(blocks, size=(32, 32), mode="nearest")
    batch["frames"][:, -1, 0] = blocks[:, 0] * 4 - 2
    for index, target in enumerate(batch["targets"]):
        target["semantic"] = (blocks[index, 0] * 3).long()  # 0 sidewalk / 3 sky
    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    module.train()
    losses = []
    for _ in range(6):
        loss = module.compute_losses(module(module.target_images(batch)), module._semantic_target(batch))[
            "loss"
        ]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < 0.5 * losses[0], losses


class FixedLogits(nn.Module):
    """Stands in for the network: returns the given logits whatever the input."""

    def __init__(self, logits: torch.Tensor) -> None:
        super().__init__()
        self.logits = logits
        self.dummy = nn.Parameter(torch.zeros(()))

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.logits + 0 * self.dummy


def _one_batch_loader(batch: dict) -> torch.utils.data.DataLoader:
    return torch.utils.data.DataLoader([batch], batch_size=1, collate_fn=lambda items: items[0])


def test_validation_logs_miou_and_per_class_iou(make_module: Callable) -> None:
    spec = get_spec("motchallenge_step")
    target = torch.zeros(1, 4, 4, dtype=torch.long)
    target[:, :, 2:] = 3  # left sidewalk, right sky
    target[:, 0, 0] = 255  # void: not counted
    predicted = target.clone()
    predicted[:, :, 3] = 1  # one column of sky predicted as building
    predicted[:, 0, 0] = 6  # a prediction on void does not count
    logits = F.one_hot(predicted.clamp(max=6), spec.num_classes).permute(0, 3, 1, 2).float()
    batch = make_batch(batch_size=1, height=4, width=4)
    batch["targets"][0]["semantic"] = target[0]
    module = make_module(**TINY)
    module.net = FixedLogits(logits)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.validate(module, dataloaders=_one_batch_loader(batch), verbose=False)
    metrics = trainer.callback_metrics
    # sidewalk 7/7, sky 4/8, building 0/4 -> mean over the three classes that occur
    assert metrics["val/iou/sidewalk"].item() == pytest.approx(1.0)
    assert metrics["val/iou/sky"].item() == pytest.approx(0.5)
    assert metrics["val/iou/building"].item() == pytest.approx(0.0)
    assert metrics["val/miou"].item() == pytest.approx(0.5)
    assert "val/iou/person" not in metrics and "val/iou/bicycle" not in metrics
    assert "val/loss" in metrics


def test_predict_step_returns_original_size_maps(make_module: Callable) -> None:
    module = make_module(**TINY).eval()
    batch = make_batch()
    with torch.no_grad():
        logits = module(module.target_images(batch))
        results = module.predict_step(batch, 0)
    assert [(seq, frame) for seq, frame, _ in results] == [("0002", "000000"), ("0002", "000001")]
    for index, (_, _, semantic) in enumerate(results):
        assert semantic.shape == (45, 70) and semantic.dtype == np.uint8
        expected = F.interpolate(logits[index : index + 1], size=(45, 70), mode="bilinear").argmax(1)[0]
        np.testing.assert_array_equal(semantic, expected.numpy())


def test_predict_step_crops_collate_padding_before_resizing(make_module: Callable) -> None:
    module = make_module(**TINY).eval()
    batch = make_batch(batch_size=1)
    batch["meta"][0]["input_size"] = (20, 30)  # the image filled only the top-left 20x30 of the batch
    with torch.no_grad():
        logits = module(module.target_images(batch))
        ((_, _, semantic),) = module.predict_step(batch, 0)
    expected = F.interpolate(logits[:, :, :20, :30], size=(45, 70), mode="bilinear").argmax(1)[0]
    np.testing.assert_array_equal(semantic, expected.numpy())


def test_cache_writer_round_trip(make_module: Callable, tmp_path) -> None:
    module = make_module(**TINY, predict_probabilities=True).eval()
    batch = make_batch()
    with torch.no_grad():
        results = module.predict_step(batch, 0)
    assert all(len(item) == 4 and item[3].shape == (7, 32, 48) for item in results)
    writer = SemanticCacheWriter(tmp_path / "cache")
    writer.write_on_batch_end(None, module, results, None, batch, 0, 0)
    for sequence, frame, semantic, probabilities in results:
        np.testing.assert_array_equal(read_semantic_map(tmp_path / "cache", sequence, frame), semantic)
        back = read_probabilities(tmp_path / "cache", sequence, frame, size=(32, 48))
        assert np.abs(back - probabilities.astype(np.float32)).max() <= 1 / 255
        assert read_probabilities(tmp_path / "cache", sequence, frame).shape == (7, 45, 70)
    # without probabilities: only PNGs
    SemanticCacheWriter(tmp_path / "plain", write_probabilities=False).write_on_batch_end(
        None, module, results, None, batch, 0, 0
    )
    assert sorted(p.name for p in (tmp_path / "plain" / "0002").iterdir()) == ["000000.png", "000001.png"]


def test_transfer_maps_cityscapes_rows_to_motchallenge(make_module: Callable) -> None:
    source = make_module(dataset="kitti_step", **TINY)
    target = make_module(dataset="motchallenge_step", **TINY)
    before = {k: v.clone() for k, v in target.state_dict().items()}
    result = target.transfer_state(source.state_dict(), WeightSource("test", spec=get_spec("kitti_step")))
    assert result.fresh == [] and result.unused == []
    src, dst = source.state_dict(), target.state_dict()
    w_src, w_dst = src["net.model.head.classifier.weight"], dst["net.model.head.classifier.weight"]
    b_src, b_dst = src["net.model.head.classifier.bias"], dst["net.model.head.classifier.bias"]
    city = get_spec("kitti_step").class_id
    assert w_dst.shape[0] == 7 and w_src.shape[0] == 19
    torch.testing.assert_close(w_dst[0], (w_src[city("road")] + w_src[city("sidewalk")]) / 2)
    torch.testing.assert_close(b_dst[0], (b_src[city("road")] + b_src[city("sidewalk")]) / 2)
    torch.testing.assert_close(w_dst[2], (w_src[city("vegetation")] + w_src[city("terrain")]) / 2)
    for name, dst_row in [("building", 1), ("sky", 3), ("person", 4), ("rider", 5), ("bicycle", 6)]:
        torch.testing.assert_close(w_dst[dst_row], w_src[city(name)])
        torch.testing.assert_close(b_dst[dst_row], b_src[city(name)])
    # every other tensor is copied as is
    for key in ("net.model.encoder._conv_stem.weight", "net.model.fpn.output.0.0.weight"):
        torch.testing.assert_close(dst[key], src[key])
        assert not torch.equal(dst[key], before[key])


def test_transfer_unmapped_classes_start_fresh(make_module: Callable) -> None:
    source = make_module(dataset="mots", arch="Unet", encoder_name="resnet18")  # 3 MOTS classes
    target = make_module(dataset="motchallenge_step", arch="Unet", encoder_name="resnet18")
    before = target.state_dict()["net.model.segmentation_head.0.weight"].clone()
    target.transfer_state(source.state_dict(), WeightSource("test", spec=get_spec("mots")))
    after = target.state_dict()["net.model.segmentation_head.0.weight"]
    pedestrian = source.state_dict()["net.model.segmentation_head.0.weight"][2]
    torch.testing.assert_close(after[4], pedestrian)  # person <- pedestrian
    for row in (0, 1, 2, 3, 5, 6):  # no source: the fresh initialisation stays
        torch.testing.assert_close(after[row], before[row])


def test_init_from_checkpoint_file_and_mismatched_model(make_module: Callable, tmp_path) -> None:
    source = make_module(dataset="kitti_step", **TINY)
    ckpt = tmp_path / "stage2.ckpt"
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": dict(source.hparams)}, ckpt)
    target = make_module(dataset="motchallenge_step", **TINY)
    assert target.init_from_checkpoint(ckpt).fresh == []
    torch.testing.assert_close(
        target.state_dict()["net.model.head.classifier.weight"][3],
        source.state_dict()["net.model.head.classifier.weight"][10],
    )  # sky
    # a bare network state dict works too
    bare = make_module(dataset="motchallenge_step", **TINY)
    kitti_step = WeightSource("test", spec=get_spec("kitti_step"))
    assert bare.transfer_state(source.net.state_dict(), kitti_step).fresh == []
    other = make_module(dataset="motchallenge_step", arch="Unet", encoder_name="resnet18")
    with pytest.raises(HVPSError, match=r"init_from .*stage2\.ckpt: no weights fit this SemanticModule"):
        other.init_from_checkpoint(ckpt)


def test_checkpoint_keeps_hparams_and_weights(make_module: Callable, tmp_path) -> None:
    module = make_module(dataset="kitti_step", arch="FPN", encoder_name="resnet18", lovasz_weight=0.25)
    trainer = L.Trainer(
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    batch = make_batch(batch_size=2, num_classes=19)
    trainer.validate(module, dataloaders=_one_batch_loader(batch), verbose=False)
    trainer.save_checkpoint(tmp_path / "semantic.ckpt")
    loaded = SemanticModule.load_from_checkpoint(tmp_path / "semantic.ckpt")  # weights_only: plain hparams
    assert loaded.net.arch == "fpn" and loaded.net.encoder_name == "resnet18"
    assert loaded.hparams.lovasz_weight == 0.25 and loaded.spec.name == "kitti_step"
    for key, value in module.state_dict().items():
        torch.testing.assert_close(loaded.state_dict()[key], value)
