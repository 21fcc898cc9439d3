"""``Pipeline``: any video -> tracked people and a panoptic map per frame, streaming, in a few lines.

Example::

    from hvps_lightning import Pipeline

    pipe = Pipeline.from_bundle("model.hvps")
    for result in pipe("street.mp4"):
        print(result.name, [t.track_id for t in result.tracks], result.panoptic.shape)

Per frame, as ``hvps predict`` + ``hvps track`` do it on a dataset, through the same code:

1. the frame is resized to each network's input size (:func:`~hvps_lightning.data.loaders.resize_to`)
   and normalised (:mod:`hvps_lightning.data.transforms`), exactly as the DataModule prepares it;
2. the **MOTS network** runs on it with the temporal feature cache
   (:class:`~hvps_lightning.models.mots.StreamingMOTS`: one backbone pass per frame); its
   output becomes :class:`~hvps_lightning.structures.detections.FrameDetections`
   (:mod:`hvps_lightning.models.mots.outputs`, the task's own conversion);
3. the **semantic network** runs on ``batch_frames`` frames at a time, its logits become the
   class map at the frame's size (:mod:`hvps_lightning.models.semantic.outputs`);
4. the **tracker** (:class:`~hvps_lightning.tracking.tracker.SequenceTracker`) hands out each
   frame's tracks once no later frame can change them (backfilled tentative frames, tracklet
   re-ID; a few frames of lag), exactly :func:`~hvps_lightning.tracking.track_sequence`'s result;
5. the **fusion** (:func:`~hvps_lightning.panoptic.fusion.fuse_panoptic`) paints the tracks over
   the class map.

Memory stays bounded whatever the video's length: the networks' temporal window, the frames
of one semantic batch and the tracker's lag are all that is kept. Results come out in order,
a few frames behind the input (the tracker's lag); the last ones when the input ends.
No Lightning is imported: the networks are plain ``nn.Module`` s read from a bundle.
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import Any

import numpy as np
import torch

from hvps_lightning.data.loaders import resize_to
from hvps_lightning.data.transforms import normalize_batch_frames, normalize_frames
from hvps_lightning.errors import HVPSError
from hvps_lightning.formats.semantic_cache import resize_probabilities
from hvps_lightning.inference.frames import Frame, FrameSource, open_frames
from hvps_lightning.inference.model import InferenceModel, Size, as_tracker_config
from hvps_lightning.models.mots.outputs import to_frame_detections
from hvps_lightning.models.mots.streaming import StreamingMOTS
from hvps_lightning.models.semantic.outputs import class_probabilities, semantic_map
from hvps_lightning.panoptic.fusion import fuse_panoptic
from hvps_lightning.structures.detections import FrameDetections, TrackedObject
from hvps_lightning.structures.panoptic import PanopticFrame
from hvps_lightning.structures.specs import DatasetSpec
from hvps_lightning.tracking.camera_motion import CameraMotionEstimator
from hvps_lightning.tracking.config import TrackerConfig
from hvps_lightning.tracking.tracker import SequenceTracker
from hvps_lightning.viz.overlay import overlay_panoptic, overlay_tracks

#: the parts of the pipeline whose time :attr:`Pipeline.seconds` adds up
PARTS: tuple[str, ...] = ("prepare", "mots", "semantic", "tracker", "fusion")


@dataclass
class FrameResult:
    """What the pipeline outputs for one frame.

    Attributes:
        index: the frame's index in the input.
        name: the frame's name (file stem, or the index as ``%06d`` for videos and arrays).
        image: the frame as read, (h, w, 3) uint8 RGB.
        fused: the panoptic frame (``semantic`` and ``instance`` int32 maps at the frame's size).
        tracks: the frame's tracked objects, sorted by id: ``track_id``, ``label`` (class id),
            ``score``, ``box`` (x1, y1, x2, y2 in pixels), ``rle`` (compressed RLE mask).
        detections: the MOTS network's detections of the frame (before tracking).
        spec: the dataset spec of the class ids.
    """

    index: int
    name: str
    image: np.ndarray
    fused: PanopticFrame
    tracks: list[TrackedObject]
    detections: FrameDetections
    spec: DatasetSpec

    @cached_property
    def panoptic(self) -> np.ndarray:
        """(H, W, 2) int32: (semantic class, track id) per pixel, the layout of the STQ metric."""
        return self.fused.stacked()

    @property
    def semantic(self) -> np.ndarray:
        """(H, W) int32 class ids (the ignore label where void)."""
        return self.fused.semantic

    @property
    def instance(self) -> np.ndarray:
        """(H, W) int32 track ids (0 for stuff and crowd)."""
        return self.fused.instance

    def overlay(self, what: str = "panoptic", alpha: float = 0.5) -> np.ndarray:
        """The frame with its panoptic map (``what="panoptic"``) or its tracks only (``"tracks"``) on it.

        Things keep one colour per track id across frames, and their ids are written on them.
        """
        if what == "tracks":
            return overlay_tracks(self.image, self.tracks, alpha=alpha, size=self.fused.shape)
        if what != "panoptic":
            raise ValueError(f"what must be 'panoptic' or 'tracks', got {what!r}")
        return overlay_panoptic(self.image, self.fused.semantic, self.fused.instance, self.spec, alpha=alpha)


@dataclass
class _Pending:
    """A frame between reading and its result: what the fusion and the result will need."""

    frame: Frame
    semantic: np.ndarray | None = None
    probabilities: np.ndarray | None = None
    detections: FrameDetections | None = None


@dataclass
class RunStats:
    """What the last run did: frames in and out, tracks, seconds per part."""

    frames_read: int = 0
    frames_out: int = 0
    track_ids: set[int] = field(default_factory=set)
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(PARTS, 0.0))
    last_frame: str | None = None


def resolve_device(device: str | torch.device) -> torch.device:
    """``auto`` (CUDA when available, else CPU), ``cpu``, ``cuda`` or ``cuda:N``.

    Raises:
        HVPSError: for CUDA without a CUDA device, or an unknown device.
    """
    name = str(device)
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    try:
        resolved = torch.device(name)
    except RuntimeError:
        raise HVPSError(f"--device {name}: expected auto, cpu or cuda") from None
    if resolved.type == "cuda" and not torch.cuda.is_available():
        raise HVPSError(f"--device {name}: no CUDA device is available here (use --device cpu or auto)")
    if resolved.type not in ("cpu", "cuda"):
        raise HVPSError(f"--device {name}: expected auto, cpu or cuda")
    return resolved


class Pipeline:
    """Streaming video panoptic segmentation with tracking (see the module docstring).

    Args:
        model: the networks and settings (:class:`InferenceModel`; see :meth:`from_bundle`).
        device: ``auto``, ``cpu`` or ``cuda``.
        batch_frames: frames per semantic-network batch (the MOTS network streams frame by frame).
        image_size: (H, W) both networks run at (default: the size each was trained at, or
            the frames' own size if they were trained at native size).
        camera_motion: estimate the camera's motion between frames for the tracker (default:
            the tracker configuration's ``camera_motion``).
        tracker_config: replaces the model's tracker configuration (YAML path, dict or config).
    """

    def __init__(
        self,
        model: InferenceModel,
        device: str | torch.device = "auto",
        batch_frames: int = 4,
        image_size: Size | None = None,
        camera_motion: bool | None = None,
        tracker_config: str | Path | TrackerConfig | dict[str, Any] | None = None,
    ) -> None:
        if batch_frames < 1:
            raise HVPSError(f"--batch-frames {batch_frames}: must be >= 1")
        if image_size is not None and (len(image_size) != 2 or min(image_size) < 1):
            raise HVPSError(f"--image-size {image_size}: expected two positive numbers, height and width")
        self.model = model
        if tracker_config is not None:
            model.tracker = as_tracker_config(tracker_config)
        self.device = resolve_device(device)
        self.batch_frames = int(batch_frames)
        self.mots_size = tuple(image_size) if image_size is not None else model.mots_image_size
        self.semantic_size = tuple(image_size) if image_size is not None else model.semantic_image_size
        self.camera_motion = model.tracker.camera_motion if camera_motion is None else bool(camera_motion)
        model.mots.to(self.device).eval()
        model.semantic.to(self.device).eval()
        self.stats = RunStats()
        self.reset()

    # Construction -------------------------------------------------------------------------------
    @classmethod
    def from_bundle(cls, path: str | Path, device: str | torch.device = "auto", **options: Any) -> Pipeline:
        """A pipeline of the networks in a bundle (``hvps bundle``); ``options`` as for :class:`Pipeline`."""
        return cls(InferenceModel.load(path), device=device, **options)

    @classmethod
    def from_checkpoints(
        cls,
        mots_checkpoint: str | Path,
        semantic_checkpoint: str | Path,
        tracker_config: str | Path | TrackerConfig | dict[str, Any] | None = None,
        device: str | torch.device = "auto",
        fusion_rule: str | None = None,
        **options: Any,
    ) -> Pipeline:
        """A pipeline of the networks in two Lightning checkpoints (``hvps fit``'s ``last.ckpt``)."""
        extra = {"fusion_rule": fusion_rule} if fusion_rule is not None else {}
        model = InferenceModel.from_checkpoints(mots_checkpoint, semantic_checkpoint, tracker_config, **extra)
        return cls(model, device=device, **options)

    @property
    def spec(self) -> DatasetSpec:
        """The dataset spec of the outputs."""
        return self.model.spec

    # Running ------------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget the previous video (cached frames, tracks): the next frame starts a new one."""
        self._stream = StreamingMOTS(self.model.mots, target_index=self.model.target_index)
        self._tracker = SequenceTracker(self.model.tracker)
        self._camera = CameraMotionEstimator() if self.camera_motion else None
        self._pending: dict[int, _Pending] = {}
        self._tracked: deque[int] = deque()

    def open(
        self,
        source: str | Path | np.ndarray | Iterable[np.ndarray],
        start: int = 0,
        end: int | None = None,
        every: int = 1,
    ) -> FrameSource:
        """Check an input (video, folder, glob or arrays) and return its frames; see :func:`open_frames`."""
        if isinstance(source, FrameSource):
            return source
        min_size = None
        if self.mots_size is not None and self.semantic_size is not None:
            min_size = (
                max(self.mots_size[0], self.semantic_size[0]),
                max(self.mots_size[1], self.semantic_size[1]),
            )
        return open_frames(source, start, end, every, min_size=min_size)

    def __call__(
        self,
        source: str | Path | np.ndarray | Iterable[np.ndarray] | FrameSource,
        start: int = 0,
        end: int | None = None,
        every: int = 1,
    ) -> Iterator[FrameResult]:
        """Run on a video file, a folder or glob of images, or arrays; yield one result per frame, in order.

        Each call is a new video (:meth:`reset`). The input is checked before the first
        frame runs (:meth:`open`).

        Raises:
            HVPSError: for a bad input (naming it), or frames of different sizes.
        """
        return self.run(self.open(source, start, end, every))

    def run(self, frames: Iterable[Frame]) -> Iterator[FrameResult]:
        """Run on frames already opened (:meth:`open`, or any iterable of :class:`Frame`); a new video."""
        self.reset()
        self.stats = RunStats()
        return self._run(frames)

    def _run(self, frames: Iterable[Frame]) -> Iterator[FrameResult]:
        chunk: list[Frame] = []
        for frame in frames:
            chunk.append(frame)
            if len(chunk) == self.batch_frames:
                yield from self._process(chunk)
                chunk = []
        if chunk:
            yield from self._process(chunk)
        yield from self._finish()

    def _finish(self) -> Iterator[FrameResult]:
        """End the current video: yield the results still held back (window and tracker lag), then reset."""
        seconds = self.stats.seconds
        with torch.inference_mode():
            start = time.perf_counter()
            flushed = self._stream.flush()
            seconds["mots"] += time.perf_counter() - start
            for index, detections in flushed:
                yield from self._track(int(index), detections)
        start = time.perf_counter()
        final = self._tracker.flush()
        seconds["tracker"] += time.perf_counter() - start
        for objects in final:
            yield self._result(self._tracked.popleft(), objects)
        self.reset()

    def _inputs(self, frames: list[Frame], size: Size | None) -> torch.Tensor:
        """The frames resized to ``size`` (own size if ``None``), normalised: (B, 3, H, W) on the device."""
        target = size if size is not None else frames[0].size
        images = np.stack([resize_to(frame.image, target) for frame in frames])
        if self.device.type == "cpu":
            return normalize_frames(images)
        # uint8 to the device (a quarter of the bytes), normalised there: the same float32 values
        uint8 = torch.from_numpy(images).to(self.device, non_blocking=True)[:, None]
        return normalize_batch_frames(uint8, [target] * len(frames))[:, 0]

    def _process(self, frames: list[Frame]) -> Iterator[FrameResult]:
        seconds = self.stats.seconds
        model = self.model
        start = time.perf_counter()
        mots_input = self._inputs(frames, self.mots_size)
        semantic_input = (
            mots_input if self.semantic_size == self.mots_size else self._inputs(frames, self.semantic_size)
        )
        seconds["prepare"] += time.perf_counter() - start
        stuff_rule = model.fusion_rule == "stuff"
        with torch.inference_mode():
            start = time.perf_counter()
            logits = model.semantic(semantic_input)
            for frame, frame_logits in zip(frames, logits, strict=True):
                pending = _Pending(frame, semantic_map(frame_logits, frame.size))
                if stuff_rule:
                    pending.probabilities = class_probabilities(frame_logits)
                self._pending[frame.index] = pending
            seconds["semantic"] += time.perf_counter() - start
            self.stats.frames_read += len(frames)
            for frame, frame_input in zip(frames, mots_input, strict=True):
                start = time.perf_counter()
                emitted = self._stream.push(frame_input, frame.size, frame.index)
                seconds["mots"] += time.perf_counter() - start
                for index, detections in emitted:
                    yield from self._track(int(index), detections)

    def _track(self, index: int, output: dict[str, torch.Tensor]) -> Iterator[FrameResult]:
        seconds = self.stats.seconds
        pending = self._pending[index]
        start = time.perf_counter()
        detections = to_frame_detections(output, pending.frame.name, self.model.mask_threshold)
        seconds["mots"] += time.perf_counter() - start
        start = time.perf_counter()
        if self._camera is not None:
            transform = self._camera.update(pending.frame.image)
            height, width = pending.frame.image.shape[:2]
            if (height, width) != pending.frame.size:  # a reduced decode: shifts in original pixels
                transform[:, 2] *= (pending.frame.size[1] / width, pending.frame.size[0] / height)
            detections.camera_motion = transform
        pending.detections = detections
        self._tracked.append(index)
        final = self._tracker.push(detections)
        seconds["tracker"] += time.perf_counter() - start
        for objects in final:
            yield self._result(self._tracked.popleft(), objects)

    def _result(self, index: int, objects: list[TrackedObject]) -> FrameResult:
        pending = self._pending.pop(index)
        spec = self.model.spec
        assert pending.semantic is not None and pending.detections is not None
        start = time.perf_counter()
        probabilities = None
        if pending.probabilities is not None:
            probabilities = resize_probabilities(pending.probabilities, pending.frame.size)
        things = [o for o in objects if o.label in spec.thing_ids]
        where = pending.frame.name
        fused = fuse_panoptic(
            pending.semantic, things, spec, self.model.fusion_rule, probabilities, where=where
        )  # type: ignore[arg-type]
        self.stats.seconds["fusion"] += time.perf_counter() - start
        self.stats.frames_out += 1
        self.stats.track_ids.update(o.track_id for o in objects)
        self.stats.last_frame = pending.frame.name
        frame = pending.frame
        return FrameResult(frame.index, frame.name, frame.image, fused, objects, pending.detections, spec)
