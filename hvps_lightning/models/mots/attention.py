"""Temporal attention over the FPN features of a short clip (HVPS, section 3.1).

For one pyramid level, the features of the T frames of a clip are reduced per frame by a
1x1x1 convolution, stacked along a time axis, passed through 3D convolutions to one logit
per frame and pixel, and turned into weights by a softmax over the frames. The fused map
is the weighted sum of the frames' original features; RPN and RoI heads use it in place of
the target frame's features. The full-width features are never stacked (a list of the
frames' maps is enough), which keeps TA cheap next to the FPN it sits on.

Because the weights sum to one at every pixel, a clip of T identical frames gives the
plain features back, whatever the weights are. A constant indicator channel marks the
target frame, so one set of weights serves both the causal window (target last) and the
centred one.

Example:
    >>> import torch
    >>> attention = TemporalAttention(channels=8, hidden_channels=4)
    >>> clip = torch.randn(2, 3, 8, 5, 6)  # (B, T, C, H, W), or a list of T (B, C, H, W) maps
    >>> attention(clip, target_index=2).shape
    torch.Size([2, 8, 5, 6])
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def conv3d_as_conv2d(x: Tensor, conv: nn.Conv3d) -> Tensor:
    """Apply ``conv`` (a Conv3d, stride 1, "same" padding) to (B, C, T, H, W) with one 2D convolution.

    The temporal window of each output frame is folded into the channels, so the 3D kernel
    becomes a 2D one over ``C * k_t`` channels; the result equals ``conv(x)``. CPU backends
    run 2D convolutions several times faster than 3D ones of the same size, and with T = 3
    the fold costs only a copy of the (small) reduced features.
    """
    batch, channels, frames, height, width = x.shape
    k_t, k_h, k_w = conv.kernel_size
    pad_t = k_t // 2
    windows = F.pad(x, (0, 0, 0, 0, pad_t, pad_t)).unfold(2, k_t, 1)  # (B, C, T, H, W, k_t)
    windows = windows.permute(0, 2, 1, 5, 3, 4).reshape(batch * frames, channels * k_t, height, width)
    weight = conv.weight.reshape(conv.out_channels, channels * k_t, k_h, k_w)
    out = F.conv2d(windows, weight, conv.bias, padding=(k_h // 2, k_w // 2))
    return out.unflatten(0, (batch, frames)).transpose(1, 2)


class TemporalAttention(nn.Module):
    """Pixel-wise softmax attention over the T frames of one pyramid level.

    Args:
        channels: channels of the feature maps (the FPN width).
        hidden_channels: width of the 3D convolutions (kept small: the reduction is what
            makes TA cheap next to the backbone).
        num_layers: number of 3x3x3 convolutions between the reduction and the logits.
        kernel_size: temporal and spatial kernel size of those convolutions.
    """

    def __init__(
        self, channels: int, hidden_channels: int = 32, num_layers: int = 1, kernel_size: int = 3
    ) -> None:
        super().__init__()
        if channels < 1 or hidden_channels < 1 or num_layers < 0 or kernel_size < 1 or kernel_size % 2 == 0:
            raise ValueError(
                "TemporalAttention needs channels >= 1, hidden_channels >= 1, num_layers >= 0 "
                f"and an odd kernel_size; got {channels}, {hidden_channels}, {num_layers}, {kernel_size}"
            )
        self.reduce = nn.Conv3d(channels, hidden_channels, kernel_size=1)
        pad = kernel_size // 2
        width = hidden_channels + 1  # + the target-frame indicator
        self.body = nn.ModuleList()
        for _ in range(num_layers):
            self.body.append(nn.Conv3d(width, hidden_channels, kernel_size, padding=pad))
            width = hidden_channels
        # No bias: a constant added to every frame's logit cancels in the softmax.
        self.logits = nn.Conv3d(width, 1, kernel_size, padding=pad, bias=False)
        # Near-zero logits: the untrained module averages the frames (the plain features of a
        # static scene, not a random mixture), while every parameter still gets a gradient.
        nn.init.normal_(self.logits.weight, std=1e-3)

    def weights(self, clip: Tensor | Sequence[Tensor], target_index: int) -> Tensor:
        """Return the attention weights (B, T, H, W) of a clip; they sum to 1 over T.

        Args:
            clip: (B, T, C, H, W) features, or a sequence of T (B, C, H, W) maps.
            target_index: index of the target frame in the clip.
        """
        frames = _frames(clip)
        if not 0 <= target_index < len(frames):
            raise ValueError(f"target_index {target_index} outside a clip of {len(frames)} frames")
        # The 1x1x1 reduction, frame by frame (a 1x1 convolution each), before anything is stacked.
        weight = self.reduce.weight[:, :, 0]
        hidden = torch.stack([F.relu(F.conv2d(f, weight, self.reduce.bias)) for f in frames], dim=2)
        indicator = torch.zeros_like(hidden[:, :1])
        indicator[:, :, target_index] = 1.0
        hidden = torch.cat([hidden, indicator], dim=1)  # (B, hidden + 1, T, H, W)
        for conv in self.body:
            hidden = F.relu(conv3d_as_conv2d(hidden, conv))
        logits = conv3d_as_conv2d(hidden, self.logits)[:, 0]  # (B, T, H, W)
        # Softmax in float32: under autocast the logits may be half precision.
        return torch.softmax(logits.float(), dim=1)

    def forward(self, clip: Tensor | Sequence[Tensor], target_index: int) -> Tensor:
        """Fuse a clip ((B, T, C, H, W) or T maps (B, C, H, W)) into the target frame's map (B, C, H, W)."""
        frames = _frames(clip)
        weights = self.weights(frames, target_index).to(frames[0].dtype).unsqueeze(2)  # (B, T, 1, H, W)
        # A running multiply-add over the frames: no (B, T, C, H, W) stack or temporary.
        fused = frames[0] * weights[:, 0]
        for t in range(1, len(frames)):
            fused = fused.addcmul_(frames[t], weights[:, t])
        return fused


def _frames(clip: Tensor | Sequence[Tensor]) -> Sequence[Tensor]:
    if isinstance(clip, Tensor):
        if clip.dim() != 5:
            raise ValueError(
                f"TemporalAttention expects (B, T, C, H, W) features, got shape {tuple(clip.shape)}"
            )
        return clip.unbind(1)
    if len(clip) == 0 or any(f.dim() != 4 or f.shape != clip[0].shape for f in clip):
        raise ValueError("TemporalAttention expects T >= 1 feature maps of one (B, C, H, W) shape")
    return clip
