"""``hvps evaluate step`` throughput on 60 generated 1080p frames vs decoding the same PNGs in one thread.

The frames are the simulated MOTChallenge-STEP label maps of ``stq_throughput.py`` (27 people,
void rings, crowd, a prediction with shifted masks, switches, misses and noise), written as
STEP PNGs by the project's writer into a temporary folder: two sequences of 30 frames, ground
truth and prediction. Three things are timed, interleaved round by round, medians of
``--rounds``, wall clock:

* decode-only: ``cv2.imread(path, cv2.IMREAD_UNCHANGED)`` of every PNG (ground truth and
  prediction of the 60 frames) in one thread of this process, with the allocator setting the
  command uses (:func:`keep_frames_in_the_heap`: without it every decoded frame page-faults
  and decoding costs ~30 % more CPU); no start-up, no metric: the limit of a one-thread
  evaluator;
* the command ``python -m hvps_lightning.cli.main evaluate step ... --quiet`` as a new process
  (start-up, imports, listing, decoding, STQ and writing the JSON included), with its default
  ``--workers`` (the number of cores), with ``--workers 2`` and with ``--workers 1``.

Other agents may share this machine's cores: the ratios come from runs side by side in one
script, and each printed number says what it is.

Run: ``python benchmarks/evaluate_throughput.py [--frames 30] [--rounds 3]``. The last line is
``{"frames_per_s": .., "decode_frames_per_s": .., "ratio": ..}`` for the default workers;
the line before gives the ``--workers 1`` and ``--workers 2`` numbers.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2

sys.path.insert(0, str(Path(__file__).resolve().parent))
from stq_throughput import make_sequence

from hvps_lightning.evaluation.step_folders import keep_frames_in_the_heap
from hvps_lightning.formats.step_png import write_step_png

SEQUENCES = {"0002": 0, "0009": 1}  # name -> seed


def write_frames(root: Path, frames_per_sequence: int) -> list[Path]:
    """STEP PNGs of ground truth and prediction under ``root/{gt,pred}/<seq>/``; all their paths."""
    paths = []
    for sequence, seed in SEQUENCES.items():
        frames = make_sequence(frames_per_sequence, seed, num_people=27)
        for number, (target, prediction) in enumerate(frames):
            for side, labels in (("gt", target), ("pred", prediction)):
                path = root / side / sequence / f"{number:06d}.png"
                write_step_png(path, labels[..., 0], labels[..., 1])
                paths.append(path)
    return paths


def decode_only(paths: list[Path]) -> tuple[float, float]:
    """Wall and CPU seconds to decode every PNG in this thread."""
    start, cpu = time.perf_counter(), time.thread_time()
    for path in paths:
        if cv2.imread(str(path), cv2.IMREAD_UNCHANGED) is None:
            raise SystemExit(f"{path}: OpenCV could not decode it")
    return time.perf_counter() - start, time.thread_time() - cpu


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_command(root: Path, workers: int | None, frames: int) -> tuple[float, float]:
    """Wall and CPU seconds of one ``hvps evaluate step`` process, start-up included."""
    output = root / "stq.json"
    output.unlink(missing_ok=True)
    entry = "from hvps_lightning.cli.main import entry_point; entry_point()"  # what the hvps script runs
    command = [
        sys.executable, "-c", entry, "evaluate", "step",
        "--gt", str(root / "gt"), "--pred", str(root / "pred"), "--dataset", "motchallenge_step",
        "--output", str(output), "--quiet",
    ]  # fmt: skip
    if workers is not None:
        command += ["--workers", str(workers)]
    start, cpu = time.perf_counter(), _children_cpu()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    seconds, cpu_seconds = time.perf_counter() - start, _children_cpu() - cpu
    result = json.loads(output.read_text())
    assert result["num_frames"] == frames, result["num_frames"]
    return seconds, cpu_seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=30, help="frames per sequence (two sequences)")
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (median)")
    args = parser.parse_args()
    cv2.setNumThreads(1)
    keep_frames_in_the_heap()
    frames = len(SEQUENCES) * args.frames
    with tempfile.TemporaryDirectory(prefix="hvps-evaluate-bench-") as tmp:
        root = Path(tmp)
        paths = write_frames(root, args.frames)
        decode_only(paths[:4])  # warm-up: page cache, OpenCV's first call
        run_command(root, 1, frames)
        sides: dict[str, list[tuple[float, float]]] = {
            "decode": [], "default": [], "workers 2": [], "workers 1": []
        }  # fmt: skip
        for _ in range(args.rounds):
            sides["decode"].append(decode_only(paths))
            sides["default"].append(run_command(root, None, frames))
            sides["workers 2"].append(run_command(root, 2, frames))
            sides["workers 1"].append(run_command(root, 1, frames))
    fps = {side: frames / statistics.median(w for w, _ in times) for side, times in sides.items()}
    cpu = {side: statistics.median(c for _, c in times) for side, times in sides.items()}
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    print(
        f"{frames} frames 1920x1080 ({len(paths)} PNGs), {cores} cores, medians of {args.rounds} rounds; "
        f"frames/s (wall clock): decode-only 1 thread {fps['decode']:.1f}; hvps evaluate step, start-up "
        f"included: default workers {fps['default']:.1f}, --workers 2 {fps['workers 2']:.1f} "
        f"(ratio {fps['workers 2'] / fps['decode']:.2f}), --workers 1 {fps['workers 1']:.1f} "
        f"(ratio {fps['workers 1'] / fps['decode']:.2f}); CPU seconds: decode-only {cpu['decode']:.2f}, "
        f"command {cpu['default']:.2f} (work ratio {cpu['decode'] / cpu['default']:.2f})"
    )
    print(
        json.dumps(
            {
                "frames_per_s": fps["default"],
                "decode_frames_per_s": fps["decode"],
                "ratio": fps["default"] / fps["decode"],
            }
        )
    )


if __name__ == "__main__":
    main()
