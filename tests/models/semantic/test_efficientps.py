"""Import of the official EfficientPS checkpoint layout, on a state dict made from its key/shape list.

The list below is the public PyTorch release's (DeepSceneSeg/EfficientPS) state-dict layout,
written out from its architecture for an EfficientNet-B0 backbone (the released models use
B5; the layout is the same with other widths and depths):

* ``backbone``: geffnet ``tf_efficientnet_b0`` built with ``se=False`` and InPlaceABN norms
  (``weight, bias, running_mean, running_var``): ``conv_stem`` 3->32 (3x3), ``bn1``; stage 0 one
  depthwise-separable block ``conv_dw, bn1, conv_pw, bn2``; stages 1-6 inverted-residual blocks
  ``conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3`` with (repeats, kernel, out) = (2, 3, 24),
  (2, 5, 40), (3, 3, 80), (3, 5, 112), (4, 5, 192), (1, 3, 320), expansion 6; ``conv_head``
  320->1280, ``bn2``. The FPN reads blocks 1, 2, 4 and the head: 24, 40, 112, 1280 channels.
* ``neck`` (2-way FPN, 256 channels): ``lateral_convs_top.<i>`` and ``lateral_convs_bottom.<j>``
  (level 3 - j) ``{conv, bn}`` 1x1, ``fpn_convs.<i>`` ``{conv, bn}`` dense 3x3.
* ``semantic_head`` (128 channels, 19 classes): ``lateral_convs_ss.{0,1}`` DPC (five separable
  256->256 convolutions ``convs.<k>.{depthwise_conv,pointwise_conv}.{conv,bn}``, then
  ``conv.{conv,bn}`` 1280->128), ``lateral_convs_ls.{0,1}`` LSFE (separable 256->128, 128->128),
  ``aligning_convs.{0,1}`` MC (separable 128->128 twice), ``conv_logits`` 512->19 with bias.
* the instance branch: ``rpn_head``, ``bbox_head``, ``mask_head`` (a few of their keys here).
"""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

from hvps_lightning.errors import HVPSError
from hvps_lightning.models.semantic import SemanticNet
from hvps_lightning.models.semantic.efficientps import convert_efficientps, is_efficientps_state
from hvps_lightning.models.semantic.lightning_model import SemanticModule
from hvps_lightning.models.state import fresh_modules
from hvps_lightning.structures.specs import get_spec

STAGES = [(2, 3, 24), (2, 5, 40), (3, 3, 80), (3, 5, 112), (4, 5, 192), (1, 3, 320)]
FEATURES = [24, 40, 112, 1280]


def _norm(prefix: str, channels: int, shapes: dict[str, tuple[int, ...]]) -> None:
    for tensor in ("weight", "bias", "running_mean", "running_var"):
        shapes[f"{prefix}.{tensor}"] = (channels,)


def _conv_norm(prefix: str, out: int, inp: int, k: int, shapes: dict[str, tuple[int, ...]]) -> None:
    shapes[f"{prefix}.conv.weight"] = (out, inp, k, k)
    _norm(f"{prefix}.bn", out, shapes)


def _separable(prefix: str, inp: int, out: int, shapes: dict[str, tuple[int, ...]]) -> None:
    _conv_norm(f"{prefix}.depthwise_conv", inp, 1, 3, shapes)
    _conv_norm(f"{prefix}.pointwise_conv", out, inp, 1, shapes)


