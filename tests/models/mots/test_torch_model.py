from __future__ import annotations

from collections.abc import Callable

import pytest
import torch

from hvps_lightning.errors import HVPSError
from hvps_lightning.models.mots import BatchOnlyTransform, MOTSNet, StreamingMOTS
from hvps_lightning.models.mots.streaming import stream

COMBINATIONS = [(True, True), (True, False), (False, True), (False, False)]


@pytest.mark.parametrize(("ta", "sa"), COMBINATIONS)
def test_training_losses_of_each_variant(
    make_net: Callable, make_batch: Callable, ta: bool, sa: bool
) -> None:
    net = make_net(temporal_attention=ta, spatial_attention=sa).train()
    batch = make_batch()
    losses = net(batch["frames"], batch["targets"], target_index=batch["target_index"])
    expected = {"loss_objectness", "loss_rpn_box_reg", "loss_classifier", "loss_box_reg", "loss_mask",
                "loss_embedding_triplet"} | ({"loss_spatial_attention"} if sa else set())  # fmt: skip
    assert set(losses) == expected
    assert all(torch.isfinite(v) and v.ndim == 0 for v in losses.values())
    assert losses["loss_embedding_triplet"] > 0  # four clips, two identities per sequence, two times
    assert (net.temporal_attention is not None) == ta
    assert (net.roi_heads.spatial_attention is not None) == sa


def test_gradients_reach_temporal_and_spatial_attention(make_net: Callable, make_batch: Callable) -> None:
    net = make_net(num_identities=8).train()
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


def test_context_frames_without_grad_give_the_same_features(make_net: Callable, make_batch: Callable) -> None:
    # FrozenBatchNorm: features do not depend on the batch, so both paths must agree.
    net = make_net(backbone_norm="frozen", context_grad=False).train()
    for module in net.temporal_attention.values():
        torch.nn.init.normal_(module.logits.weight, std=1.0)
    frames = make_batch(target_index=1)["frames"]
    cheap = net.clip_features(frames, target_index=1)
    net.context_grad = True
    full = net.clip_features(frames, target_index=1)
    for level in full:
        torch.testing.assert_close(cheap[level], full[level], rtol=1e-4, atol=1e-5)


def test_context_frames_run_without_grad(make_net: Callable, make_batch: Callable) -> None:
    net = make_net(backbone_norm="frozen").train()
    frames = make_batch()["frames"].requires_grad_(True)
    fused = net.clip_features(frames, target_index=2)
    fused["0"].sum().backward()
    assert frames.grad[:, 2].abs().sum() > 0
    assert frames.grad[:, :2].abs().sum() == 0


def test_eval_output_uses_spec_ids_and_original_size(make_net: Callable, make_batch: Callable) -> None:
    net = make_net(dataset="kitti_step", box_score_thresh=0.0).eval()
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


def test_prepare_target_maps_labels_and_drops_the_rest(make_net: Callable) -> None:
    net = make_net(dataset="kitti_step")
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
def test_streaming_equals_clip_inference(make_net: Callable, target_index: int) -> None:
    net = make_net(box_score_thresh=0.0).eval()
    for module in net.temporal_attention.values():
        torch.nn.init.normal_(module.logits.weight, std=1.0)
    torch.manual_seed(1)
    frames = torch.randn(5, 3, 64, 96)
    streamed = list(stream(net, frames, orig_size=(96, 144), target_index=target_index))
    assert len(streamed) == 5
    after = 2 - target_index
    for t in range(5):
        # the clip dataset's window: pad before the first and after the last frame by repetition
        window = [min(4, max(0, t + offset)) for offset in range(-target_index, after + 1)]
        with torch.no_grad():
            clip = net(frames[window][None], target_index=target_index, orig_sizes=[(96, 144)])[0]
        _assert_same_detections(streamed[t], clip)


def test_streaming_runs_the_backbone_once_per_frame(make_net: Callable) -> None:
    net = make_net().eval()
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


def test_bad_arguments_raise_one_line_errors() -> None:
    with pytest.raises(HVPSError, match="backbone: 'resnet9'"):
        MOTSNet(thing_ids=(4,), backbone="resnet9")
    with pytest.raises(HVPSError, match="anchor_sizes"):
        MOTSNet(thing_ids=(4,), backbone="resnet18", anchor_sizes=(32, 64))
    with pytest.raises(HVPSError, match="thing_ids"):
        MOTSNet(thing_ids=(4, 4), backbone="resnet18")
    with pytest.raises(HVPSError, match="detector: 'v3'"):
        MOTSNet(thing_ids=(4,), backbone="resnet18", detector="v3")


def test_the_network_records_how_it_was_built(make_net: Callable) -> None:
    net = make_net(dataset="kitti_step", temporal_attention=False)
    assert net.init_args["thing_ids"] == (11, 13) and net.init_args["temporal_attention"] is False
    assert net.init_args["backbone"] == "resnet18" and net.init_args["detector"] == "v1"
    rebuilt = MOTSNet(**net.init_args)
    assert rebuilt.state_dict().keys() == net.state_dict().keys()


def test_v2_detector_has_torchvisions_v2_heads(make_net: Callable, make_batch: Callable) -> None:
    net = make_net(detector="v2").train()
    keys = net.state_dict().keys()
    assert "backbone.fpn.inner_blocks.0.1.running_mean" in keys  # BatchNorm in the FPN
    assert "rpn.head.conv.1.0.weight" in keys  # two RPN convolutions
    assert "roi_heads.box_head.3.0.weight" in keys and "roi_heads.box_head.5.weight" in keys  # 4 convs + FC
    assert "roi_heads.mask_head.0.1.running_var" in keys  # BatchNorm in the mask head
    batch = make_batch()
    losses = net(batch["frames"], batch["targets"])
    assert all(torch.isfinite(v) for v in losses.values())


def test_freezing_the_backbone_norm_keeps_its_statistics(make_net: Callable) -> None:
    net = make_net(backbone_norm="auto")
    bn = net.backbone.body.layer1[0].bn1
    assert isinstance(bn, torch.nn.BatchNorm2d)
    torch.nn.init.uniform_(bn.weight)
    bn.running_var.uniform_(0.5, 2.0)
    expected = {k: v.clone() for k, v in net.state_dict().items() if not k.endswith("num_batches_tracked")}
    net.freeze_backbone_norm()
    frozen = net.backbone.body.layer1[0].bn1
    assert type(frozen).__name__ == "FrozenBatchNorm2d"
    assert not [k for k in net.state_dict() if k.startswith("backbone.body") and "num_batches" in k]
    for key, value in net.state_dict().items():
        torch.testing.assert_close(value, expected[key])
