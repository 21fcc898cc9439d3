"""Semantic segmentation networks: any segmentation-models-pytorch model, or an EfficientPS-style head.

``SemanticNet`` is the plain ``nn.Module`` that ``SemanticModule`` (``lightning_model``)
trains; building it loads no weights (the task's start-weights loader does: ImageNet encoder
weights through smp, this project's checkpoints, the official EfficientPS release through
:mod:`~hvps_lightning.models.semantic.efficientps`). ``arch`` picks either one of smp's
architectures (``Unet``, ``FPN``, ``DeepLabV3Plus``, ...) over any smp encoder, or
``"efficientps"``: the semantic head of EfficientPS (Mohan & Valada, IJCV 2021) on a 2-way FPN
over an smp encoder (an EfficientNet, as in the paper).

The EfficientPS semantic head as we read the paper:

* a **2-way FPN** turns the encoder features at strides 4, 8, 16 and 32 into P4..P32: a
  top-down path (coarse to fine, upsampling) and a bottom-up path (fine to coarse, strided
  separable convolutions) run in parallel from 1x1 lateral projections, and each output level
  is a 3x3 separable convolution of the sum of both paths;
* **large-scale feature extractors** (LSFE: two 3x3 separable convolutions) on the
  high-resolution levels P4 and P8, where fine detail matters and context is cheap to lose;
* **dense prediction cells** (DPC, Chen et al. 2018: five 3x3 separable convolutions with
  dilation rates (1,6), (1,1), (6,21), (18,15), (6,3) branching from the first, concatenated and
  projected) on the low-resolution levels P16 and P32, for long-range context;
* **mismatch correction** modules (MC: two 3x3 separable convolutions and a 2x bilinear
  upsampling) that carry the coarse context into the finer levels: DPC32 (upsampled) is added to
  DPC16, MC(that) to LSFE8, MC(that) to LSFE4;
* the four levels are upsampled to stride 4, concatenated and classified by a 1x1 convolution;
  the logits are upsampled bilinearly to the input size.

Differences from the official code, on purpose: BatchNorm + leaky ReLU instead of iABN-sync
(Lightning's ``sync_batchnorm`` turns it into SyncBN under DDP); the coarsest FPN input is the
encoder's last stage (320 channels for b0) rather than EfficientNet's 1x1 head convolution
(1280), since smp encoders stop before it; the optional 25 % hard-pixel bootstrapping of the
loss is ``SemanticModule(ohem_fraction=0.25)``.

Example:
    >>> import torch
    >>> net = SemanticNet(num_classes=7, arch="efficientps", encoder_name="efficientnet-b0",
    ...                   fpn_channels=32, head_channels=16)
    >>> net.eval()(torch.zeros(1, 3, 64, 96)).shape
    torch.Size([1, 7, 64, 96])
"""

from __future__ import annotations

import inspect
from collections.abc import Sequence
from typing import Any

import segmentation_models_pytorch as smp
import torch
import torch.nn.functional as F
from torch import nn

from hvps_lightning.errors import HVPSError
from hvps_lightning.models.net_config import constructor_arguments

#: the architecture name of the EfficientPS-style head; every other name is an smp architecture
EFFICIENTPS = "efficientps"

#: smp architecture names (lower case, as smp's registry keys them)
SMP_ARCHITECTURES: tuple[str, ...] = tuple(sorted(smp.MODEL_ARCHITECTURES_MAPPING))

#: dilation rates (height, width) of the five DPC branches, from Chen et al. (2018)
DPC_DILATIONS: tuple[tuple[int, int], ...] = ((1, 6), (1, 1), (6, 21), (18, 15), (6, 3))


def _norm_act(channels: int) -> list[nn.Module]:
    return [nn.BatchNorm2d(channels), nn.LeakyReLU(0.01, inplace=True)]


