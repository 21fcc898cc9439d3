"""A BaseTask around one linear layer for the optimiser and schedule tests (tests/models)."""

from __future__ import annotations

from typing import Any

import torch

from hvps_lightning.models.base import BaseTask


class TinyTask(BaseTask):
    """A BaseTask around one linear layer; records the LR of every training step."""

    def __init__(self, **kwargs: Any) -> None:
        self.lrs: list[float] = []
        super().__init__(net=torch.nn.Linear(2, 1), **kwargs)

    def training_step(self, batch: list[torch.Tensor], batch_idx: int) -> torch.Tensor:
        """Record the LR, return a loss."""
        self.lrs.append(self.trainer.optimizers[0].param_groups[0]["lr"])
        return self.net(batch[0]).pow(2).mean()


def sgd(params: Any) -> torch.optim.Optimizer:
    """SGD at LR 0.1: the optimiser the tests hand to TinyTask."""
    return torch.optim.SGD(params, lr=0.1)
