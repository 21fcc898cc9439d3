"""``hvps infer``'s outputs: the pipeline's results written to a folder as they come.

Layout (the same as ``hvps track``'s, so ``hvps evaluate step|mots`` read it directly)::

    <out>/step/<seq>/<frame>.png   STEP panoptic PNGs            (--save step)
    <out>/mots/<seq>.txt           MOTS txt of the tracks        (--save mots)
    <out>/video/<seq>.mp4          overlay video, one colour per track id, ids written (--save video)
    <out>/tracks/<seq>.jsonl       one JSON object per frame: tracks with id, class, score,
                                   box and RLE mask             (--save json)
    <out>/summary.json             frames, tracks, seconds per part, frames/s, where it stopped

Every file appears complete or not at all: PNGs are written under temporary names and
renamed, the MOTS txt, JSON lines and video are streamed to temporary files renamed when the
input ends -- or when the user stops the run (:class:`StopRequest`, Ctrl-C once): the frames
read so far are finished and every output closed, so each file holds the same frames.
"""

from __future__ import annotations

import signal
import sys
import threading
import time
from collections.abc import Collection, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

from hvps_lightning.errors import HVPSError
from hvps_lightning.formats.step_png import write_step_png
from hvps_lightning.formats.tracked import STEP_DIR, MOTSTxtStream, TracksJsonlStream
from hvps_lightning.inference.frames import Frame, FrameSource
from hvps_lightning.inference.pipeline import FrameResult, Pipeline
from hvps_lightning.io import write_json
from hvps_lightning.structures.specs import DatasetSpec
from hvps_lightning.viz.video import Mp4Writer

SAVE_KINDS: tuple[str, ...] = ("step", "mots", "video", "json")
VIDEO_DIR = "video"
SUMMARY = "summary.json"


def parse_save(value: str | Collection[str]) -> set[str]:
    """``step,mots,video,json`` (any subset, comma separated) as a set.

    Raises:
        HVPSError: naming ``--save`` for an unknown or empty selection.
    """
    kinds = {k.strip() for k in value.split(",")} if isinstance(value, str) else {str(k) for k in value}
    kinds.discard("")
    unknown = sorted(kinds - set(SAVE_KINDS))
    if unknown or not kinds:
        raise HVPSError(f"--save {value}: choose a comma-separated subset of {','.join(SAVE_KINDS)}")
    return kinds


class OutputWriter:
    """Writes each :class:`FrameResult` of one sequence to the ``--save`` kinds of outputs (module docstring).

    Args:
        out: the output folder.
        sequence: the sequence name (sub-folder and file names).
        spec: the dataset spec (MOTS classes, class names).
        save: which outputs (:data:`SAVE_KINDS`).
        fps: frames per second of the overlay video.
    """

    def __init__(
        self, out: Path, sequence: str, spec: DatasetSpec, save: Collection[str], fps: float
    ) -> None:
        self.out = out
        self.sequence = sequence
        self.save = set(save)
        self.spec = spec
        self.frames = 0
        self._mots = MOTSTxtStream(out, sequence, spec) if "mots" in self.save else None
        self._json = TracksJsonlStream(out, sequence, spec) if "json" in self.save else None
        self._video = Mp4Writer(out / VIDEO_DIR / f"{sequence}.mp4", fps) if "video" in self.save else None

    def write(self, result: FrameResult) -> None:
        """Write one frame's outputs."""
        if "step" in self.save:
            write_step_png(self.out / STEP_DIR / self.sequence / f"{result.name}.png", *result.fused)
        if self._mots is not None:
            # MOTS frame numbers: the frame's name read as a number (as the datasets number their
            # frames), else its index in the input
            self._mots.add(int(result.name) if result.name.isdigit() else result.index, result.tracks)
        if self._json is not None:
            self._json.add(result.name, result.index, result.tracks)
        if self._video is not None:
            self._video.append(result.overlay())
        self.frames += 1

    def close(self) -> list[Path]:
        """Finish every streamed output; return the paths written (folders for the PNGs)."""
        written = [self.out / STEP_DIR / self.sequence] if "step" in self.save and self.frames else []
        for stream in (self._mots, self._json):
            if stream is not None:
                written.append(stream.close())
        if self._video is not None:
            if self.frames:
                written.append(self._video.close())
            else:
                self._video.abort()
        return written

    def abort(self) -> None:
        """Drop every streamed output (their temporary files); PNGs already written stay, complete."""
        for stream in (self._mots, self._json, self._video):
            if stream is not None:
                stream.abort()


