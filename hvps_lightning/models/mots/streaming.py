"""Streaming inference: one backbone pass and one temporal-attention reduction per frame.

:class:`StreamingMOTS` keeps, for each of the last T frames, its FPN features and what
temporal attention computes from that frame alone
(:meth:`~hvps_lightning.models.mots.TemporalAttention.reduce_frame`); each new frame costs
one backbone pass, one reduction, the fusion of the window and the heads.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from hvps_lightning.models.mots.heads import Detections
from hvps_lightning.models.mots.net import MOTSNet


@dataclass(frozen=True)
class CachedFrame:
    """What the window keeps of one frame: its FPN features and their TA reductions (None without TA)."""

    features: OrderedDict[str, Tensor]
    reduced: OrderedDict[str, Tensor] | None


class StreamingMOTS:
    """Frame-by-frame inference that keeps the features of the last T - 1 frames.

    Each :meth:`push` runs the backbone once on the new frame and fuses the cached features
    with temporal attention. At a sequence start the window is padded by repeating the first
    frame (as the clip dataset does); with a centred window (``target_index < T - 1``) a
    frame's detections come out once its following frames have been pushed, and
    :meth:`flush` pads the end by repeating the last frame. The detections equal clip
    inference on the same windows (to floating-point tolerance).

    Args:
        net: the network, in eval mode.
        target_index: index of the target frame in the window (default T - 1: causal).

    Example:
        >>> import torch
        >>> from hvps_lightning.models.mots import MOTSNet
        >>> net = MOTSNet(thing_ids=(4,), backbone="resnet18", fpn_channels=32,
        ...               mask_head_channels=32, box_representation_size=64).eval()
        >>> streamer = StreamingMOTS(net)
        >>> [len(streamer.push(torch.randn(3, 64, 96))) for _ in range(3)]
        [1, 1, 1]
    """

    def __init__(self, net: MOTSNet, target_index: int | None = None) -> None:
        self.net = net
        self.num_frames = net.num_frames if net.temporal_attention is not None else 1
        self.target_index = self.num_frames - 1 if target_index is None else int(target_index)
        if not 0 <= self.target_index < self.num_frames:
            raise ValueError(f"target_index {self.target_index} outside a window of {self.num_frames} frames")
        self._frames: deque[CachedFrame] = deque(maxlen=self.num_frames)
        self._pending: deque[tuple[Any, tuple[int, int] | None]] = deque()
        self._image_size: tuple[int, int] = (0, 0)

    def reset(self) -> None:
        """Forget the cached frames (call between sequences; :meth:`flush` does it too)."""
        self._frames.clear()
        self._pending.clear()

    @torch.no_grad()
    def seed(self, frames: Tensor) -> None:
        """Start a sequence from real preceding frames (k, 3, H, W) instead of padding.

        ``k`` must be ``target_index`` (the frames before the next pushed one in the window).
        """
        self.reset()
        if frames.shape[0] != self.target_index:
            raise ValueError(
                f"seed needs {self.target_index} frames before the target, got {frames.shape[0]}"
            )
        if frames.shape[0] == 0:
            return
        features = self.net.frame_features(frames)
        for i in range(frames.shape[0]):
            one = OrderedDict((level, f[i : i + 1]) for level, f in features.items())
            self._frames.append(self._cache(one))

    @torch.no_grad()
    def push(
        self, frame: Tensor, orig_size: tuple[int, int] | None = None, meta: Any = None
    ) -> list[tuple[Any, Detections]]:
        """Add a normalised frame (3, H, W); return the ``(meta, detections)`` now complete."""
        if frame.dim() == 3:
            frame = frame[None]
        image_size = (int(frame.shape[-2]), int(frame.shape[-1]))
        return self.push_features(self.net.frame_features(frame), image_size, orig_size, meta)

    @torch.no_grad()
    def push_features(
        self,
        features: Mapping[str, Tensor],
        image_size: tuple[int, int],
        orig_size: tuple[int, int] | None = None,
        meta: Any = None,
    ) -> list[tuple[Any, Detections]]:
        """Like :meth:`push` for a frame whose FPN features (1, C, h, w per level) are known."""
        if self.net.training:
            raise RuntimeError("StreamingMOTS needs the network in eval mode (call net.eval())")
        frame = self._cache(OrderedDict(features))
        self._image_size = image_size
        if not self._frames:
            self._frames.extend([frame] * self.target_index)
        self._frames.append(frame)
        self._pending.append((meta, orig_size))
        return [self._emit()] if len(self._frames) == self.num_frames else []

    @torch.no_grad()
    def flush(self) -> list[tuple[Any, Detections]]:
        """Emit the frames still waiting for successors (centred window), then reset."""
        out = []
        while self._pending and self._frames:
            self._frames.append(self._frames[-1])
            out.append(self._emit())
        self.reset()
        return out

    def _cache(self, features: OrderedDict[str, Tensor]) -> CachedFrame:
        return CachedFrame(features, self.net.reduce_features(features) if self.num_frames > 1 else None)

    def _emit(self) -> tuple[Any, Detections]:
        meta, orig_size = self._pending.popleft()
        levels = list(self._frames[-1].features)
        clip = OrderedDict((level, [f.features[level] for f in self._frames]) for level in levels)
        reduced = None
        if self.num_frames > 1:
            reduced = OrderedDict((level, [f.reduced[level] for f in self._frames]) for level in levels)  # type: ignore[index]
        fused = self.net.fuse(clip, self.target_index, reduced)
        sizes = None if orig_size is None else [orig_size]
        detections = self.net.detect(fused, self._image_size, None, sizes)
        assert isinstance(detections, list)
        return meta, detections[0]


def stream(
    net: MOTSNet,
    frames: Iterable[Tensor],
    orig_size: tuple[int, int] | None = None,
    target_index: int | None = None,
) -> Iterator[Detections]:
    """Detections of each frame of a sequence, in order, with one backbone pass per frame.

    See :class:`StreamingMOTS` (a centred window yields each frame's detections once its
    following frames have arrived, the last ones at the end).
    """
    streamer = StreamingMOTS(net, target_index=target_index)
    for frame in frames:
        for _, det in streamer.push(frame, orig_size):
            yield det
    for _, det in streamer.flush():
        yield det
