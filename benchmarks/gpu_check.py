"""GPU check of the paper-scale configs: training speed and memory, and STQ on the device.

Run when a GPU is at hand (`python benchmarks/gpu_check.py`):

1. ``hvps synth`` writes a MOTChallenge-STEP root at full resolution (1920x1080 by default);
2. the paper-scale MOTS config (``stages/mot_step/mots`` + ``paper/mots``: ResNet-50 FPN, native
   resolution, mixed precision) trains ``--steps`` optimiser steps on one GPU, then the
   paper-scale semantic config (``stages/mot_step/semantic`` + ``paper/semantic``:
   EfficientNet-B5 EfficientPS-style head); random start weights (nothing downloads), no
   validation, no checkpoints, no logger. Throughput is timed over the steps after the first
   ``--warmup`` (cuDNN autotuning, allocator growth), the device synchronised around each step;
3. STQ of random panoptic frames at that resolution on device tensors equals the NumPy core's.

Prints one JSON line: ``{"benchmark": "gpu_check", "device": ..., "mots": {"images_per_s",
"step_s", "max_memory_gb"}, "semantic": {...}, "stq_cuda_equals_cpu": bool, ...}``, where an
image is a target frame of a training item (a MOTS item holds ``clips_per_item`` clips of 3
frames; ``frames_per_s`` counts every frame the backbone sees). ``--cpu`` runs the same on the
CPU (float32; the STQ check compares torch CPU tensors with the NumPy core) for smoke tests with
tiny sizes: ``--cpu --height 64 --width 96 --steps 3 --frames 6``.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from hvps_lightning.cli.config import expand_config_args
from hvps_lightning.data.datamodule import HVPSDataModule
from hvps_lightning.data.synthetic.generate import generate_dataset
from hvps_lightning.lightning.cli import HVPSLightningCLI
from hvps_lightning.metrics import STQ
from hvps_lightning.models.base import BaseTask
from hvps_lightning.structures.specs import get_spec


class StepTimer(L.Callback):
    """Wall time of every training step, the device synchronised at both ends."""

    def __init__(self, device: torch.device) -> None:
        self.device = device
        self.times: list[float] = []
        self._start = 0.0

    def _sync(self) -> None:
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:  # fmt: skip
        self._sync()
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        self._sync()
        self.times.append(time.perf_counter() - self._start)


def train(model: str, root: Path, work: Path, args: argparse.Namespace, device: torch.device) -> dict:
    """Train the paper-scale config of ``model`` for ``args.steps`` steps; its speed and peak memory."""
    configs = expand_config_args(["--config", f"stages/mot_step/{model}", "--config", f"paper/{model}"])
    overrides = [
        "--data.init_args.root", str(root), "--data.init_args.val_split", "null",
        "--data.init_args.num_workers", str(args.workers), "--data.init_args.pin_memory", str(not args.cpu),
        "--model.init_args.pretrained", "none", "--model.init_args.init_from", "null",
        "--trainer.devices", "1", "--trainer.strategy", "auto", "--trainer.sync_batchnorm", "false",
        "--trainer.accelerator", "cpu" if args.cpu else "gpu",
        "--trainer.precision", "32-true" if args.cpu else "16-mixed",
        "--trainer.max_steps", str(args.steps), "--trainer.max_epochs", "-1",
        "--trainer.logger", "false", "--trainer.callbacks", "[]", "--trainer.enable_checkpointing", "false",
        "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
        "--trainer.default_root_dir", str(work / model),
    ]  # fmt: skip
    cli = HVPSLightningCLI(BaseTask, HVPSDataModule, subclass_mode_model=True, subclass_mode_data=True,
                           run=False, args=[*configs, *overrides])  # fmt: skip
    timer = StepTimer(device)
    cli.trainer.callbacks.append(timer)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    measured = timer.times[min(args.warmup, len(timer.times) - 1):]
    step = statistics.median(measured)
    data = cli.datamodule
    images = data.batch_size * data.clips_per_item
    peak = torch.cuda.max_memory_allocated(device) / 2**30 if device.type == "cuda" else None
    return {
        "steps": len(timer.times),
        "timed_steps": len(measured),
        "step_s": round(step, 4),
        "images_per_s": round(images / step, 3),
        "frames_per_s": round(images * data.clip_length / step, 3),
        "max_memory_gb": None if peak is None else round(peak, 3),
    }


def stq_device_equals_numpy(height: int, width: int, device: torch.device, frames: int = 4) -> bool:
    """STQ of random MOTChallenge-STEP-like frames: device tensors against the NumPy core, exactly."""
    spec = get_spec("motchallenge_step")
    rng = np.random.default_rng(0)
    gt, pred = [], []
    for _ in range(frames):
        semantic = rng.integers(0, spec.num_classes, (height, width))
        semantic[rng.random((height, width)) < 0.05] = spec.ignore_label
        instance = np.where(semantic == 4, rng.integers(0, 6, (height, width)), 0)
        gt.append(np.stack([semantic, instance], -1))
        changed = rng.random((height, width)) < 0.2
        noisy = np.where(changed, rng.integers(0, spec.num_classes, (height, width)), semantic)
        pred.append(np.stack([noisy, np.where(noisy == 4, (instance + 1) % 6, 0)], -1))
    results = []
    for on_device in (False, True):
        metric = STQ(spec.num_classes, spec.thing_ids, spec.ignore_label, spec.label_divisor)
        for p, g in zip(pred, gt, strict=True):
            if on_device:
                p, g = torch.as_tensor(p[None], device=device), torch.as_tensor(g[None], device=device)
            else:
                p, g = p[None], g[None]
            metric.update(p, g, ["0002"])
        results.append(metric.compute())
    cpu, dev = results
    same = all(np.isclose(cpu[k], dev[k], rtol=0, atol=1e-9) for k in ("stq", "aq", "sq"))
    return bool(same and cpu["iou_per_class"] == dev["iou_per_class"])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=100, help="optimiser steps per model")
    parser.add_argument("--warmup", type=int, default=10, help="first steps left out of the timing")
    parser.add_argument("--height", type=int, default=1080)
    parser.add_argument("--width", type=int, default=1920)
    parser.add_argument("--frames", type=int, default=24, help="generated frames per sequence")
    parser.add_argument("--workers", type=int, default=8, help="DataLoader workers")
    parser.add_argument("--cpu", action="store_true", help="run on the CPU (float32): a smoke test")
    parser.add_argument("--keep", type=str, default=None, help="keep the generated data and runs here")
    args = parser.parse_args(argv)
    if not args.cpu and not torch.cuda.is_available():
        parser.error("no CUDA device: run with --cpu (a smoke test) or on a GPU machine")
    device = torch.device("cpu" if args.cpu else "cuda")
    work = Path(args.keep) if args.keep else Path(tempfile.mkdtemp(prefix="hvps_gpu_check_"))
    try:
        root = work / "motchallenge_step"
        started = time.perf_counter()
        if not root.exists():
            generate_dataset("motchallenge_step", root, sequences=2, frames=args.frames, height=args.height,
                             width=args.width, seed=0, progress=False)  # fmt: skip
        synth_s = time.perf_counter() - started
        result: dict[str, Any] = {
            "benchmark": "gpu_check",
            "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
            "size": [args.height, args.width],
            "precision": "32-true" if args.cpu else "16-mixed",
            "synth_s": round(synth_s, 1),
        }
        for model in ("mots", "semantic"):
            result[model] = train(model, root, work, args, device)
        result["stq_cuda_equals_cpu"] = stq_device_equals_numpy(args.height, args.width, device)
        print(json.dumps(result))
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
