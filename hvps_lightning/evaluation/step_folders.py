"""STQ of two folders of STEP PNGs (``<seq>/<frame>.png``), as fast as the PNGs decode.

Frames are paired by name (every ground-truth frame needs a prediction) and listed up front,
so a missing prediction is reported before any frame is decoded. A pool of decoder threads
reads the PNGs straight into packed panoptic ids (:func:`read_step_panoptic`: OpenCV and zlib
release the GIL), a bounded number of frames ahead, and hands them to the metric in frame
order; the metric (:class:`STQAccumulator`, NumPy only) keeps per-tube statistics, so memory
does not grow with the length of a sequence. Nothing here imports torch.
"""

from __future__ import annotations

import ctypes
import functools
import os
import queue
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextlib import closing
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hvps_lightning.errors import HVPSError, file_error
from hvps_lightning.formats.step_png import STEP_LABEL_DIVISOR, read_step_panoptic
from hvps_lightning.metrics.functional_stq import STQAccumulator
from hvps_lightning.metrics.stq_inputs import STQInputError, STQLabelSpace

#: frames decoded ahead of the metric per decoder thread (bounds memory: 8 MB per 1080p PNG).
FRAMES_AHEAD_PER_WORKER = 2
#: glibc ``mallopt`` parameters
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3


def keep_frames_in_the_heap() -> bool:
    """Let the C library reuse the memory of freed frames instead of mapping fresh pages for each.

    glibc serves an allocation at or above its mmap threshold with a fresh mapping and unmaps it
    when it is freed, and an allocation of the size just freed still qualifies, so every decoded
    1080p frame (6-8 MB) costs ~2,000 page faults: about a quarter of the CPU time of decoding
    it. A 32 MiB threshold (glibc's maximum) and no trimming keep frame-sized blocks in the heap.
    Process-wide, hence for command-line tools to call; False where the C library is not glibc.
    """
    try:
        mallopt = ctypes.CDLL("libc.so.6").mallopt
    except (OSError, AttributeError):  # pragma: no cover - not glibc
        return False
    return bool(mallopt(_M_TRIM_THRESHOLD, 1 << 30)) and bool(mallopt(_M_MMAP_THRESHOLD, 1 << 25))


