"""The plan of a training run, resolved from its configuration without training (``hvps plan``).

A run's length in optimiser steps is what Lightning makes of the data and the trainer:
``ceil(ceil(frames / world size) / batch size)`` batches per epoch (a ``DistributedSampler``
gives every rank the same number of items, the last batch may be short), ``limit_train_batches``
applied, divided by ``accumulate_grad_batches``, times ``max_epochs``, at most ``max_steps``
(``Trainer.estimated_stepping_batches``, which the tasks size their schedules from at
``configure_optimizers``). The frames are counted in the dataset root when it is present, else
taken from the official counts of :mod:`hvps_lightning.structures.specs`. The LR of every step comes
from the very schedulers the task builds (:func:`~hvps_lightning.models.schedule.build_schedulers`),
stepped as Lightning steps them.

Warnings (the run is mis-sized): a warm-up longer than 10 % of the run, fewer than half of the
steps at 50 % of the peak LR or more, a network that starts from random weights, a run of no
finite length.
"""

from __future__ import annotations

import importlib
import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import torch

from hvps_lightning.data.datasets import build_frame_index
from hvps_lightning.errors import HVPSError
from hvps_lightning.io import last_checkpoint
from hvps_lightning.models.schedule import LRSchedule, build_schedulers, simulate_lr
from hvps_lightning.structures.specs import DatasetSpec, get_spec, stage_spec

#: the warm-up may take at most this fraction of the run
MAX_WARMUP_FRACTION = 0.1
#: at least this fraction of the steps must run at HALF_PEAK of the peak LR or more
MIN_FRACTION_NEAR_PEAK = 0.5
HALF_PEAK = 0.5
#: a fall of the LR from one step to the next by more than this fraction is a "drop" (a
#: multistep milestone; not the step-to-step descent of a cosine)
DROP = 0.5


def _get(mapping: Mapping[str, Any] | None, key: str, default: Any = None) -> Any:
    if mapping is None:
        return default
    value = mapping.get(key, default)
    return default if value is None and default is not None else value


def _round(value: float) -> float:
    """An LR to 6 significant digits (0.0002, not 0.00020000000000000004)."""
    return float(f"{value:.6g}")


def _import(class_path: str) -> Any:
    module, _, name = class_path.rpartition(".")
    try:
        return getattr(importlib.import_module(module), name)
    except (ImportError, AttributeError):
        raise HVPSError(f"class_path {class_path}: cannot be imported") from None


def world_size(trainer: Mapping[str, Any]) -> int:
    """The number of training processes the trainer settings start (devices x nodes).

    ``devices: auto`` (and ``-1``) counts the visible CUDA devices unless the accelerator is the CPU.
    """
    devices = trainer.get("devices", "auto")
    accelerator = str(trainer.get("accelerator") or "auto")
    cuda = torch.cuda.device_count() if accelerator in ("auto", "gpu", "cuda") else 0
    if isinstance(devices, (list, tuple)):
        count = len(devices)
    elif isinstance(devices, str) and "," in devices:
        count = len([d for d in devices.split(",") if d.strip()])
    elif str(devices) in ("auto", "-1"):
        count = max(cuda, 1)
    else:
        count = int(devices)
    return max(count, 1) * max(int(trainer.get("num_nodes") or 1), 1)


def training_frames(data: Mapping[str, Any]) -> list[dict[str, Any]]:
    """The frames each training source of a DataModule configuration holds (its ``init_args``).

    Counted in the root when it exists (``max_sequences`` / ``max_frames`` applied as the
    DataModule applies them), else the official count of the split's sequences.

    Raises:
        HVPSError: if the root is absent and the official count of a sequence is not recorded.
    """
    stage = stage_spec(_get(data, "finetune_stage", "mot_step"))
    sources = data.get("train_sources") or []
    if sources:
        entries = [(get_spec(s["dataset"]), s["root"], s.get("split") or "train", s.get("sequences"))
                   for s in sources]  # fmt: skip
    else:
        spec = get_spec(data["dataset"]) if data.get("dataset") else stage
        root = data.get("root") or str(Path("data") / spec.name)
        sequences = (data.get("sequences") or {}).get("train")
        entries = [(spec, root, _get(data, "train_split", "train"), sequences)]
    found = []
    for spec, root, split, sequences in entries:
        frames, counted = _count(spec, Path(root), split, sequences, data.get("max_sequences"),
                                 data.get("max_frames"))  # fmt: skip
        found.append({"dataset": spec.name, "root": str(root), "split": split, "sequences": sequences,
                      "frames": frames, "counted": counted})  # fmt: skip
    return found