class SeparableConvBNAct(nn.Sequential):
    """Depthwise-separable 3x3 convolution (optionally dilated or strided), BatchNorm, leaky ReLU."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        dilation: tuple[int, int] | int = 1,
        stride: int = 1,
    ) -> None:
        dilation = (dilation, dilation) if isinstance(dilation, int) else tuple(dilation)
        super().__init__(
            nn.Conv2d(
                in_channels,
                in_channels,
                3,
                stride=stride,
                padding=dilation,
                dilation=dilation,
                groups=in_channels,
                bias=False,
            ),
            nn.Conv2d(in_channels, out_channels, 1, bias=False),
            *_norm_act(out_channels),
        )


class ConvBNAct(nn.Sequential):
    """1x1 convolution, BatchNorm, leaky ReLU."""

    def __init__(self, in_channels: int, out_channels: int) -> None:
        super().__init__(nn.Conv2d(in_channels, out_channels, 1, bias=False), *_norm_act(out_channels))


class TwoWayFPN(nn.Module):
    """The EfficientPS 2-way FPN: parallel top-down and bottom-up paths, summed per level.

    Args:
        in_channels: channels of the encoder features, finest level first (strides 4, 8, 16, 32).
        channels: channels of every output level.
    """

    def __init__(self, in_channels: Sequence[int], channels: int = 256) -> None:
        super().__init__()
        self.top_down_lateral = nn.ModuleList(ConvBNAct(c, channels) for c in in_channels)
        self.bottom_up_lateral = nn.ModuleList(ConvBNAct(c, channels) for c in in_channels)
        # one strided convolution per step from a finer level to the next coarser one
        self.bottom_up_down = nn.ModuleList(
            SeparableConvBNAct(channels, channels, stride=2) for _ in range(len(in_channels) - 1)
        )
        self.output = nn.ModuleList(SeparableConvBNAct(channels, channels) for _ in in_channels)

    def forward(self, features: Sequence[torch.Tensor]) -> list[torch.Tensor]:
        """Return the output levels, finest first, each with ``channels`` channels."""
        top_down = [lateral(f) for lateral, f in zip(self.top_down_lateral, features, strict=True)]
        for level in range(len(top_down) - 2, -1, -1):
            top_down[level] = top_down[level] + F.interpolate(
                top_down[level + 1], size=top_down[level].shape[-2:], mode="bilinear", align_corners=False
            )
        bottom_up = [lateral(f) for lateral, f in zip(self.bottom_up_lateral, features, strict=True)]
        for level in range(1, len(bottom_up)):
            down = self.bottom_up_down[level - 1](bottom_up[level - 1])
            if down.shape[-2:] != bottom_up[level].shape[-2:]:
                down = F.interpolate(
                    down, size=bottom_up[level].shape[-2:], mode="bilinear", align_corners=False
                )
            bottom_up[level] = bottom_up[level] + down
        return [out(td + bu) for out, td, bu in zip(self.output, top_down, bottom_up, strict=True)]


class LargeScaleFeatureExtractor(nn.Module):
    """LSFE: two 3x3 separable convolutions, for the high-resolution levels (P4, P8)."""

    def __init__(self, in_channels: int, out_channels: int = 128) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            SeparableConvBNAct(in_channels, out_channels), SeparableConvBNAct(out_channels, out_channels)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the extracted features (same resolution)."""
        return self.convs(x)