def default_workers() -> int:
    """The number of cores this process may run on."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


@dataclass(frozen=True)
class FramePair:
    """One ground-truth frame and its prediction."""

    sequence: str
    gt: Path
    pred: Path


def step_frame_pairs(
    gt_dir: Path, pred_dir: Path, only: Sequence[str] | None = None, warn: Callable[[str], None] | None = None
) -> list[FramePair]:
    """Every ground-truth frame with its prediction, sequences and frames sorted.

    ``warn`` hears of what is evaluated but looks wrong: predicted frames or sequences without
    ground truth (left out), and gaps in the numbering of a sequence's ground-truth frames.

    Raises:
        HVPSError: a folder is missing, ``only`` names a sequence the ground truth lacks, a
            prediction is missing, or the ground truth has no frames.
    """
    for folder, flag in ((gt_dir, "--gt"), (pred_dir, "--pred")):
        if not folder.is_dir():
            raise file_error(folder, f"{flag} is not a folder")
    sequences = sorted(p for p in gt_dir.iterdir() if p.is_dir())
    if only is not None:
        unknown = [s for s in only if s not in {p.name for p in sequences}]
        if unknown:
            names = ", ".join(p.name for p in sequences)
            raise HVPSError(f"--sequences: {', '.join(unknown)} not in {gt_dir} ({names})")
        sequences = [p for p in sequences if p.name in set(only)]
    pairs = []
    for sequence in sequences:
        gt_pngs = sorted(sequence.glob("*.png"))
        for gt_png in gt_pngs:
            pred_png = pred_dir / sequence.name / gt_png.name
            if not pred_png.is_file():
                raise file_error(pred_png, f"missing prediction for ground-truth frame {gt_png}")
            pairs.append(FramePair(sequence.name, gt_png, pred_png))
        if warn is not None:
            _warn_about_frames(sequence.name, {p.stem for p in gt_pngs}, pred_dir / sequence.name, warn)
    if warn is not None:
        evaluated = {p.name for p in sequences}
        others = sorted(p.name for p in pred_dir.iterdir() if p.is_dir() and p.name not in evaluated)
        if others and only is None:
            warn(
                f"--pred {pred_dir}: sequence(s) {_names(others)} have no ground truth and are not evaluated"
            )
    if not pairs:
        raise file_error(gt_dir, "no <seq>/<frame>.png files in the ground-truth folder")
    return pairs


def _names(names: Sequence[str], shown: int = 5) -> str:
    more = f" and {len(names) - shown} more" if len(names) > shown else ""
    return ", ".join(names[:shown]) + more


def _warn_about_frames(
    sequence: str, gt_frames: set[str], pred_folder: Path, warn: Callable[[str], None]
) -> None:
    extra = sorted(p.stem for p in pred_folder.glob("*.png") if p.stem not in gt_frames)
    if extra:
        warn(f"--pred {pred_folder}: frame(s) {_names(extra)} have no ground truth and are not evaluated")
    if gt_frames and all(name.isdigit() for name in gt_frames):
        numbers = sorted(int(name) for name in gt_frames)
        missing = sorted(set(range(numbers[0], numbers[-1] + 1)) - set(numbers))
        if missing:
            width = len(next(iter(gt_frames)))
            gaps = [f"{n:0{width}d}" for n in missing]
            warn(
                f"sequence {sequence}: ground-truth frame(s) {_names(gaps)} are missing (a gap in numbering)"
            )


def class_fit_warning(gt: np.ndarray, space: STQLabelSpace, class_names: Sequence[str] | None) -> str | None:
    """Why the classes of ``space`` may not be the ground truth's, from one frame's packed ids.

    Instance ids on a class the label space calls stuff mean the ground truth comes from another
    dataset (``--dataset kitti_step`` on MOTChallenge-STEP maps scores STQ 0 without it).
    """
    semantic = gt // space.label_divisor
    with_instance = np.unique(semantic[(gt % space.label_divisor) > 0])
    stuff = [int(c) for c in with_instance if int(c) not in space.things and int(c) != space.ignore_label]
    if not stuff:
        return None
    names = [class_names[c] if class_names and c < len(class_names) else str(c) for c in stuff]
    return (
        f"the ground truth has instance ids on class(es) {', '.join(names)}, which these classes treat as "
        "stuff: the classes do not fit the ground truth (is --dataset right?)"
    )


class FrameBuffers:
    """Decoded frames handed back after use and decoded into again.

    A fresh 8 MB array per 1080p PNG costs page faults worth ~10 % of decoding it; the pool
    holds at most the frames that were in flight at once.
    """

    def __init__(self) -> None:
        self._free: queue.SimpleQueue[np.ndarray] = queue.SimpleQueue()

    def take(self) -> np.ndarray | None:
        """A free (H, W) uint32 array, or None."""
        try:
            return self._free.get_nowait()
        except queue.Empty:
            return None

    def give(self, *arrays: np.ndarray) -> None:
        """Hand back arrays nobody reads any more."""
        for array in arrays:
            self._free.put(array)


def decode_frame_pair(pair: FramePair, buffers: FrameBuffers | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Packed (H, W) uint32 panoptic ids of ground truth and prediction (sizes checked)."""
    gt = read_step_panoptic(pair.gt, out=buffers.take() if buffers else None)
    pred = read_step_panoptic(pair.pred, out=buffers.take() if buffers else None)
    if pred.shape != gt.shape:
        (h, w), (gh, gw) = pred.shape, gt.shape
        raise file_error(pair.pred, f"prediction is {h}x{w} but the ground truth {pair.gt} is {gh}x{gw}")
    return gt, pred


