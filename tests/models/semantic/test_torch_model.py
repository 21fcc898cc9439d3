from __future__ import annotations

import pytest
import torch

from hvps_lightning.errors import HVPSError
from hvps_lightning.models.semantic.torch_model import (
    DensePredictionCell,
    EfficientPSSemanticHead,
    LargeScaleFeatureExtractor,
    MismatchCorrection,
    SemanticNet,
    TwoWayFPN,
    encoder_state,
)

ARCHS = ["efficientps", "Unet", "FPN", "DeepLabV3Plus"]


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


@pytest.mark.parametrize("arch", ARCHS)
def test_forward_shapes_any_input_size(arch: str) -> None:
    net = SemanticNet(
        num_classes=5, arch=arch, encoder_name="efficientnet-b0", fpn_channels=16, head_channels=8
    )
    net.train()
    images = torch.randn(2, 3, 50, 70)  # not a multiple of the output stride: padded, then cropped
    logits = net(images)
    assert logits.shape == (2, 5, 50, 70)
    logits.logsumexp(1).mean().backward()
    assert net.classifier.weight.grad is not None and net.classifier.weight.grad.abs().sum() > 0
    assert net.classifier.out_channels == 5
    names = dict(net.named_parameters())
    assert [names[n].shape[0] for n in net.classifier_parameter_names()] == [5, 5]


def test_padding_does_not_leak_into_the_crop() -> None:
    net = SemanticNet(num_classes=3, arch="Unet", encoder_name="resnet18").eval()
    images = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        full = net(images)
        cropped = net(images[..., :60, :60])
    assert cropped.shape == (1, 3, 60, 60)
    assert not torch.allclose(full[..., :60, :60], cropped)  # padding really happened (a different input)
    assert torch.isfinite(cropped).all()


def test_efficientps_blocks_shapes() -> None:
    levels_in = [torch.randn(2, c, s, s) for c, s in zip((24, 40, 112, 320), (32, 16, 8, 4), strict=True)]
    fpn = TwoWayFPN([24, 40, 112, 320], channels=32)
    levels = fpn(levels_in)
    assert [tuple(p.shape) for p in levels] == [
        (2, 32, 32, 32),
        (2, 32, 16, 16),
        (2, 32, 8, 8),
        (2, 32, 4, 4),
    ]
    assert tuple(LargeScaleFeatureExtractor(32, 16)(levels[0]).shape) == (2, 16, 32, 32)
    assert tuple(DensePredictionCell(32, 16)(levels[3]).shape) == (2, 16, 4, 4)
    assert tuple(MismatchCorrection(16)(torch.randn(2, 16, 8, 8), (16, 16)).shape) == (2, 16, 16, 16)
    head = EfficientPSSemanticHead(32, num_classes=7, channels=16)
    assert tuple(head(levels).shape) == (2, 7, 32, 32)  # stride-4 logits
    assert head.classifier.in_channels == 4 * 16  # four branches concatenated


def test_dpc_uses_the_published_dilation_rates() -> None:
    dpc = DensePredictionCell(8, 4)
    rates = [branch[0].dilation for branch in dpc.branches]
    assert rates == [(1, 6), (1, 1), (6, 21), (18, 15), (6, 3)]


def test_efficientps_head_sees_all_levels() -> None:
    head = EfficientPSSemanticHead(8, num_classes=3, channels=4).eval()
    levels = [torch.randn(1, 8, s, s) for s in (16, 8, 4, 2)]
    with torch.no_grad():
        base = head(levels)
        for i in range(4):
            changed = list(levels)
            changed[i] = torch.randn_like(levels[i])
            assert not torch.allclose(head(changed), base), f"level {i} has no effect"


def test_bad_configuration_is_a_one_line_error() -> None:
    with pytest.raises(HVPSError, match="arch: unknown architecture 'Unet3'"):
        SemanticNet(3, arch="Unet3")
    with pytest.raises(HVPSError, match="encoder_name: unknown smp encoder 'effnet'"):
        SemanticNet(3, arch="Unet", encoder_name="effnet")
    with pytest.raises(HVPSError, match="pretrained: 'coco' is not available for encoder 'resnet18'"):
        encoder_state("resnet18", "coco")
    with pytest.raises(HVPSError, match="arch_kwargs"):
        SemanticNet(3, arch="Unet", encoder_name="resnet18", arch_kwargs={"no_such_option": 1})


def test_imagenet_weights_offline_say_they_need_internet(monkeypatch: pytest.MonkeyPatch) -> None:
    import huggingface_hub.constants

    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)  # fail fast, no retries
    monkeypatch.setenv("HF_HOME", "/nonexistent-hf-home")
    monkeypatch.setenv("TORCH_HOME", "/nonexistent-torch-home")
    with pytest.raises(HVPSError, match=r"pretrained: loading 'imagenet' weights .* needs internet") as info:
        encoder_state("efficientnet-b0", "imagenet")
    assert "\n" not in str(info.value)


def test_building_loads_no_weights_and_records_its_arguments() -> None:
    decoder = {"decoder_channels": [16] * 5}
    net = SemanticNet(5, arch="Unet", encoder_name="resnet18", arch_kwargs=decoder)
    assert net.init_args == {"num_classes": 5, "arch": "Unet", "encoder_name": "resnet18",
                             "fpn_channels": 256, "head_channels": 128, "arch_kwargs": decoder}  # fmt: skip
    assert SemanticNet(**net.init_args).state_dict().keys() == net.state_dict().keys()
