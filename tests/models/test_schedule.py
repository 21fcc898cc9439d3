"""LR schedules in fractions of the run (models/schedule.py) and BaseTask's use of them."""

from __future__ import annotations

import itertools
import math
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from tiny_task import TinyTask, sgd
from torch.utils.data import DataLoader, TensorDataset

from hvps_lightning.errors import HVPSError
from hvps_lightning.models.schedule import LRSchedule, build_schedulers, simulate_lr


def _trainer(**kwargs: Any) -> L.Trainer:
    return L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, enable_progress_bar=False,
                     enable_model_summary=False, **kwargs)  # fmt: skip


def _loader(items: int, batch_size: int = 1) -> DataLoader:
    torch.manual_seed(0)
    return DataLoader(TensorDataset(torch.randn(items, 2)), batch_size=batch_size)


def test_multistep_factors() -> None:
    resolved = LRSchedule(decay="multistep", warmup=0.1, warmup_start=0.01, milestones=(0.5, 0.8),
                          gamma=0.5).resolve(20)  # fmt: skip
    assert (resolved.warmup_steps, resolved.milestone_steps) == (2, (10, 16))
    factors = [resolved.factor(s) for s in range(20)]
    assert factors == pytest.approx([0.01, 0.505] + [1.0] * 8 + [0.5] * 6 + [0.25] * 4)


def test_cosine_factors_reach_the_final_factor_at_the_last_step() -> None:
    resolved = LRSchedule(decay="cosine", warmup=0.0, final_factor=0.1).resolve(11)
    factors = [resolved.factor(s) for s in range(11)]
    assert factors[0] == 1.0 and factors[-1] == pytest.approx(0.1) and factors[5] == pytest.approx(0.55)
    assert all(a >= b for a, b in itertools.pairwise(factors))


def test_the_shape_survives_another_run_length() -> None:
    schedule = LRSchedule(decay="multistep", warmup=0.05, milestones=(0.667, 0.917))
    for total in (1584, 396, 6336):  # 4 GPUs, 16 GPUs, 1 GPU at batch 2 over 24 epochs of 525 frames
        resolved = schedule.resolve(total)
        at_peak = sum(1 for s in range(total) if resolved.factor(s) == 1.0)
        assert at_peak / total == pytest.approx(0.667 - 0.05, abs=0.002)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"warmup": 1.0}, "schedule.warmup: a fraction of the run in \\[0, 1\\), got 1.0"),
        ({"milestones": (0.9, 0.5)}, "schedule.milestones \\[0.9, 0.5\\]: fractions of the run, increasing"),
        ({"warmup": 0.2, "milestones": (0.1,)}, "after the warm-up \\(0.2\\)"),
        ({"milestones": (1.5,)}, "before the end"),
        ({"gamma": 0.0}, "schedule.gamma"),
        ({"decay": "poly"}, "schedule.decay: expected multistep, cosine or constant, got 'poly'"),
        ({"total_steps": 0}, "schedule.total_steps"),
    ],
)
def test_bad_schedules_are_one_line_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(HVPSError, match=message):
        LRSchedule(**kwargs)


def test_a_run_without_length_is_an_error() -> None:
    with pytest.raises(HVPSError, match="the run has no finite length"):
        LRSchedule().resolve(math.inf)
    assert LRSchedule(total_steps=7).resolve(None).total_steps == 7


def test_unknown_schedule_keys_are_an_error() -> None:
    with pytest.raises(HVPSError, match=r"schedule: unknown keys \['milestone'\]"):
        LRSchedule.of({"milestone": [0.5]})
    assert LRSchedule.of(LRSchedule().as_dict()) == LRSchedule()


def test_schedule_with_lr_scheduler_or_warmup_steps_is_an_error() -> None:
    with pytest.raises(HVPSError, match="schedule is set together with lr_scheduler or warmup_steps"):
        TinyTask(optimizer=sgd, schedule=LRSchedule(), warmup_steps=10)
    optimizer = sgd([torch.nn.Parameter(torch.zeros(1))])
    with pytest.raises(HVPSError, match="schedule is set together"):
        build_schedulers(optimizer, schedule=LRSchedule(), lr_scheduler=lambda o: None, warmup_steps=0,
                         total_steps=10)  # fmt: skip


def test_task_steps_the_schedule_over_the_trainers_estimate() -> None:
    """The LR of every step is the schedule's factor of the run Lightning estimates (epochs x batches)."""
    schedule = {"decay": "multistep", "warmup": 0.25, "warmup_start": 0.1, "milestones": [0.5, 0.75],
                "gamma": 0.1}  # fmt: skip
    task = TinyTask(optimizer=sgd, schedule=schedule)
    assert task.hparams["schedule"]["milestones"] == [0.5, 0.75]  # plain values in the checkpoint
    # 6 items, batch 2 -> 3 steps per epoch, 4 epochs -> 12 steps
    _trainer(max_epochs=4).fit(task, _loader(6, batch_size=2))
    resolved = LRSchedule.of(schedule).resolve(12)
    assert task.lrs == pytest.approx([0.1 * resolved.factor(s) for s in range(12)])
    assert task.lrs[:3] == pytest.approx([0.01, 0.04, 0.07]) and task.lrs[-1] == pytest.approx(0.001)


def test_plan_simulation_equals_what_training_does() -> None:
    """simulate_lr steps per-step and per-epoch schedulers as Lightning does (warm-up + StepLR)."""
    optimizer = sgd([torch.nn.Parameter(torch.zeros(1))])
    schedulers = build_schedulers(
        optimizer, schedule=None, warmup_steps=4, total_steps=12,
        lr_scheduler=lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5),
    )  # fmt: skip
    simulated = simulate_lr(optimizer, schedulers, 12, steps_per_epoch=4)
    step_lr = lambda o: torch.optim.lr_scheduler.StepLR(o, step_size=1, gamma=0.5)  # noqa: E731
    task = TinyTask(optimizer=sgd, warmup_steps=4, lr_scheduler=step_lr)
    _trainer(max_epochs=3).fit(task, _loader(4))
    assert simulated == pytest.approx(task.lrs)


def test_a_resumed_run_continues_the_schedule(tmp_path: Path) -> None:
    schedule = {"decay": "multistep", "warmup": 0.0, "milestones": [0.5]}
    first = TinyTask(optimizer=sgd, schedule=schedule)
    _trainer(max_epochs=4).fit(first, _loader(2))
    full = first.lrs
    ckpt = tmp_path / "half.ckpt"
    second = TinyTask(optimizer=sgd, schedule=schedule)
    half = _trainer(max_epochs=2)  # a run of 4 steps: killed, as it were, half-way
    half.fit(second, _loader(2))
    half.save_checkpoint(ckpt)
    resumed = TinyTask(optimizer=sgd, schedule=schedule)
    _trainer(max_epochs=4).fit(resumed, _loader(2), ckpt_path=ckpt)
    # the resumed run is 8 steps long, as the full one: its steps 4-7 follow the full run's schedule
    assert resumed.lrs == pytest.approx(full[4:]) and full == pytest.approx([0.1] * 4 + [0.01] * 4)