class DensePredictionCell(nn.Module):
    """DPC: dilated separable convolutions branching from a first one, concatenated and projected.

    Branch 0 (rate 1x6) reads the input; branches 1, 2, 3 read branch 0; branch 4 reads branch 3
    (the cell found by Chen et al.'s architecture search, as used by EfficientPS).
    """

    def __init__(self, in_channels: int, out_channels: int = 128, inner_channels: int | None = None) -> None:
        super().__init__()
        inner = inner_channels or in_channels
        self.branches = nn.ModuleList(
            SeparableConvBNAct(in_channels if i == 0 else inner, inner, dilation=rate)
            for i, rate in enumerate(DPC_DILATIONS)
        )
        self.project = ConvBNAct(inner * len(DPC_DILATIONS), out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Return the multi-rate context features (same resolution)."""
        first = self.branches[0](x)
        second = self.branches[1](first)
        third = self.branches[2](first)
        fourth = self.branches[3](first)
        fifth = self.branches[4](fourth)
        return self.project(torch.cat([first, second, third, fourth, fifth], dim=1))


class MismatchCorrection(nn.Module):
    """MC: two 3x3 separable convolutions, then bilinear upsampling to the finer level's size."""

    def __init__(self, channels: int = 128) -> None:
        super().__init__()
        self.convs = nn.Sequential(
            SeparableConvBNAct(channels, channels), SeparableConvBNAct(channels, channels)
        )

    def forward(self, x: torch.Tensor, size: Sequence[int]) -> torch.Tensor:
        """Correct ``x`` and upsample it to ``size`` (normally 2x)."""
        return F.interpolate(self.convs(x), size=tuple(size), mode="bilinear", align_corners=False)


class EfficientPSSemanticHead(nn.Module):
    """The EfficientPS semantic head over P4, P8, P16, P32 (see the module docstring).

    Args:
        in_channels: channels of each FPN level.
        num_classes: number of semantic classes.
        channels: channels of each branch (128 in the paper).
    """

    def __init__(self, in_channels: int, num_classes: int, channels: int = 128) -> None:
        super().__init__()
        self.lsfe4 = LargeScaleFeatureExtractor(in_channels, channels)
        self.lsfe8 = LargeScaleFeatureExtractor(in_channels, channels)
        self.dpc16 = DensePredictionCell(in_channels, channels)
        self.dpc32 = DensePredictionCell(in_channels, channels)
        self.mc16to8 = MismatchCorrection(channels)
        self.mc8to4 = MismatchCorrection(channels)
        self.classifier = nn.Conv2d(4 * channels, num_classes, 1)

    def forward(self, levels: Sequence[torch.Tensor]) -> torch.Tensor:
        """Return logits at the resolution of P4 (stride 4) from ``levels = [P4, P8, P16, P32]``."""
        p4, p8, p16, p32 = levels
        out32 = self.dpc32(p32)
        out16 = self.dpc16(p16) + _resize(out32, p16)
        out8 = self.lsfe8(p8) + self.mc16to8(out16, p8.shape[-2:])
        out4 = self.lsfe4(p4) + self.mc8to4(out8, p4.shape[-2:])
        merged = torch.cat([_resize(out32, p4), _resize(out16, p4), _resize(out8, p4), out4], dim=1)
        return self.classifier(merged)


def _resize(x: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    if x.shape[-2:] == like.shape[-2:]:
        return x
    return F.interpolate(x, size=like.shape[-2:], mode="bilinear", align_corners=False)


class EfficientPSSemanticNet(nn.Module):
    """smp encoder -> 2-way FPN -> EfficientPS semantic head -> logits at the input size.

    Args:
        encoder: an smp encoder of depth 5 (features at strides 1..32; the last four are used).
        num_classes: number of semantic classes.
        fpn_channels: channels of the FPN levels (256 in the paper).
        head_channels: channels of the head branches (128 in the paper).
    """

    def __init__(
        self, encoder: nn.Module, num_classes: int, fpn_channels: int = 256, head_channels: int = 128
    ) -> None:
        super().__init__()
        self.encoder = encoder
        self.fpn = TwoWayFPN(list(encoder.out_channels)[-4:], fpn_channels)
        self.head = EfficientPSSemanticHead(fpn_channels, num_classes, head_channels)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return (B, num_classes, H, W) logits for (B, 3, H, W) images."""
        features = self.encoder(images)[-4:]
        logits = self.head(self.fpn(features))
        return F.interpolate(logits, size=images.shape[-2:], mode="bilinear", align_corners=False)


def _build_encoder(encoder_name: str, encoder_weights: str | None = None) -> nn.Module:
    return smp.encoders.get_encoder(encoder_name, in_channels=3, depth=5, weights=encoder_weights)


def encoder_state(encoder_name: str, weights: str) -> dict[str, torch.Tensor]:
    """The pretrained ``weights`` (``imagenet``, ...) smp publishes for an encoder, under our keys.

    Keys are SemanticNet's (``model.encoder.*``); smp downloads them (Hugging Face hub) on first use.

    Raises:
        HVPSError: on a weight set the encoder does not have, or when the download fails.
    """
    check_encoder(encoder_name, weights)
    try:
        encoder = _build_encoder(encoder_name, weights)
    except OSError as exc:  # huggingface_hub / urllib / requests errors are all OSErrors
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise HVPSError(
            f"pretrained: loading {weights!r} weights for {encoder_name!r} needs internet (or a filled "
            f"Hugging Face cache); use pretrained: none to start from random weights ({detail})"
        ) from None
    return {f"model.encoder.{k}": v for k, v in encoder.state_dict().items()}


class SemanticNet(nn.Module):
    """A semantic segmentation network chosen by configuration.

    Inputs of any size work: they are padded (bottom/right, zeros = the mean colour of normalised
    images) to a multiple of the encoder's output stride, and the logits are cropped back.

    Args:
        num_classes: number of semantic classes (the void label is not a class).
        arch: ``"efficientps"`` or an smp architecture name (``Unet``, ``FPN``, ``DeepLabV3Plus``,
            ``UnetPlusPlus``, ``PSPNet``, ``Linknet``, ``MAnet``, ``PAN``, ``DeepLabV3``, ``UPerNet``,
            ``Segformer``, ...; case does not matter).
        encoder_name: an smp encoder (``efficientnet-b0`` .. ``-b7``, ``resnet34``, ``tu-<timm name>``, ...).
        fpn_channels: EfficientPS only: channels of the 2-way FPN.
        head_channels: EfficientPS only: channels of the semantic head branches.
        arch_kwargs: extra keyword arguments for the smp architecture (e.g. ``decoder_channels``).

    Raises:
        HVPSError: on an unknown architecture or encoder, or options the architecture does not take.
    """

    def __init__(
        self,
        num_classes: int,
        arch: str = EFFICIENTPS,
        encoder_name: str = "efficientnet-b0",
        fpn_channels: int = 256,
        head_channels: int = 128,
        arch_kwargs: dict[str, Any] | None = None,
    ) -> None:
        super().__init__()
        self.init_args = constructor_arguments()
        self.encoder_name = encoder_name
        self.num_classes = int(num_classes)
        self.arch = arch.lower()
        if self.num_classes < 1:
            raise HVPSError(f"num_classes must be >= 1, got {num_classes}")
        if self.arch != EFFICIENTPS and self.arch not in SMP_ARCHITECTURES:
            raise HVPSError(
                f"arch: unknown architecture {arch!r}; choose {EFFICIENTPS!r} or one of smp's: "
                f"{', '.join(smp.MODEL_ARCHITECTURES_MAPPING[a].__name__ for a in SMP_ARCHITECTURES)}"
            )
        check_encoder(encoder_name, None)
        if self.arch != EFFICIENTPS:
            _check_arch_kwargs(self.arch, encoder_name, arch_kwargs or {})
        try:
            if self.arch == EFFICIENTPS:
                if arch_kwargs:
                    raise HVPSError(f"arch_kwargs: not used by {EFFICIENTPS!r} (got {sorted(arch_kwargs)})")
                self.model: nn.Module = EfficientPSSemanticNet(
                    _build_encoder(encoder_name), self.num_classes, fpn_channels, head_channels
                )
            else:
                self.model = smp.create_model(
                    self.arch,
                    encoder_name=encoder_name,
                    encoder_weights=None,
                    classes=self.num_classes,
                    **(arch_kwargs or {}),
                )
        except TypeError as exc:  # an arch_kwargs key the architecture does not take
            raise HVPSError(f"arch_kwargs: {exc}") from None
        # inputs are padded to a multiple of this (smp refuses other sizes)
        self.output_stride = int(getattr(getattr(self.model, "encoder", None), "output_stride", 32))

    @property
    def classifier(self) -> nn.Conv2d:
        """The final convolution whose output channels are the classes (rows carried between stages)."""
        if isinstance(self.model, EfficientPSSemanticNet):
            return self.model.head.classifier
        return self.model.segmentation_head[0]

    def classifier_parameter_names(self) -> list[str]:
        """Names (relative to this module) of the class-specific parameters, first dimension = class."""
        prefix = next(name for name, module in self.named_modules() if module is self.classifier)
        return [f"{prefix}.{name}" for name, _ in self.classifier.named_parameters()]

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Return (B, num_classes, H, W) logits for normalised (B, 3, H, W) images."""
        height, width = images.shape[-2:]
        stride = self.output_stride
        pad_h, pad_w = (-height) % stride, (-width) % stride
        if pad_h or pad_w:
            images = F.pad(images, (0, pad_w, 0, pad_h))
        logits = self.model(images)
        return logits[..., :height, :width]


def _check_arch_kwargs(arch: str, encoder_name: str, arch_kwargs: dict[str, Any]) -> None:
    """Refuse keys the smp architecture does not name (smp passes unknown keys on silently)."""
    if encoder_name.startswith("tu-"):
        return  # smp forwards extra keys to timm-universal encoders
    model_class = smp.MODEL_ARCHITECTURES_MAPPING[arch]
    parameters = inspect.signature(model_class.__init__).parameters
    # what SemanticNet fixes: RGB in, raw logits out (no activation), no auxiliary classification head
    fixed = {"self", "encoder_name", "encoder_weights", "classes", "in_channels", "activation", "aux_params"}
    allowed = sorted(n for n, p in parameters.items() if n not in fixed and p.kind is not p.VAR_KEYWORD)
    unknown = sorted(set(arch_kwargs) - set(allowed))
    if unknown:
        raise HVPSError(
            f"arch_kwargs: {model_class.__name__} has no option(s) {', '.join(unknown)}; "
            f"known: {', '.join(allowed)}"
        )


def check_encoder(encoder_name: str, encoder_weights: str | None) -> None:
    """Validate the encoder name and weight set up front, with a one-line error."""
    if encoder_name.startswith("tu-"):
        return  # timm-universal encoders: timm validates the name when building
    encoders = smp.encoders.encoders
    if encoder_name not in encoders:
        raise HVPSError(
            f"encoder_name: unknown smp encoder {encoder_name!r} (e.g. efficientnet-b0, "
            f"resnet34, tu-<timm model>; see smp.encoders.get_encoder_names())"
        )
    if encoder_weights is not None:
        available = encoders[encoder_name].get("pretrained_settings", {})
        if encoder_weights not in available:
            raise HVPSError(
                f"pretrained: {encoder_weights!r} is not available for encoder {encoder_name!r}; "
                f"choose none or one of {sorted(available)}"
            )