def _count(
    spec: DatasetSpec,
    root: Path,
    split: str,
    sequences: list[str] | None,
    max_sequences: int | None,
    max_frames: int | None,
) -> tuple[int, str]:
    if root.exists():
        index = build_frame_index(spec, root, split, sequences, max_sequences, max_frames)
        return len(index), f"counted in {root}"
    split_spec = spec.split(split)
    names = list(sequences) if sequences is not None else list(split_spec.sequences)
    if max_sequences is not None:
        names = names[: max(0, max_sequences)]
    if split_spec.images is not None and not split_spec.frames:
        images = split_spec.images if max_sequences is None else min(split_spec.images, max(0, max_sequences))
        return images, "official (structures/specs.py)"
    missing = [name for name in names if name not in split_spec.frames]
    if not names or missing:
        what = ", ".join(missing) if missing else f"split {split!r}"
        raise HVPSError(
            f"{root}: not found, and the official frame count of {spec.name} {what} is not recorded; "
            "give --data.init_args.root a dataset root to count"
        )
    per_sequence = [split_spec.frames[name] for name in names]
    if max_frames is not None:
        per_sequence = [min(n, max(1, max_frames)) for n in per_sequence]
    return sum(per_sequence), "official (structures/specs.py)"


def steps_per_epoch(frames: int, world: int, batch_size: int, trainer: Mapping[str, Any]) -> int:
    """Optimiser steps of one epoch, as Lightning counts them."""
    per_rank = math.ceil(frames / world) if world > 1 else frames
    batches = math.ceil(per_rank / batch_size)
    limit = trainer.get("limit_train_batches")
    fast_dev_run = trainer.get("fast_dev_run")
    if fast_dev_run:
        batches = min(batches, int(fast_dev_run))
    elif isinstance(limit, float) and limit != 1.0:
        batches = int(batches * limit)
    elif isinstance(limit, int) and not isinstance(limit, bool):
        batches = min(batches, limit)
    accumulate = int(trainer.get("accumulate_grad_batches") or 1)
    return math.ceil(batches / accumulate)


def total_steps(per_epoch: int, trainer: Mapping[str, Any]) -> float:
    """The run's optimiser steps (``Trainer.estimated_stepping_batches``; ``inf`` for an endless run)."""
    if trainer.get("fast_dev_run"):
        return per_epoch
    max_steps = trainer.get("max_steps")
    max_steps = -1 if max_steps is None else int(max_steps)
    max_epochs = trainer.get("max_epochs")
    if max_epochs is None:
        max_epochs = 1000 if max_steps == -1 else -1
    if max_epochs == -1:
        return math.inf if max_steps == -1 else max_steps
    steps = per_epoch * max(int(max_epochs), 1)
    return min(steps, max_steps) if max_steps != -1 else steps


def _start(model: Mapping[str, Any]) -> dict[str, Any]:
    """Where the network's weights come from: the task's one loader's three sources, in its order."""
    init_from = model.get("init_from")
    resolved = None
    if init_from:
        path = Path(init_from)
        if path.is_file():
            resolved = str(path)
        elif path.is_dir() or not path.suffix:
            try:
                resolved = str(last_checkpoint(path))
            except HVPSError:
                resolved = None  # the previous stage has not run here yet
    return {
        "pretrained": model.get("pretrained") or "none",
        "init_checkpoint": model.get("init_checkpoint"),
        "init_from": init_from,
        "init_from_checkpoint": resolved,
    }


def _augmentation(data: Mapping[str, Any]) -> dict[str, Any] | None:
    if not _get(data, "augment", True):
        return None
    image_size = data.get("image_size")
    return {
        "scale_range": list(_get(data, "scale_range", (0.75, 1.25))),
        "crop": f"to image_size {list(image_size)}" if image_size else "to each frame's native size",
        "hflip": bool(_get(data, "hflip", True)),
        "color_jitter": float(_get(data, "color_jitter", 0.2)),
    }


def _schedule_name(model: Mapping[str, Any]) -> str:
    schedule = model.get("schedule")
    if schedule:
        return f"schedule: {schedule.get('decay', 'multistep')}"
    scheduler = model.get("lr_scheduler")
    if scheduler:
        name = scheduler["class_path"].rpartition(".")[2]
        warmup = int(model.get("warmup_steps") or 0)
        return f"lr_scheduler: {name}" + (f" after {warmup} warm-up steps" if warmup > 1 else "")
    return "constant"


def _learning_rates(model: Mapping[str, Any], total: int, per_epoch: int) -> list[float]:
    """The LR of each optimiser step, from the schedulers the task builds."""
    optimizer_config = model.get("optimizer") or {
        "class_path": "torch.optim.AdamW", "init_args": {"lr": 1e-4, "weight_decay": 1e-4}
    }  # fmt: skip
    optimizer = _import(optimizer_config["class_path"])(
        [torch.nn.Parameter(torch.zeros(1))], **(optimizer_config.get("init_args") or {})
    )
    scheduler_config = model.get("lr_scheduler")
    factory = None
    if scheduler_config:
        scheduler_class = _import(scheduler_config["class_path"])
        arguments = dict(scheduler_config.get("init_args") or {})

        def factory(opt: torch.optim.Optimizer) -> Any:
            return scheduler_class(opt, **arguments)

    schedulers = build_schedulers(
        optimizer,
        schedule=LRSchedule.of(model.get("schedule")),
        lr_scheduler=factory,
        warmup_steps=int(model.get("warmup_steps") or 0),
        total_steps=total,
    )
    return simulate_lr(optimizer, schedulers, total, per_epoch)


