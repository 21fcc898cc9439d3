from __future__ import annotations

import urllib.error
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import torch

from hvps_lightning.errors import HVPSError
from hvps_lightning.models.mots import MOTSNet, StreamingMOTS
from hvps_lightning.models.mots.torch_model import BatchOnlyTransform

COMBINATIONS = [(True, True), (True, False), (False, True), (False, False)]


def _net(
    tiny_net: dict[str, Any], dataset: str = "motchallenge_step", seed: int = 0, **kwargs: Any
) -> MOTSNet:
    torch.manual_seed(seed)
    return MOTSNet(dataset, **{**tiny_net, **kwargs})


@pytest.mark.parametrize(("ta", "sa"), COMBINATIONS)
def test_training_losses_of_each_variant(tiny_net: dict, make_batch: Callable, ta: bool, sa: bool) -> None:
    net = _net(tiny_net, temporal_attention=ta, spatial_attention=sa).train()
    batch = make_batch()
    losses = net(batch["frames"], batch["targets"], target_index=batch["target_index"])
    expected = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask",
                "loss_embedding_triplet"} | ({"loss_spatial_attention"} if sa else set())  # fmt: skip
    assert set(losses) == expected
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    assert losses["loss_embedding_triplet"] > 0  # four clips, two identities per sequence, two times
    assert (net.temporal_attention is not None) == ta
    assert (net.roi_heads.spatial_attention is not None) == sa


def test_gradients_reach_temporal_and_spatial_attention(tiny_net: dict, make_batch: Callable) -> None:
    net = _net(tiny_net, num_identities=8).train()
    batch = make_batch()
    losses = net(batch["frames"], batch["targets"])
    assert "loss_embedding_identity" in losses
    sum(losses.values()).backward()
    for prefix in ("temporal_attention.", "roi_heads.spatial_attention.", "roi_heads.embedding_head.",
                   "roi_heads.identity_classifier."):  # fmt: skip
        params = [(n, p) for n, p in net.named_parameters() if n.startswith(prefix)]
        assert params, prefix
        for name, param in params:
            assert param.grad is not None and param.grad.abs().sum() > 0, name


def test_context_frames_without_grad_give_the_same_features(tiny_net: dict, make_batch: Callable) -> None:
    # FrozenBatchNorm: features do not depend on the batch, so both paths must agree.
    net = _net(tiny_net, backbone_norm="frozen", context_grad=False).train()
    for module in net.temporal_attention.values():
        torch.nn.init.normal_(module.logits.weight, std=1.0)
    frames = make_batch(target_index=1)["frames"]
    cheap = net.clip_features(frames, target_index=1)
    net.context_grad = True
    full = net.clip_features(frames, target_index=1)
    for level in full:
        torch.testing.assert_close(cheap[level], full[level], rtol=1e-4, atol=1e-5)


def test_context_frames_run_without_grad(tiny_net: dict, make_batch: Callable) -> None:
    net = _net(tiny_net, backbone_norm="frozen").train()
    frames = make_batch()["frames"].requires_grad_(True)
    fused = net.clip_features(frames, target_index=2)
    fused["0"].sum().backward()
    assert frames.grad[:, 2].abs().sum() > 0
    assert frames.grad[:, :2].abs().sum() == 0


def test_eval_output_uses_spec_ids_and_original_size(tiny_net: dict, make_batch: Callable) -> None:
    net = _net(tiny_net, dataset="kitti_step", box_score_thresh=0.0).eval()
    batch = make_batch(frames=((0, 2), (1, 4)), labels=(11, 13))
    with torch.no_grad():
        out = net(batch["frames"], orig_sizes=[(128, 192), (100, 150)])
    assert len(out) == 2
    for det, (height, width) in zip(out, [(128, 192), (100, 150)], strict=True):
        n = len(det["boxes"])
        assert n > 0
        assert set(det["labels"].tolist()) <= {11, 13}
        assert det["masks"].shape == (n, 1, height, width)
        assert det["embeddings"].shape == (n, 16)
        torch.testing.assert_close(det["embeddings"].norm(dim=1), torch.ones(n))
        assert (det["boxes"][:, 2] <= width + 1e-3).all() and (det["boxes"][:, 3] <= height + 1e-3).all()


