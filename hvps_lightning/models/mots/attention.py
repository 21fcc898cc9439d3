"""Temporal attention over the FPN features of a short clip (HVPS, section 3.1).

For one pyramid level, the features of the T frames of a clip are reduced per frame by a
1x1x1 convolution, stacked along a time axis, passed through 3D convolutions to one logit
per frame and pixel, and turned into weights by a softmax over the frames. The fused map
is the weighted sum of the frames' original features; RPN and RoI heads use it in place of
the target frame's features.

Because the weights sum to one at every pixel, a clip of T identical frames gives the
plain features back, whatever the weights are. A constant indicator channel marks the
target frame, so one set of weights serves both the causal window (target last) and the
centred one.

How it is computed (same numbers as the stacked 3D convolutions, in less time):

* The first 3D convolution (the logits' one with ``num_layers=0``) sees each frame through
  its K temporal taps; what one frame contributes to each tap depends on that frame alone.
  :meth:`TemporalAttention.reduce_frame` computes it (the 1x1x1 reduction, then the frame's
  K tap contributions); streaming inference keeps it per frame, so a frame is reduced once,
  not once per window it appears in. The indicator channel (1 on the target frame) adds a
  constant map per tap, computed from a map of ones (its zero padding shapes the borders).
* The logits convolution has one output channel, which convolution kernels handle badly
  (they vectorise over output channels). It runs as a channel reduction instead: a 1x1
  convolution to the K x k x k taps (a matrix product), then a shift-and-add over them.

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


def frame_taps(x: Tensor, weight: Tensor) -> Tensor:
    """What frames ``x`` (N, C, H, W) contribute to each temporal tap of a 3D convolution.

    Args:
        x: the frames' input channels.
        weight: the 3D kernel restricted to those channels, (O, C, K, k_h, k_w), odd sizes.

    Returns:
        (N, K, O, H, W): tap ``k`` of frame ``s`` is what ``s`` adds to the output of the frame
        ``s - (k - K // 2)`` (zero-padded spatially, as the 3D convolution pads).
    """
    out_channels, channels, k_t, k_h, k_w = weight.shape
    height, width = x.shape[-2:]
    if out_channels > 1:
        kernel = weight.permute(2, 0, 1, 3, 4).reshape(k_t * out_channels, channels, k_h, k_w)
        taps = F.conv2d(x, kernel, padding=(k_h // 2, k_w // 2))
        return taps.unflatten(1, (k_t, out_channels))
    # One output channel: reduce the channels once per (temporal, spatial) tap with a 1x1
    # convolution, then add the k_h x k_w spatial taps shifted into place.
    reduced = F.conv2d(x, weight[0].reshape(channels, k_t * k_h * k_w).T[:, :, None, None])
    padded = F.pad(reduced, (k_w // 2, k_w // 2, k_h // 2, k_h // 2)).unflatten(1, (k_t, k_h * k_w))
    out = padded[:, :, 0, :height, :width].clone()
    for i in range(k_h):
        for j in range(k_w):
            if i or j:
                out += padded[:, :, i * k_w + j, i : i + height, j : j + width]
    return out.unsqueeze(2)


def combine_taps(taps: Sequence[Tensor], extra: dict[int, Tensor] | None = None) -> list[Tensor]:
    """Sum the frames' tap contributions into each frame's 3D-convolution output (no bias).

    Args:
        taps: per frame, its (B, K, O, H, W) contributions (:func:`frame_taps`).
        extra: frame index -> (B or 1, K, O, H, W) contributions of a channel present on that
            frame only (the target indicator), added like a frame's.

    Returns:
        Per frame, the (B, O, H, W) output; frames outside the clip contribute zero (the 3D
        convolution's temporal zero padding).
    """
    frames = len(taps)
    k_t = taps[0].shape[1]
    pad = k_t // 2
    sources = [(s, t) for s, t in enumerate(taps)] + list((extra or {}).items())
    outputs: list[Tensor] = []
    for t in range(frames):
        total: Tensor | None = None
        for s, contribution in sources:
            k = s - t + pad
            if 0 <= k < k_t:
                term = contribution[:, k]
                total = term if total is None else total + term
        assert total is not None  # the frame itself always contributes (k = pad)
        outputs.append(total)
    return outputs


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

    @property
    def _first(self) -> nn.Conv3d:
        """The 3D convolution that reads the reduced frames and the indicator."""
        return self.body[0] if len(self.body) else self.logits

    def reduce_frame(self, features: Tensor) -> Tensor:
        """The part of TA that depends on one frame only: (B, C, H, W) -> (B, K, O, H, W).

        The 1x1x1 reduction followed by the frame's contributions to the K temporal taps of
        the first 3D convolution (:func:`frame_taps`). Cache it per frame when streaming.
        """
        reduced = F.relu(F.conv2d(features, self.reduce.weight[:, :, 0], self.reduce.bias))
        return frame_taps(reduced, self._first.weight[:, :-1])  # the last input channel is the indicator

    def weights_from_reduced(self, reduced: Sequence[Tensor], target_index: int) -> Tensor:
        """Attention weights (B, T, H, W) from the frames' :meth:`reduce_frame` outputs."""
        if not 0 <= target_index < len(reduced):
            raise ValueError(f"target_index {target_index} outside a clip of {len(reduced)} frames")
        first = self._first
        sample = reduced[0]
        ones = sample.new_ones((1, 1, *sample.shape[-2:]))
        indicator = frame_taps(ones, first.weight[:, -1:])  # (1, K, O, H, W)
        outputs = combine_taps(reduced, {target_index: indicator})
        if first.bias is not None:
            outputs = [out + first.bias.view(1, -1, 1, 1) for out in outputs]
        if first is self.logits:
            logits = torch.cat(outputs, dim=1)  # (B, T, H, W)
        else:
            hidden = F.relu(torch.stack(outputs, dim=2))  # (B, O, T, H, W)
            for conv in self.body[1:]:
                hidden = F.relu(conv3d_as_conv2d(hidden, conv))
            batch, channels, frames, height, width = hidden.shape
            flat = hidden.transpose(1, 2).reshape(batch * frames, channels, height, width)
            taps = frame_taps(flat, self.logits.weight).unflatten(0, (batch, frames)).unbind(1)
            logits = torch.cat(combine_taps(taps), dim=1)
        # Softmax in float32: under autocast the logits may be half precision.
        return torch.softmax(logits.float(), dim=1)

    def weights(self, clip: Tensor | Sequence[Tensor], target_index: int) -> Tensor:
        """Return the attention weights (B, T, H, W) of a clip; they sum to 1 over T.

        Args:
            clip: (B, T, C, H, W) features, or a sequence of T (B, C, H, W) maps.
            target_index: index of the target frame in the clip.
        """
        frames = _frames(clip)
        if not 0 <= target_index < len(frames):
            raise ValueError(f"target_index {target_index} outside a clip of {len(frames)} frames")
        return self.weights_from_reduced([self.reduce_frame(f) for f in frames], target_index)

    def forward(
        self,
        clip: Tensor | Sequence[Tensor],
        target_index: int,
        reduced: Sequence[Tensor] | None = None,
    ) -> Tensor:
        """Fuse a clip ((B, T, C, H, W) or T maps (B, C, H, W)) into the target frame's map (B, C, H, W).

        ``reduced``: the frames' :meth:`reduce_frame` outputs when the caller keeps them
        (streaming); computed here otherwise.
        """
        frames = _frames(clip)
        if reduced is None:
            weights = self.weights(frames, target_index)
        else:
            if len(reduced) != len(frames):
                raise ValueError(f"{len(reduced)} reduced frames for a clip of {len(frames)}")
            weights = self.weights_from_reduced(reduced, target_index)
        weights = weights.to(frames[0].dtype).unsqueeze(2)  # (B, T, 1, H, W)
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
