"""A callback that writes the LR of every optimiser step to a JSON file (tests of `hvps plan`)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import lightning as L


class LRRecorder(L.Callback):
    """Append the first parameter group's LR before every training batch; write them at the end."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.lrs: list[float] = []

    def on_train_batch_start(self, trainer: L.Trainer, pl_module: L.LightningModule, batch: Any,
                             batch_idx: int) -> None:  # fmt: skip
        self.lrs.append(float(trainer.optimizers[0].param_groups[0]["lr"]))

    def on_train_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.path.write_text(json.dumps({"lrs": self.lrs, "estimated": trainer.estimated_stepping_batches,
                                         "batches": trainer.num_training_batches}))  # fmt: skip
