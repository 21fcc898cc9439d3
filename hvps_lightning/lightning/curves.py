"""Training curves kept on disk beside the checkpoints: ``curves.csv`` and ``curves.png``.

Whatever the logger (W&B offline, online, none at all), a run's folder shows how it trained:
``TrainingCurves`` records the scalars the task logs (losses and learning rates every
``log_every_n_steps``, validation metrics after each validation) and writes them, with a plot
of each, into the run's checkpoint folder (the :class:`~hvps_lightning.lightning.checkpoint.RunCheckpoint`
folder) whenever a checkpoint is saved and at the end of training.
"""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.callbacks import Callback, ModelCheckpoint

from hvps_lightning.io import atomic_open


class TrainingCurves(Callback):
    """Record logged scalars and write ``<name>.csv`` / ``<name>.png`` beside the checkpoints.

    Args:
        name: the file names' stem.
        plot: also draw ``<name>.png`` (one panel per scalar, losses first).
    """

    def __init__(self, name: str = "curves", plot: bool = True) -> None:
        self.name = name
        self.plot = plot
        self.rows: list[dict[str, float]] = []
        self._last_train_step = -1

    def state_dict(self) -> dict[str, Any]:
        """The rows so far: a resumed run continues its curves."""
        return {"rows": self.rows}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """Restore the rows of the run resumed from."""
        self.rows = list(state_dict.get("rows", []))

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, *args: Any) -> None:
        """Record the training scalars every ``log_every_n_steps`` optimiser steps."""
        step = trainer.global_step
        if step == self._last_train_step or step % max(1, trainer.log_every_n_steps) != 0:
            return
        self._last_train_step = step
        self._record(trainer, lambda key: not key.startswith(("val/", "test/")))

    def on_validation_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Record the validation metrics (not during the sanity check)."""
        if not trainer.sanity_checking:
            self._record(trainer, lambda key: key.startswith("val/"))

    def on_save_checkpoint(self, trainer: L.Trainer, pl_module: L.LightningModule, checkpoint: Any) -> None:
        """Write the curves beside each checkpoint."""
        self.write(trainer)

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        """Write the final curves."""
        self.write(trainer)

    def _record(self, trainer: L.Trainer, wanted: Any) -> None:
        values = {}
        for key, value in trainer.callback_metrics.items():
            if wanted(key) and isinstance(value, torch.Tensor) and value.numel() == 1:
                values[key] = float(value)
        if values:
            when = {"step": float(trainer.global_step), "epoch": float(trainer.current_epoch)}
            self.rows.append({**when, **values})

    def folder(self, trainer: L.Trainer) -> Path:
        """The run's checkpoint folder (else ``default_root_dir``)."""
        for callback in trainer.checkpoint_callbacks:
            if isinstance(callback, ModelCheckpoint) and callback.dirpath:
                return Path(callback.dirpath)
        return Path(trainer.default_root_dir)

    def write(self, trainer: L.Trainer) -> Path | None:
        """Write ``<name>.csv`` (and ``.png``) on rank 0; return the CSV's path (``None``: nothing yet)."""
        if not trainer.is_global_zero or not self.rows or trainer.fast_dev_run:
            return None
        folder = self.folder(trainer)
        folder.mkdir(parents=True, exist_ok=True)
        columns = ["step", "epoch", *sorted({k for row in self.rows for k in row} - {"step", "epoch"})]
        path = folder / f"{self.name}.csv"
        with atomic_open(path, "w", newline="", encoding="utf-8") as handle:
            writer = csv.DictWriter(handle, fieldnames=columns)
            writer.writeheader()
            writer.writerows(self.rows)
        if self.plot:
            from hvps_lightning.viz.plots import plot_training_curves

            plot_training_curves(self.rows, folder / f"{self.name}.png")
        return path
