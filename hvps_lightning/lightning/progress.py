"""The training progress bar: Lightning's rich bar, with a step count when a run is sized in steps.

Runs sized by ``max_steps`` leave ``max_epochs`` at -1, which Lightning's bar prints as
``Epoch 0/-2``; this bar prints ``Epoch 0 (300 steps)`` instead.
"""

from __future__ import annotations

from collections.abc import Sequence

from lightning.pytorch.callbacks import RichProgressBar


class HVPSProgressBar(RichProgressBar):
    """``RichProgressBar`` whose description reads well for runs sized in optimiser steps."""

    def _get_train_description(self, current_epoch: int) -> str:
        trainer = self.trainer
        if trainer.max_epochs is None or trainer.max_epochs < 0:
            steps = f" ({trainer.max_steps} steps)" if trainer.max_steps > 0 else ""
            description = f"Epoch {current_epoch}{steps}"
            return f"{description:{len(self.validation_description)}}"
        return super()._get_train_description(current_epoch)


def replace_default_progress_bar(trainer: object, configured: Sequence[object] = ()) -> None:
    """Swap the rich bar Lightning added by default for :class:`HVPSProgressBar`.

    A bar among ``configured`` (the callbacks the user asked for) is left alone.
    """
    callbacks = getattr(trainer, "callbacks", [])
    for index, callback in enumerate(callbacks):
        if type(callback) is RichProgressBar and not any(callback is c for c in configured):
            callbacks[index] = HVPSProgressBar()
