"""BaseTask's optimisation: warm-up, epoch schedulers and per-step schedulers (OneCycleLR)."""

from __future__ import annotations

import itertools
from functools import partial
from pathlib import Path
from typing import Any

import lightning as L
import pytest
import torch
from tiny_task import TinyTask, sgd
from torch.utils.data import DataLoader, TensorDataset

from hvps_lightning.errors import HVPSError
from hvps_lightning.models.base import BaseTask, WeightSource
from hvps_lightning.models.net_config import constructor_arguments
from hvps_lightning.models.state import LoadResult


def _fit(task: TinyTask, steps: int, items_per_epoch: int = 4) -> list[float]:
    torch.manual_seed(0)
    loader = DataLoader(TensorDataset(torch.randn(items_per_epoch, 2)), batch_size=1)
    trainer = L.Trainer(
        max_steps=steps,
        max_epochs=-1,
        accelerator="cpu",
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        enable_model_summary=False,
    )
    trainer.fit(task, loader)
    return task.lrs


def test_one_cycle_is_stepped_every_step() -> None:
    one_cycle = partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, total_steps=10, pct_start=0.3,
                        div_factor=10.0, final_div_factor=100.0)  # fmt: skip
    task = TinyTask(optimizer=sgd, lr_scheduler=one_cycle)
    _, schedulers = task.configure_optimizers()
    assert [s["interval"] for s in schedulers] == ["step"]
    lrs = _fit(TinyTask(optimizer=sgd, lr_scheduler=one_cycle), steps=10)  # 2.5 epochs of 4 steps
    assert lrs[0] == pytest.approx(0.01)  # max_lr / div_factor
    assert max(lrs) == pytest.approx(0.1, rel=1e-6) and lrs.index(max(lrs)) == 2  # peak after 30 % - 1 steps
    assert all(a > b for a, b in itertools.pairwise(lrs[2:]))  # annealed within the epochs
    assert lrs[-1] < 0.01


def test_epoch_scheduler_keeps_its_decay_after_the_warm_up() -> None:
    step_lr = partial(torch.optim.lr_scheduler.StepLR, step_size=1, gamma=0.5)
    task = TinyTask(optimizer=sgd, lr_scheduler=step_lr, warmup_steps=4)
    _, schedulers = task.configure_optimizers()
    assert [s["interval"] for s in schedulers] == ["step", "epoch"]
    lrs = _fit(TinyTask(optimizer=sgd, lr_scheduler=step_lr, warmup_steps=4), steps=12)
    # warm-up (step + 1) / 4 over the first epoch, then halved every epoch (not reset by the warm-up)
    assert lrs == pytest.approx([0.025, 0.05, 0.075, 0.1] + [0.05] * 4 + [0.025] * 4)


def test_warm_up_alone_reaches_the_base_lr() -> None:
    lrs = _fit(TinyTask(optimizer=sgd, warmup_steps=3), steps=5)
    assert lrs == pytest.approx([0.1 / 3, 0.2 / 3, 0.1, 0.1, 0.1])


def test_warm_up_with_a_per_step_scheduler_is_an_error() -> None:
    one_cycle = partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, total_steps=10)
    task = TinyTask(optimizer=sgd, lr_scheduler=one_cycle, warmup_steps=5)
    with pytest.raises(HVPSError, match="warmup_steps=5 with lr_scheduler OneCycleLR"):
        task.configure_optimizers()


def test_one_cycle_shorter_than_the_run_is_an_error() -> None:
    one_cycle = partial(torch.optim.lr_scheduler.OneCycleLR, max_lr=0.1, total_steps=5)
    with pytest.raises(HVPSError, match="total_steps=5 is shorter than this run's 8 optimiser steps"):
        _fit(TinyTask(optimizer=sgd, lr_scheduler=one_cycle), steps=8)
    assert len(_fit(TinyTask(optimizer=sgd, lr_scheduler=one_cycle), steps=5)) == 5


class _RecordingNet(torch.nn.Module):
    """A network that records its constructor arguments, as the project's networks do."""

    def __init__(self, width: int = 2, scale: float = 1.0) -> None:
        super().__init__()
        self.init_args = constructor_arguments()
        self.layer = torch.nn.Linear(width, 1)


class _HookTask(BaseTask):
    """Records the order of the constructor's hooks and counts start-weight loads."""

    def __init__(self, net: _RecordingNet, dataset: str = "motchallenge_step", tag: str = "a",
                 init_checkpoint: str | None = None) -> None:  # fmt: skip
        self.calls: list[str] = []
        super().__init__(net, dataset, init_checkpoint=init_checkpoint)

    def configure_models(self) -> None:
        self.calls.append("models")

    def configure_losses(self) -> None:
        self.calls.append("losses")

    def configure_metrics(self) -> None:
        self.calls.append("metrics")

    def transfer_state(self, state: Any, source: WeightSource) -> LoadResult:
        self.calls.append("load")
        self.net.load_state_dict(state)
        return LoadResult()

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        return self.net.layer(batch[0]).pow(2).mean()


def test_one_constructor_saves_hparams_then_calls_the_hooks(tmp_path: Path) -> None:
    task = _HookTask(_RecordingNet(width=3, scale=0.5), tag="b")
    assert task.calls == ["models", "losses", "metrics"]
    assert task.hparams["tag"] == "b" and task.hparams["dataset"] == "motchallenge_step"
    assert task.hparams["net"]["init_args"] == {"width": 3, "scale": 0.5}
    assert task.hparams["net"]["class_path"].endswith("._RecordingNet")


def test_load_from_checkpoint_rebuilds_the_network_and_never_reloads_start_weights(tmp_path: Path) -> None:
    start = tmp_path / "start.pt"
    torch.save(_RecordingNet(width=3).state_dict(), start)
    task = _HookTask(_RecordingNet(width=3, scale=0.5), tag="b", init_checkpoint=str(start))
    task.setup("fit")
    task.setup("validate")
    assert task.calls.count("load") == 1  # once, however often setup runs
    torch.nn.init.constant_(task.net.layer.bias, 7.0)  # "trained"
    path = tmp_path / "task.ckpt"
    trainer = L.Trainer(max_steps=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.fit(task, DataLoader(TensorDataset(torch.randn(2, 3)), batch_size=1))
    trainer.save_checkpoint(path)
    loaded = _HookTask.load_from_checkpoint(path)  # weights_only: the hparams are plain data
    assert isinstance(loaded.net, _RecordingNet) and loaded.net.init_args == {"width": 3, "scale": 0.5}
    assert dict(loaded.hparams) == dict(task.hparams)
    loaded.setup("validate")
    assert "load" not in loaded.calls  # the checkpoint's weights stay
    torch.testing.assert_close(loaded.net.layer.bias, task.net.layer.bias)