def official_shapes() -> dict[str, tuple[int, ...]]:
    """The key -> shape list of the module docstring."""
    shapes: dict[str, tuple[int, ...]] = {"backbone.conv_stem.weight": (32, 3, 3, 3)}
    _norm("backbone.bn1", 32, shapes)
    shapes["backbone.blocks.0.0.conv_dw.weight"] = (32, 1, 3, 3)
    _norm("backbone.blocks.0.0.bn1", 32, shapes)
    shapes["backbone.blocks.0.0.conv_pw.weight"] = (16, 32, 1, 1)
    _norm("backbone.blocks.0.0.bn2", 16, shapes)
    width = 16
    for stage, (repeats, kernel, out) in enumerate(STAGES, start=1):
        for j in range(repeats):
            block, mid = f"backbone.blocks.{stage}.{j}", width * 6
            shapes[f"{block}.conv_pw.weight"] = (mid, width, 1, 1)
            _norm(f"{block}.bn1", mid, shapes)
            shapes[f"{block}.conv_dw.weight"] = (mid, 1, kernel, kernel)
            _norm(f"{block}.bn2", mid, shapes)
            shapes[f"{block}.conv_pwl.weight"] = (out, mid, 1, 1)
            _norm(f"{block}.bn3", out, shapes)
            width = out
    shapes["backbone.conv_head.weight"] = (1280, 320, 1, 1)
    _norm("backbone.bn2", 1280, shapes)
    for i, channels in enumerate(FEATURES):
        _conv_norm(f"neck.lateral_convs_top.{i}", 256, channels, 1, shapes)
        _conv_norm(f"neck.lateral_convs_bottom.{i}", 256, FEATURES[3 - i], 1, shapes)
        _conv_norm(f"neck.fpn_convs.{i}", 256, 256, 3, shapes)
    for i in range(2):
        dpc = f"semantic_head.lateral_convs_ss.{i}"
        for k in range(5):
            _separable(f"{dpc}.convs.{k}", 256, 256, shapes)
        _conv_norm(f"{dpc}.conv", 128, 1280, 1, shapes)
        _separable(f"semantic_head.lateral_convs_ls.{i}.convs.0", 256, 128, shapes)
        _separable(f"semantic_head.lateral_convs_ls.{i}.convs.1", 128, 128, shapes)
        for k in range(2):
            _separable(f"semantic_head.aligning_convs.{i}.convs.{k}", 128, 128, shapes)
    shapes["semantic_head.conv_logits.weight"] = (19, 512, 1, 1)
    shapes["semantic_head.conv_logits.bias"] = (19,)
    shapes["rpn_head.rpn_conv.weight"] = (256, 256, 3, 3)
    shapes["bbox_head.fc_cls.weight"] = (9, 1024)
    shapes["mask_head.conv_logits.weight"] = (8, 256, 1, 1)
    return shapes