def decoded_in_order(
    pairs: Iterable[FramePair],
    workers: int,
    decode: Callable[[FramePair], Any] = decode_frame_pair,
) -> Iterator[tuple[FramePair, Any]]:
    """``(pair, decode(pair))`` in the order of ``pairs``, decoded by ``workers`` threads ahead of the caller.

    Even one worker overlaps decoding with the caller's work on the previous frame. At most
    ``workers * FRAMES_AHEAD_PER_WORKER`` frames wait decoded. An error of a worker is raised
    here, at its frame; frames queued behind it are cancelled.
    """
    workers = max(1, workers)
    queue = iter(pairs)
    pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="hvps-decode")
    pending: deque[tuple[FramePair, Future[Any]]] = deque()
    try:
        for pair in queue:
            pending.append((pair, pool.submit(decode, pair)))
            if len(pending) >= workers * FRAMES_AHEAD_PER_WORKER:
                break
        while pending:
            pair, future = pending.popleft()
            decoded = future.result()
            following = next(queue, None)
            if following is not None:
                pending.append((following, pool.submit(decode, following)))
            yield pair, decoded
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def evaluate_step_folders(
    gt_dir: str | Path,
    pred_dir: str | Path,
    num_classes: int,
    things: Sequence[int],
    ignore_label: int = 255,
    class_names: Sequence[str] | None = None,
    sequences: Sequence[str] | None = None,
    workers: int | None = None,
    progress: Callable[[int, int], None] | None = None,
    warn: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """STQ of two folders of STEP PNGs (``<seq>/<frame>.png``).

    Args:
        gt_dir: ground-truth folder.
        pred_dir: prediction folder (same layout; every ground-truth frame needs a prediction).
        num_classes: number of semantic classes.
        things: thing class ids.
        ignore_label: void label.
        class_names: names for ``iou_per_class`` (default ``"0"``, ``"1"``, ...).
        sequences: restrict the evaluation to these ground-truth sequences.
        workers: decoder threads (default: the number of cores), beside this thread's metric.
        progress: called as ``progress(frames_done, frames_total)`` after every frame.
        warn: told, one line each, of frames left out, gaps in the frame numbering, and ground
            truth whose instances lie on classes the label space calls stuff.

    Returns:
        ``stq``, ``aq``, ``sq``, ``iou_per_class``, ``per_sequence``, ``num_frames``.

    Raises:
        HVPSError: naming the file: a missing folder or prediction frame, an unreadable PNG,
            frames of different sizes, or label values outside the classes.
    """
    pairs = step_frame_pairs(Path(gt_dir), Path(pred_dir), sequences, warn)
    space = STQLabelSpace(num_classes, tuple(things), ignore_label, STEP_LABEL_DIVISOR)
    metric = STQAccumulator(space, class_names)
    workers = default_workers() if workers is None else workers
    buffers = FrameBuffers()
    frames = decoded_in_order(pairs, workers, functools.partial(decode_frame_pair, buffers=buffers))
    class_fit_checked = False  # one frame with instances tells
    with closing(frames):  # closing stops the decoders on errors
        for done, (pair, (gt, pred)) in enumerate(frames, start=1):
            try:
                metric.update(pred[None], gt[None], pair.sequence)
            except STQInputError as exc:
                path = pair.pred if exc.which == "preds" else pair.gt
                raise file_error(path, str(exc).split(": ", 1)[1]) from None
            if warn is not None and not class_fit_checked:
                problem = class_fit_warning(gt, space, class_names)
                class_fit_checked = bool((gt % space.label_divisor).any()) or problem is not None
                if problem is not None:
                    warn(problem)
            buffers.give(gt, pred)  # the metric keeps statistics, not frames
            if progress is not None:
                progress(done, len(pairs))
    return metric.compute()
