from __future__ import annotations

import lightning as L
from lightning.pytorch.callbacks import RichProgressBar

from hvps_lightning.lightning.progress import HVPSProgressBar, replace_default_progress_bar


def _description(**trainer_args: object) -> str:
    trainer = L.Trainer(accelerator="cpu", logger=False, enable_checkpointing=False, **trainer_args)
    replace_default_progress_bar(trainer)
    bar = trainer.progress_bar_callback
    assert isinstance(bar, HVPSProgressBar)
    bar._trainer = trainer
    return bar._get_train_description(0).strip()


def test_runs_sized_in_steps_show_steps_not_minus_two() -> None:
    assert _description(max_steps=300, max_epochs=-1) == "Epoch 0 (300 steps)"
    assert _description(max_epochs=24) == "Epoch 0/23"


def test_a_configured_progress_bar_is_kept() -> None:
    configured = RichProgressBar(leave=True)
    trainer = L.Trainer(accelerator="cpu", logger=False, callbacks=[configured], enable_checkpointing=False)
    replace_default_progress_bar(trainer, [configured])
    assert trainer.progress_bar_callback is configured