def official_state(seed: int = 0) -> dict[str, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for key, shape in official_shapes().items():
        value = torch.randn(shape, generator=generator)
        state[key] = value.abs() + 0.5 if key.endswith("running_var") else value
    return state


def _net(encoder: str = "efficientnet-b0") -> SemanticNet:
    torch.manual_seed(0)
    return SemanticNet(19, arch="efficientps", encoder_name=encoder, fpn_channels=256, head_channels=128)


@pytest.mark.parametrize("encoder", ["efficientnet-b0", "timm-efficientnet-b0"])
def test_every_backbone_fpn_lateral_and_head_tensor_maps(encoder: str) -> None:
    official = official_state()
    assert is_efficientps_state(official)
    net = _net(encoder)
    conversion = convert_efficientps(official, net)
    unmapped = {line.split(":")[0] for line in conversion.unmapped}
    # dense 3x3 FPN outputs, the instance branch, the coarsest laterals
    dropped = ("neck.fpn_convs.", "rpn_head.", "bbox_head.", "mask_head.",
               "neck.lateral_convs_top.3.", "neck.lateral_convs_bottom.0.")  # fmt: skip
    expected = {k for k in official if k.startswith(dropped)}
    assert unmapped == expected
    assert all(": " in line for line in conversion.unmapped)  # each with its reason
    own = net.state_dict()
    wrong = [k for k, v in conversion.state.items() if v.shape != own[k].shape]
    assert not wrong  # every converted tensor fits
    stem = "model.encoder." + ("_conv_stem.weight" if encoder == "efficientnet-b0" else "conv_stem.weight")
    torch.testing.assert_close(conversion.state[stem], official["backbone.conv_stem.weight"])


def test_norms_classifier_and_folded_separable_convolutions_compute_what_the_official_ones_do() -> None:
    official = official_state()
    net = _net()
    conversion = convert_efficientps(official, net)
    state = conversion.state
    # InPlaceABN normalises with |w| + eps (1e-3 in the TF-ported backbone, 1e-5 elsewhere)
    stem_norm = official["backbone.bn1.weight"]
    torch.testing.assert_close(state["model.encoder._bn0.weight"], stem_norm.abs() + 1e-3)
    torch.testing.assert_close(
        state["model.encoder._blocks.1._bn0.weight"], official["backbone.blocks.1.0.bn1.weight"].abs() + 1e-3
    )
    torch.testing.assert_close(
        state["model.fpn.bottom_up_lateral.2.1.weight"],
        official["neck.lateral_convs_bottom.1.bn.weight"].abs() + 1e-5,
    )
    # classifier input blocks: official (P4, P8, P16, P32) -> ours (P32, P16, P8, P4)
    logits = official["semantic_head.conv_logits.weight"]
    torch.testing.assert_close(state["model.head.classifier.weight"][:, :128], logits[:, 384:])
    torch.testing.assert_close(state["model.head.classifier.weight"][:, 384:], logits[:, :128])
    assert any("folded" in note for note in conversion.notes)
    assert any("squeeze-excitation" in note for note in conversion.notes)

    net.load_state_dict(state, strict=False)
    net.eval()
    # one LSFE separable convolution, official formulation without the activation between the
    # depthwise and pointwise steps (the one part the fold cannot carry)
    x = torch.randn(2, 256, 9, 11)
    source = "semantic_head.lateral_convs_ls.1.convs.0"
    expected = F.conv2d(x, official[f"{source}.depthwise_conv.conv.weight"], padding=1, groups=256)
    expected = _abn(expected, official, f"{source}.depthwise_conv.bn")
    expected = F.conv2d(expected, official[f"{source}.pointwise_conv.conv.weight"])
    expected = F.leaky_relu(_abn(expected, official, f"{source}.pointwise_conv.bn"), 0.01)
    with torch.no_grad():
        ours = net.model.head.lsfe4.convs[0](x)
    torch.testing.assert_close(ours, expected, rtol=1e-4, atol=1e-4)
    # the squeeze-excitation gates pass their input through
    block = net.model.encoder._blocks[3]
    with torch.no_grad():
        pooled = torch.randn(1, block._se_reduce.in_channels, 1, 1)
        gate = torch.sigmoid(block._se_expand(F.silu(block._se_reduce(pooled))))
    assert gate.min() > 0.9999


def _abn(x: torch.Tensor, state: dict[str, torch.Tensor], prefix: str, eps: float = 1e-5) -> torch.Tensor:
    """InPlaceABN's normalisation in eval mode, without its activation."""
    weight = state[f"{prefix}.weight"].abs() + eps
    mean, var, bias = state[f"{prefix}.running_mean"], state[f"{prefix}.running_var"], state[f"{prefix}.bias"]
    return (x - mean.view(1, -1, 1, 1)) / (var.view(1, -1, 1, 1) + eps).sqrt() * weight.view(
        1, -1, 1, 1
    ) + bias.view(1, -1, 1, 1)


def test_init_checkpoint_converts_and_maps_cityscapes_classes(tmp_path: Path) -> None:
    official = official_state()
    path = tmp_path / "efficientps_kitti.pth"
    torch.save({"state_dict": official, "meta": {"epoch": 160}}, path)
    torch.manual_seed(0)
    net = SemanticNet(7, encoder_name="efficientnet-b0", fpn_channels=256, head_channels=128)
    module = SemanticModule(net=net, dataset="motchallenge_step", init_checkpoint=str(path))
    fresh = module.load_start_weights()
    # fresh: what the official network has no counterpart for (SE reduce convolutions; their gates
    # pass through), the coarsest laterals, our bottom-up strided convolutions and FPN outputs
    assert fresh_modules(module.net, fresh) == [
        *[f"model.encoder._blocks.{n}._se_reduce" for n in range(16)],
        "model.fpn.top_down_lateral.3",
        "model.fpn.bottom_up_lateral.3",
        "model.fpn.bottom_up_down",
        "model.fpn.output",
    ]
    # Cityscapes rows -> MOTChallenge-STEP (sidewalk <- road + sidewalk, then reordered input blocks)
    city = get_spec("kitti_panoptic").class_id
    logits = official["semantic_head.conv_logits.weight"]
    ours = torch.cat(logits.chunk(4, dim=1)[::-1], dim=1)
    classifier = module.net.classifier.weight.detach()
    torch.testing.assert_close(classifier[0], (ours[city("road")] + ours[city("sidewalk")]) / 2)
    torch.testing.assert_close(classifier[4], ours[city("person")])


def test_an_efficientps_checkpoint_into_another_architecture_is_a_one_line_error(tmp_path: Path) -> None:
    path = tmp_path / "efficientps.pth"
    torch.save({"state_dict": official_state()}, path)
    net = SemanticNet(7, arch="Unet", encoder_name="resnet18")
    module = SemanticModule(net=net, dataset="motchallenge_step", init_checkpoint=str(path))
    with pytest.raises(HVPSError, match="converts into net arch 'efficientps' only, not 'unet'"):
        module.load_start_weights()