def test_prepare_target_maps_labels_and_drops_the_rest(tiny_net: dict) -> None:
    net = _net(tiny_net, dataset="kitti_step")
    target = {
        "boxes": torch.tensor([[0.0, 0, 5, 5], [1, 1, 4, 4], [2, 2, 2, 6], [0, 0, 3, 3]]),
        "labels": torch.tensor([13, 11, 11, 0]),  # car, person, degenerate person, road
        "masks": torch.ones(4, 8, 8, dtype=torch.uint8),
        "identities": torch.tensor([10, 11, 12, 13]),
    }
    prepared = net.prepare_target(target)
    assert prepared["labels"].tolist() == [2, 1]
    assert prepared["identities"].tolist() == [10, 11]
    assert prepared["masks"].shape == (2, 8, 8)


def test_batch_only_transform_pads_and_keeps_values() -> None:
    transform = BatchOnlyTransform()
    images = torch.randn(2, 3, 50, 70)
    padded = transform.pad(images)
    assert padded.shape == (2, 3, 64, 96)
    torch.testing.assert_close(padded[..., :50, :70], images)
    assert padded[..., 50:, :].abs().sum() == 0
    assert transform.normalize(images) is images


def _assert_same_detections(a: dict, b: dict) -> None:
    assert len(a["boxes"]) == len(b["boxes"]) > 0
    for key in ("boxes", "scores", "labels", "masks", "embeddings"):
        torch.testing.assert_close(a[key], b[key], rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("target_index", [2, 1])
def test_streaming_equals_clip_inference(tiny_net: dict, target_index: int) -> None:
    net = _net(tiny_net, box_score_thresh=0.0).eval()
    for module in net.temporal_attention.values():
        torch.nn.init.normal_(module.logits.weight, std=1.0)
    torch.manual_seed(1)
    frames = torch.randn(5, 3, 64, 96)
    streamed = list(net.stream(frames, orig_size=(96, 144), target_index=target_index))
    assert len(streamed) == 5
    after = 2 - target_index
    for t in range(5):
        # the clip dataset's window: pad before the first and after the last frame by repetition
        window = [min(4, max(0, t + offset)) for offset in range(-target_index, after + 1)]
        with torch.no_grad():
            clip = net(frames[window][None], target_index=target_index, orig_sizes=[(96, 144)])[0]
        _assert_same_detections(streamed[t], clip)


def test_streaming_runs_the_backbone_once_per_frame(tiny_net: dict) -> None:
    net = _net(tiny_net).eval()
    calls = []
    net.backbone.register_forward_hook(lambda module, inputs, output: calls.append(inputs[0].shape[0]))
    streamer = StreamingMOTS(net)
    outputs = [streamer.push(torch.randn(3, 64, 96), meta=i) for i in range(4)]
    assert [len(o) for o in outputs] == [1, 1, 1, 1]
    assert [o[0][0] for o in outputs] == [0, 1, 2, 3]
    assert calls == [1, 1, 1, 1]
    net.train()
    with pytest.raises(RuntimeError, match="eval"):
        streamer.push(torch.randn(3, 64, 96))


def test_bad_arguments_raise_one_line_errors(tiny_net: dict) -> None:
    with pytest.raises(HVPSError, match="backbone: 'resnet9'"):
        MOTSNet(**{**tiny_net, "backbone": "resnet9"})
    with pytest.raises(HVPSError, match="anchor_sizes"):
        MOTSNet(**{**tiny_net, "anchor_sizes": (32, 64)})
    with pytest.raises(HVPSError, match="resnet50"):
        MOTSNet(**{**tiny_net, "pretrained": "coco"})


def _offline(*args: Any, **kwargs: Any) -> None:
    raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")


@pytest.mark.parametrize("option", ["imagenet", "coco"])
def test_download_options_offline_give_a_one_line_error(
    tiny_net: dict, monkeypatch: pytest.MonkeyPatch, option: str
) -> None:
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", _offline)
    kwargs = {**tiny_net, "pretrained": option}
    if option == "coco":
        kwargs.update(backbone="resnet50", fpn_channels=256)
    with pytest.raises(HVPSError) as info:
        MOTSNet(**kwargs)
    message = str(info.value)
    assert "\n" not in message
    assert f"pretrained='{option}' needs internet" in message
    assert "init_checkpoint" in message


def test_init_checkpoint_round_trip(tiny_net: dict, tmp_path: Path) -> None:
    source = _net(tiny_net, seed=1)
    path = tmp_path / "weights.pt"
    torch.save({"state_dict": {f"net.{k}": v for k, v in source.state_dict().items()}}, path)
    target = _net(tiny_net, seed=2, init_checkpoint=str(path))
    assert target.fresh_keys == []
    # a start checkpoint freezes the BatchNorms (as torchvision does with pretrained weights)
    assert type(target.backbone.body.bn1).__name__ == "FrozenBatchNorm2d"
    for key, value in target.state_dict().items():
        torch.testing.assert_close(value, source.state_dict()[key])
    with pytest.raises(HVPSError, match="file not found"):
        _net(tiny_net, init_checkpoint=str(tmp_path / "missing.pt"))
    (tmp_path / "bad.pt").write_text("not a checkpoint")
    with pytest.raises(HVPSError, match="not a loadable state dict"):
        _net(tiny_net, init_checkpoint=str(tmp_path / "bad.pt"))


def test_coco_rows_are_mapped_by_class_name(tiny_net: dict) -> None:
    net = _net(tiny_net, dataset="kitti_step")  # things: person (label 1), car (label 2)
    width = tiny_net["box_representation_size"]
    rows = torch.arange(91, dtype=torch.float32)
    coco = {
        "roi_heads.box_predictor.cls_score.weight": rows[:, None].expand(91, width).clone(),
        "roi_heads.box_predictor.cls_score.bias": rows.clone(),
        "roi_heads.box_predictor.bbox_pred.bias": rows.repeat_interleave(4),
        # the published COCO file still uses torchvision's old key names
        "rpn.head.conv.bias": torch.full((32,), 5.0),
        "roi_heads.mask_head.mask_fcn2.bias": torch.full((32,), 6.0),
    }
    fresh = net.load_foreign_state(coco)
    assert net.rpn.head.conv[0][0].bias.tolist() == [5.0] * 32
    assert net.roi_heads.mask_head[1][0].bias.tolist() == [6.0] * 32
    bias = net.roi_heads.box_predictor.cls_score.bias
    assert bias.tolist() == [0.0, 1.0, 3.0]  # background, COCO person (1), COCO car (3)
    assert net.roi_heads.box_predictor.bbox_pred.bias.tolist() == [0.0] * 4 + [1.0] * 4 + [3.0] * 4
    assert "roi_heads.box_predictor.cls_score.bias" not in fresh
    assert "backbone.body.conv1.weight" in fresh


def test_torchvision_maskrcnn_state_loads_into_every_shared_layer() -> None:
    from torchvision.models.detection import maskrcnn_resnet50_fpn

    torch.manual_seed(0)
    coco_like = maskrcnn_resnet50_fpn(weights=None, weights_backbone=None, num_classes=91).state_dict()
    net = MOTSNet("kitti_step", backbone="resnet50", backbone_norm="frozen")
    fresh = net.load_foreign_state(coco_like)
    # only what torchvision's Mask R-CNN does not have starts new
    assert fresh and all(
        key.startswith(("temporal_attention.", "roi_heads.spatial_attention.", "roi_heads.embedding_head."))
        for key in fresh
    ), [k for k in fresh if not k.startswith(("temporal_attention.", "roi_heads.s", "roi_heads.e"))]
    torch.testing.assert_close(
        net.roi_heads.box_predictor.cls_score.weight[1],
        coco_like["roi_heads.box_predictor.cls_score.weight"][1],
    )