def plan_run(config: Mapping[str, Any]) -> dict[str, Any]:
    """The plan of the training run a parsed ``hvps fit`` configuration describes.

    Args:
        config: the configuration as a plain mapping (``model``, ``data``, ``trainer`` with the
            LightningCLI's ``class_path`` / ``init_args`` nesting).

    Returns:
        ``steps_per_epoch``, ``total_steps``, ``warmup_steps``, ``steps_at_peak_lr``, ``lr_drops``,
        ``images_seen``, ``pretrained`` (and the other start weights), ``image_size``,
        ``augmentation``, the data and trainer figures behind them, and ``warnings``.

    Raises:
        HVPSError: for a frame count it cannot know, or schedulers that do not fit the run.
    """
    model = config["model"].get("init_args") or {}
    data = config["data"].get("init_args") or {}
    trainer = config.get("trainer") or {}
    sources = training_frames(data)
    frames = sum(s["frames"] for s in sources)
    world = world_size(trainer)
    batch_size = int(_get(data, "batch_size", 2))
    accumulate = int(trainer.get("accumulate_grad_batches") or 1)
    per_epoch = steps_per_epoch(frames, world, batch_size, trainer)
    total = total_steps(per_epoch, trainer)
    warnings: list[str] = []
    plan: dict[str, Any] = {
        "model": config["model"]["class_path"].rpartition(".")[2],
        "dataset": stage_spec(_get(data, "finetune_stage", "mot_step")).name,
        "train_data": sources,
        "frames": frames,
        "devices": world,
        "batch_size": batch_size,
        "accumulate_grad_batches": accumulate,
        "steps_per_epoch": per_epoch,
        "epochs": None,
        "total_steps": None if math.isinf(total) else int(total),
        "images_seen": None,
        "schedule": _schedule_name(model),
        "peak_lr": None,
        "warmup_steps": None,
        "steps_at_peak_lr": None,
        "steps_at_half_peak_lr": None,
        "lr_drops": [],
        "final_lr": None,
        **_start(model),
        "image_size": list(data["image_size"]) if data.get("image_size") else "native",
        "augmentation": _augmentation(data),
        "warnings": warnings,
    }
    if plan["pretrained"] == "none" and not plan["init_checkpoint"] and not plan["init_from"]:
        warnings.append("the network starts from random weights (pretrained: none, no init_checkpoint, "
                        "no init_from)")  # fmt: skip
    if math.isinf(total) or total < 1:
        warnings.append("the run has no finite length (trainer.max_epochs -1 and no max_steps)")
        return plan
    total = int(total)
    clips = int(_get(data, "clips_per_item", 1))
    plan["epochs"] = round(total / per_epoch, 3) if per_epoch else None
    plan["images_seen"] = total * batch_size * world * accumulate * clips
    plan.update(summarize_lrs(_learning_rates(model, total, per_epoch), per_epoch))
    warnings += schedule_warnings(plan)
    return plan


def summarize_lrs(lrs: list[float], per_epoch: int) -> dict[str, Any]:
    """The figures of an LR curve (one LR per optimiser step) that a plan reports.

    ``warmup_steps`` is the number of steps before the LR first reaches its peak; a drop is a
    fall by more than half from one step to the next.
    """
    total = len(lrs)
    peak = max(lrs)
    first_peak = next(i for i, lr in enumerate(lrs) if lr >= peak * (1 - 1e-6))
    return {
        "total_steps": total,
        "peak_lr": _round(peak),
        "warmup_steps": first_peak,
        "steps_at_peak_lr": sum(1 for lr in lrs if lr >= peak * (1 - 1e-6)),
        "steps_at_half_peak_lr": sum(1 for lr in lrs if lr >= HALF_PEAK * peak),
        "lr_drops": [
            {"step": i, "epoch": round(i / per_epoch, 2) if per_epoch else None, "lr": _round(lrs[i])}
            for i in range(1, total)
            if lrs[i] < (1 - DROP) * lrs[i - 1]
        ],
        "final_lr": _round(lrs[-1]),
    }


def schedule_warnings(plan: Mapping[str, Any]) -> list[str]:
    """A mis-sized schedule: a warm-up over 10 % of the run, or under half the steps near the peak."""
    total, warmup, near_peak = plan["total_steps"], plan["warmup_steps"], plan["steps_at_half_peak_lr"]
    found = []
    if warmup > MAX_WARMUP_FRACTION * total:
        found.append(
            f"the warm-up takes {warmup} of {total} steps ({100 * warmup / total:.0f} %, more than "
            f"{100 * MAX_WARMUP_FRACTION:.0f} % of the run)"
        )
    if near_peak < MIN_FRACTION_NEAR_PEAK * total:
        found.append(
            f"only {near_peak} of {total} steps run at half the peak LR or more "
            f"(fewer than {100 * MIN_FRACTION_NEAR_PEAK:.0f} %)"
        )
    return found
