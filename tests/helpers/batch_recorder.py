"""A callback that writes what a short training run saw (frames, losses, logged metrics) to JSON."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import lightning as L


class BatchRecorder(L.Callback):
    """Record each training batch's frames and loss; write them with the final metrics at the end."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)
        self.batches: list[dict[str, Any]] = []

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: L.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:  # fmt: skip
        loss = outputs["loss"] if isinstance(outputs, dict) else outputs
        self.batches.append({
            "images": [str(m["image_path"]) for m in batch["meta"]],
            "orig_sizes": [list(m["orig_size"]) for m in batch["meta"]],
            "input_sizes": [list(m["input_size"]) for m in batch["meta"]],
            "shape": list(batch["frames"].shape),
            "loss": float(loss),
        })  # fmt: skip

    def on_fit_end(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()}
        self.path.write_text(json.dumps({"batches": self.batches, "metrics": {
            k: (None if math.isnan(v) else v) for k, v in metrics.items()}}))  # fmt: skip
