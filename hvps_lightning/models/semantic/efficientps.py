"""Import of the official EfficientPS checkpoints into ``SemanticNet(arch="efficientps")``.

The public PyTorch release (DeepSceneSeg/EfficientPS, an mmdetection fork; its KITTI and
Cityscapes models) stores one ``state_dict`` with these parts (``<i>`` = pyramid level,
finest first; ``<n>`` = a norm, InPlaceABN with its leaky ReLU 0.01 built in)::

    backbone.*        geffnet tf_efficientnet_b<k>, built without squeeze-excitation:
                      conv_stem, bn1, blocks.<stage>.<j>.{conv_dw, bn1, conv_pw, bn2} (stage 0,
                      depthwise-separable) or .{conv_pw, bn1, conv_dw, bn2, conv_pwl, bn3}
                      (inverted residual), conv_head, bn2; taps after blocks 1, 2, 4 and bn2
    neck.*            2-way FPN: lateral_convs_top.<i>.{conv,bn}, lateral_convs_bottom.<j>.{conv,bn}
                      (level L-1-j), fpn_convs.<i>.{conv,bn} (dense 3x3)
    semantic_head.*   lateral_convs_ss.{0,1}: DPC on P32, P16; lateral_convs_ls.{0,1}: LSFE on
                      P8, P4; aligning_convs.{0,1}: MC 16->8, 8->4; each separable convolution
                      convs.<k>.{depthwise_conv,pointwise_conv}.{conv,bn}, DPC's projection
                      conv.{conv,bn}; conv_logits over the concatenation (P4, P8, P16, P32)
    rpn_head.*, bbox_head.*, mask_head.*   the instance branch (no counterpart here)

What maps (:func:`convert_efficientps`): the encoder, tensor by tensor, into smp's
``efficientnet-b<k>`` (flat ``_blocks.<n>`` numbering) or ``timm-efficientnet-b<k>``
(same names); the FPN's lateral 1x1 convolutions of every level the encoders share (the
coarsest official lateral reads EfficientNet's 1x1 head convolution, ours its last stage);
the whole semantic head (DPC, LSFE, MC and the classifier, whose input blocks are reordered
to ours). InPlaceABN normalises with ``|weight| + eps`` (eps 1e-3 in the TF-ported backbone,
1e-5 elsewhere), so that is the BatchNorm weight written.

What is adapted, and so only approximately the official function: the official separable
convolutions normalise (and activate) after the depthwise step as well; that norm is folded
into our depthwise weights and the following norm's mean, its leaky ReLU has no counterpart.
Our encoder keeps smp's Swish (the official blocks use the leaky ReLU of their norms) and
squeeze-excitation, which the official backbone does not have: the converter sets those to
pass through (gate ~1). What does not map (reported): the FPN's dense 3x3 output convolutions
(ours are separable), the coarsest laterals, and the instance branch; our bottom-up strided
convolutions and FPN outputs start fresh. The result is a starting point to finetune, not
the official network.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field

import torch
from torch import Tensor, nn

#: the neck/head InPlaceABN epsilon (mmdetection's norm default) and the TF-ported backbone's
HEAD_EPS = 1e-5
BACKBONE_EPS = 1e-3
#: logit bias of a squeeze-excitation gate that passes its input through (sigmoid(10) ~ 0.99995)
SE_PASS_BIAS = 10.0
#: official semantic-head modules -> ours (DPC on P32 and P16, LSFE on P8 and P4, MC 16->8 and 8->4)
HEAD_MODULES: dict[str, str] = {
    "lateral_convs_ss.0": "dpc32",
    "lateral_convs_ss.1": "dpc16",
    "lateral_convs_ls.0": "lsfe8",
    "lateral_convs_ls.1": "lsfe4",
    "aligning_convs.0": "mc16to8",
    "aligning_convs.1": "mc8to4",
}
#: per-block tensor names: official geffnet -> smp ``efficientnet-b<k>`` (EfficientNet-PyTorch)
_IR_NAMES = {"conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv", "bn2": "_bn1",
             "conv_pwl": "_project_conv", "bn3": "_bn2"}  # fmt: skip
_DS_NAMES = {"conv_dw": "_depthwise_conv", "bn1": "_bn1", "conv_pw": "_project_conv", "bn2": "_bn2"}
_TOP_NAMES = {"conv_stem": "_conv_stem", "bn1": "_bn0", "conv_head": "_conv_head", "bn2": "_bn1"}
_OFFICIAL_PARTS = ("backbone.", "neck.", "semantic_head.")
_INSTANCE_PARTS = ("rpn_head.", "bbox_head.", "mask_head.", "bbox_roi_extractor.", "mask_roi_extractor.")


def is_efficientps_state(state: Mapping[str, object]) -> bool:
    """Whether ``state`` has the official EfficientPS layout (its 2-way FPN and semantic head keys)."""
    return any(k.startswith("semantic_head.lateral_convs_") for k in state) and any(
        k.startswith("neck.lateral_convs_top.") for k in state
    )


@dataclass
class Conversion:
    """An official state dict in SemanticNet's keys, and what did not map.

    Attributes:
        state: tensors under our keys (``model.encoder.*``, ``model.fpn.*``, ``model.head.*``).
        unmapped: official keys without a counterpart, as ``"key: reason"``.
        notes: what was adapted on the way (folded norms, pass-through gates).
    """

    state: dict[str, Tensor] = field(default_factory=dict)
    unmapped: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def convert_efficientps(official: Mapping[str, Tensor], net: nn.Module) -> Conversion:
    """Map an official EfficientPS state dict onto ``net`` (a ``SemanticNet`` with ``arch="efficientps"``).

    Args:
        official: the checkpoint's ``state_dict`` (keys as in the module docstring).
        net: the network it goes into; its keys and shapes decide the encoder naming and
            which laterals fit.

    Returns:
        The converted tensors (shapes not checked here: the loader copies those that fit and
        reports the rest) and the report.
    """
    own = net.state_dict()
    conversion = Conversion()
    done: set[str] = set()
    _convert_encoder(official, own, conversion, done)
    _convert_fpn(official, own, conversion, done)
    _convert_head(official, conversion, done)
    for key in sorted(official):
        if key in done or key.endswith("num_batches_tracked"):
            continue
        if key.startswith(_INSTANCE_PARTS):
            reason = "instance branch (not part of the semantic network)"
        elif key.startswith("neck.fpn_convs."):
            reason = "dense 3x3 FPN output convolution (ours are separable)"
        elif key.startswith(_OFFICIAL_PARTS):
            reason = "no counterpart in this network"
        else:
            reason = "not an EfficientPS key"
        conversion.unmapped.append(f"{key}: {reason}")
    conversion.unmapped.sort()
    return conversion


# Encoder ------------------------------------------------------------------------------------
def _convert_encoder(
    official: Mapping[str, Tensor], own: Mapping[str, Tensor], out: Conversion, done: set[str]
) -> None:
    prefix = "model.encoder."
    lukemelas = f"{prefix}_conv_stem.weight" in own
    timm = f"{prefix}conv_stem.weight" in own
    if not (lukemelas or timm):
        return  # another encoder family: every backbone key is reported unmapped
    blocks = sorted({(int(m[1]), int(m[2])) for k in official
                     if (m := re.match(r"backbone\.blocks\.(\d+)\.(\d+)\.", k))})  # fmt: skip
    flat = {block: n for n, block in enumerate(blocks)}
    for key, value in official.items():
        if not key.startswith("backbone."):
            continue
        name = key[len("backbone.") :]
        match = re.fullmatch(r"blocks\.(\d+)\.(\d+)\.(\w+)\.(\w+)", name)
        if match:
            stage, j, layer, tensor = int(match[1]), int(match[2]), match[3], match[4]
            if lukemelas:
                inverted = f"backbone.blocks.{stage}.{j}.conv_pwl.weight" in official
                ours_layer = (_IR_NAMES if inverted else _DS_NAMES).get(layer)
                target = f"{prefix}_blocks.{flat[stage, j]}.{ours_layer}.{tensor}" if ours_layer else None
            else:
                target = f"{prefix}{name}"
        else:
            layer, _, tensor = name.partition(".")
            ours_layer = _TOP_NAMES.get(layer) if lukemelas else layer
            target = f"{prefix}{ours_layer}.{tensor}" if ours_layer else None
        if target is None or target not in own:
            continue
        is_norm = layer.startswith("bn")
        out.state[target] = _abn_weight(value, BACKBONE_EPS) if is_norm and tensor == "weight" else value
        done.add(key)
    # The official backbone has no squeeze-excitation: make ours pass its input through.
    expands = ("_se_expand.weight", "se.conv_expand.weight")
    gates = [k[: -len("weight")] for k in own if k.startswith(prefix) and k.endswith(expands)]
    for gate in gates:
        out.state[gate + "weight"] = torch.zeros_like(own[gate + "weight"])
        out.state[gate + "bias"] = torch.full_like(own[gate + "bias"], SE_PASS_BIAS)
    if gates:
        out.notes.append(
            f"{len(gates)} squeeze-excitation gates set to pass through (none in the official backbone)"
        )


def _abn_weight(weight: Tensor, eps: float) -> Tensor:
    """The BatchNorm weight equivalent to an InPlaceABN weight (which normalises with ``|w| + eps``)."""
    return weight.abs() + eps


# FPN ----------------------------------------------------------------------------------------
def _convert_fpn(
    official: Mapping[str, Tensor], own: Mapping[str, Tensor], out: Conversion, done: set[str]
) -> None:
    levels = len({k.split(".")[2] for k in official if k.startswith("neck.lateral_convs_top.")})
    for direction, ours in (("top", "top_down_lateral"), ("bottom", "bottom_up_lateral")):
        for index in range(levels):
            level = index if direction == "top" else levels - 1 - index
            source = f"neck.lateral_convs_{direction}.{index}"
            target = f"model.fpn.{ours}.{level}"
            conv = official.get(f"{source}.conv.weight")
            if conv is None or own.get(f"{target}.0.weight") is None:
                continue
            ours_in = own[f"{target}.0.weight"].shape[1]
            if conv.shape != own[f"{target}.0.weight"].shape:
                # the coarsest level: the official one reads EfficientNet's head convolution
                reason = f"lateral over {conv.shape[1]} input channels; ours reads {ours_in}"
                keys = [k for k in official if k.startswith(f"{source}.")]
                out.unmapped += [f"{k}: {reason}" for k in keys]
                done.update(keys)
                continue
            out.state[f"{target}.0.weight"] = conv
            done.add(f"{source}.conv.weight")
            _copy_norm(official, f"{source}.bn", out.state, f"{target}.1", HEAD_EPS, done)


def _copy_norm(
    official: Mapping[str, Tensor], source: str, state: dict[str, Tensor], target: str, eps: float,
    done: set[str],
) -> None:  # fmt: skip
    for tensor in ("weight", "bias", "running_mean", "running_var"):
        value = official.get(f"{source}.{tensor}")
        if value is None:
            continue
        state[f"{target}.{tensor}"] = _abn_weight(value, eps) if tensor == "weight" else value
        done.add(f"{source}.{tensor}")


# Semantic head ------------------------------------------------------------------------------
def _convert_head(official: Mapping[str, Tensor], out: Conversion, done: set[str]) -> None:
    folded = 0
    for source_module, ours in HEAD_MODULES.items():
        source = f"semantic_head.{source_module}"
        target = f"model.head.{ours}"
        pattern = re.compile(rf"{re.escape(source)}\.convs\.(\d+)\.")
        separable = sorted({int(m[1]) for k in official if (m := pattern.match(k))})
        for k in separable:
            branch = f"{target}.branches.{k}" if ours.startswith("dpc") else f"{target}.convs.{k}"
            folded += _convert_separable(official, f"{source}.convs.{k}", branch, out.state, done)
        if f"{source}.conv.conv.weight" in official:  # DPC's 1x1 projection
            out.state[f"{target}.project.0.weight"] = official[f"{source}.conv.conv.weight"]
            done.add(f"{source}.conv.conv.weight")
            _copy_norm(official, f"{source}.conv.bn", out.state, f"{target}.project.1", HEAD_EPS, done)
    if folded:
        out.notes.append(
            f"{folded} depthwise norms folded into the depthwise convolutions "
            "(their leaky ReLU has no counterpart)"
        )
    logits = official.get("semantic_head.conv_logits.weight")
    if logits is not None:
        # Official input order P4, P8, P16, P32; ours concatenates P32, P16, P8, P4.
        out.state["model.head.classifier.weight"] = torch.cat(logits.chunk(4, dim=1)[::-1], dim=1)
        done.add("semantic_head.conv_logits.weight")
    if "semantic_head.conv_logits.bias" in official:
        out.state["model.head.classifier.bias"] = official["semantic_head.conv_logits.bias"]
        done.add("semantic_head.conv_logits.bias")


def _convert_separable(
    official: Mapping[str, Tensor], source: str, target: str, state: dict[str, Tensor], done: set[str]
) -> int:
    """One separable convolution: official dw conv -> norm -> pw conv -> norm; ours dw -> pw -> norm.

    The depthwise norm's affine map ``a * x + b`` (per channel) is folded in: ``a`` scales our
    depthwise weights, and ``b`` through the pointwise weights shifts the following norm's mean.
    Returns 1 if a depthwise norm was folded.
    """
    dw = official.get(f"{source}.depthwise_conv.conv.weight")
    pw = official.get(f"{source}.pointwise_conv.conv.weight")
    if dw is None or pw is None:
        return 0
    norm = f"{source}.depthwise_conv.bn"
    names = [f"{norm}.{t}" for t in ("weight", "bias", "running_mean", "running_var")]
    pw_norm: dict[str, Tensor] = {}
    _copy_norm(official, f"{source}.pointwise_conv.bn", pw_norm, "n", HEAD_EPS, done)
    folded = all(n in official for n in names) and "n.running_mean" in pw_norm
    if folded:
        weight, bias, mean, var = (official[n].double() for n in names)
        scale = (weight.abs() + HEAD_EPS) / (var + HEAD_EPS).sqrt()
        shift = bias - mean * scale
        dw = (dw.double() * scale.view(-1, 1, 1, 1)).to(dw.dtype)
        mean_shift = pw[:, :, 0, 0].double() @ shift
        pw_norm["n.running_mean"] = (pw_norm["n.running_mean"].double() - mean_shift).to(pw.dtype)
        done.update(names)
    state[f"{target}.0.weight"] = dw
    state[f"{target}.1.weight"] = pw
    for name, value in pw_norm.items():
        state[f"{target}.2.{name[2:]}"] = value
    done.update({f"{source}.depthwise_conv.conv.weight", f"{source}.pointwise_conv.conv.weight"})
    return int(folded)