class StopRequest:
    """Ctrl-C as a request: the first one lets the run finish the frames read so far; the second aborts.

    Use as a context manager around the run (main thread only; elsewhere it does nothing).
    """

    def __init__(
        self, message: str = "stopping after the frames read so far (Ctrl-C again to abort)"
    ) -> None:
        self.message = message
        self.requested = False
        self._previous: Any = None

    def __enter__(self) -> StopRequest:
        if threading.current_thread() is threading.main_thread():
            self._previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._previous is not None:
            signal.signal(signal.SIGINT, self._previous)
            self._previous = None

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        print(f"\n{self.message}", file=sys.stderr)

    def frames(self, frames: Iterable[Frame]) -> Iterator[Frame]:
        """``frames`` until a stop is requested (a frame being read when it comes is still yielded)."""
        iterator = iter(frames)
        while not self.requested:
            try:
                frame = next(iterator)
            except StopIteration:
                return
            yield frame


@dataclass
class RunSummary:
    """What :func:`run_to_folder` did (also written as ``summary.json``)."""

    sequence: str
    frames: int
    tracks: int
    seconds: float
    stopped: bool
    last_frame: str | None
    outputs: list[str] = field(default_factory=list)
    parts: dict[str, float] = field(default_factory=dict)

    @property
    def frames_per_s(self) -> float:
        """Frames written per second of wall time."""
        return self.frames / self.seconds if self.seconds > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        """The summary as JSON values."""
        return {
            "sequence": self.sequence,
            "frames": self.frames,
            "tracks": self.tracks,
            "seconds": round(self.seconds, 3),
            "frames_per_s": round(self.frames_per_s, 3),
            "seconds_per_part": {k: round(v, 3) for k, v in self.parts.items()},
            "stopped_early": self.stopped,
            "last_frame": self.last_frame,
            "outputs": self.outputs,
        }


def run_to_folder(
    pipeline: Pipeline,
    frames: FrameSource,
    out: str | Path,
    save: Collection[str] = ("step", "mots", "video"),
    fps: float | None = None,
    sequence: str | None = None,
    progress: bool = True,
    stop: StopRequest | None = None,
    extra: dict[str, Any] | None = None,
) -> RunSummary:
    """Run ``pipeline`` over ``frames`` and write the results to ``out`` as they come (module docstring).

    Args:
        pipeline: the pipeline.
        frames: the input (:meth:`Pipeline.open`).
        out: the output folder (created).
        save: which outputs (:data:`SAVE_KINDS`).
        fps: overlay video frame rate (default: the input video's, else 10).
        sequence: the sequence name (default: the input's name).
        progress: show a progress bar with frames/s and ETA on stderr.
        stop: a :class:`StopRequest` whose request ends the run early, cleanly.
        extra: more entries for ``summary.json`` (the command's settings).

    Raises:
        HVPSError: from the input or the pipeline; every streamed output is dropped then
            (PNGs written so far stay, each complete).
    """
    out = Path(out)
    name = sequence or frames.name
    rate = fps if fps is not None else (frames.fps or 10.0)
    if rate <= 0:
        raise HVPSError(f"--fps {rate}: must be > 0")
    existed = set(_tree(out))
    out.mkdir(parents=True, exist_ok=True)
    writer = OutputWriter(out, name, pipeline.spec, parse_save(save), rate)
    bar = _progress(frames.total, name) if progress else None
    started = time.perf_counter()
    source = stop.frames(frames) if stop is not None else frames
    try:
        for result in pipeline.run(source):
            writer.write(result)
            if bar is not None:
                bar.update(1)
    except BaseException:
        writer.abort()
        _remove_empty_folders(out, existed)
        raise
    finally:
        if bar is not None:
            bar.close()
    written = writer.close()
    stats = pipeline.stats
    summary = RunSummary(
        sequence=name,
        frames=writer.frames,
        tracks=len(stats.track_ids),
        seconds=time.perf_counter() - started,
        stopped=bool(stop is not None and stop.requested),
        last_frame=stats.last_frame,
        outputs=[str(p.relative_to(out)) for p in written],
        parts=dict(stats.seconds),
    )
    write_json(out / SUMMARY, {**summary.to_dict(), **(extra or {})})
    return summary


def _tree(root: Path) -> list[Path]:
    """``root`` and every folder under it (none if it does not exist)."""
    return [root, *(p for p in root.rglob("*") if p.is_dir())] if root.is_dir() else []


def _remove_empty_folders(root: Path, keep: set[Path]) -> None:
    """Remove the folders a failed run created and left empty (deepest first); ``keep`` existed before."""
    for folder in sorted(_tree(root), key=lambda p: len(p.parts), reverse=True):
        if folder not in keep and not any(folder.iterdir()):
            folder.rmdir()


def _progress(total: int | None, name: str) -> Any:
    from tqdm import tqdm

    return tqdm(total=total, unit="frame", desc=f"infer {name}", file=sys.stderr, dynamic_ncols=True)
