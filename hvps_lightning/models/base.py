"""The base task every LightningModule of the project derives from.

It owns what the MOTS and the semantic models share: the dataset spec (linked from the
DataModule by the CLI), optimiser and LR schedule from YAML (LightningCLI callables) with a
linear warm-up, ``save_hyperparameters``, and the stage-to-stage transfer (``init_from``).
Subclasses fill in ``configure_models``, ``configure_losses``, ``configure_metrics`` and
``transfer_state``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable

from hvps_lightning.errors import HVPSError
from hvps_lightning.structures.specs import DatasetSpec, get_spec

#: schedulers whose sizes PyTorch counts in optimiser steps (batches): stepped every step, not every epoch
PER_STEP_SCHEDULERS: tuple[type, ...] = (
    torch.optim.lr_scheduler.OneCycleLR,
    torch.optim.lr_scheduler.CyclicLR,
)


def _default_optimizer(params: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4)


def load_checkpoint_file(path: str | Path) -> dict[str, Any]:
    """Load a Lightning checkpoint (or a plain state dict) without running pickled code.

    Raises:
        HVPSError: if the file is missing or is not a loadable checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise HVPSError(f"{path}: checkpoint not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or non-checkpoint files
        raise HVPSError(f"{path}: not a loadable checkpoint ({type(exc).__name__}: {exc})") from None
    if not isinstance(ckpt, dict):
        raise HVPSError(f"{path}: not a checkpoint (a {type(ckpt).__name__}, expected a dict)")
    return ckpt


class BaseTask(L.LightningModule):
    """Shared LightningModule: spec, optimiser, warm-up, hparams, stage transfer.

    Args:
        dataset: name of the dataset spec the model predicts (linked from the DataModule).
        optimizer: optimiser factory (LightningCLI callable); AdamW(lr=1e-4) by default.
        lr_scheduler: optional LR scheduler factory, stepped every epoch; the per-batch schedulers
            of :data:`PER_STEP_SCHEDULERS` (``OneCycleLR``, ``CyclicLR``) are stepped every
            optimiser step (their ``total_steps`` count steps) and bring their own warm-up.
        warmup_steps: linear LR warm-up over this many optimiser steps (0: none; must be 0 with a
            per-step scheduler, which would fight it over the LR).
        init_from: checkpoint of the previous finetuning stage to start from; class-specific
            weights are carried through the spec's class map, the rest start fresh.
    """

    #: metric that checkpoint/early-stopping callbacks watch, and its direction
    monitor: str = "val/loss"
    mode: str = "min"

    def __init__(
        self,
        dataset: str = "motchallenge_step",
        optimizer: OptimizerCallable = _default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        warmup_steps: int = 0,
        init_from: str | None = None,
    ) -> None:
        super().__init__()
        self.spec: DatasetSpec = get_spec(dataset)
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        if warmup_steps < 0:
            raise HVPSError(f"warmup_steps must be >= 0, got {warmup_steps}")
        self._transferred = False

    # Hooks for subclasses ---------------------------------------------------------------
    def configure_models(self) -> None:
        """Build the networks."""

    def configure_losses(self) -> None:
        """Build the loss modules."""

    def configure_metrics(self) -> None:
        """Build the torchmetrics objects."""

    def transfer_state(self, state_dict: dict[str, torch.Tensor], source: DatasetSpec) -> list[str]:
        """Load a previous stage's weights, mapping class-specific rows; return the keys left new."""
        raise NotImplementedError

    # Stage transfer -----------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Apply ``init_from`` once, unless Lightning resumes from a checkpoint of this run."""
        init_from = self.hparams.get("init_from")
        resuming = self._trainer is not None and self.trainer.ckpt_path is not None
        if init_from and not self._transferred and not resuming:
            self.init_from_checkpoint(init_from)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A model loaded from a checkpoint has its trained weights: never apply ``init_from`` over them.

        (``load_from_checkpoint`` followed by ``trainer.validate(model)`` runs ``setup`` without a
        ``ckpt_path``; without this, the previous stage's weights would overwrite the trained ones.)
        """
        super().on_load_checkpoint(checkpoint)
        self._transferred = True

    def init_from_checkpoint(self, path: str | Path) -> list[str]:
        """Start from the checkpoint at ``path`` of the previous stage; return keys left new."""
        ckpt = load_checkpoint_file(path)
        state = ckpt.get("state_dict", ckpt)
        hparams = ckpt.get("hyper_parameters", {})
        source = get_spec(hparams.get("dataset", self.spec.name))
        fresh = self.transfer_state(state, source)
        self._transferred = True
        return fresh

    # Optimisation -------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """Optimiser from the factory, a per-step linear warm-up and an optional scheduler.

        Raises:
            HVPSError: if ``warmup_steps`` is combined with a per-step scheduler.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        schedulers = []
        warmup = int(self.hparams.get("warmup_steps", 0))
        scheduler = self.lr_scheduler_factory(optimizer) if self.lr_scheduler_factory is not None else None
        per_step = isinstance(scheduler, PER_STEP_SCHEDULERS)
        total = getattr(scheduler, "total_steps", None)
        if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR) and self._trainer is not None:
            needed = self.trainer.estimated_stepping_batches
            if needed > total:
                raise HVPSError(
                    f"lr_scheduler OneCycleLR: total_steps={total} is shorter than this run's {needed} "
                    "optimiser steps (trainer.max_steps / max_epochs); set "
                    f"--model.init_args.lr_scheduler.init_args.total_steps to at least {needed}"
                )
        if per_step and warmup > 0:
            raise HVPSError(
                f"warmup_steps={warmup} with lr_scheduler {type(scheduler).__name__}: both set the LR every "
                "step; set warmup_steps to 0 (the scheduler warms up itself, e.g. OneCycleLR's pct_start)"
            )
        if warmup > 1:
            # LR factor (step + 1) / warmup, reaching 1 at step warmup - 1. LinearLR is chainable (it
            # scales the current LR), so after the warm-up it leaves an epoch scheduler's decay alone;
            # LambdaLR would reset the LR to base * 1 every step and undo it.
            schedulers.append(
                {
                    "scheduler": torch.optim.lr_scheduler.LinearLR(
                        optimizer, start_factor=1.0 / warmup, end_factor=1.0, total_iters=warmup - 1
                    ),
                    "interval": "step",
                }
            )
        if scheduler is not None:
            schedulers.append({"scheduler": scheduler, "interval": "step" if per_step else "epoch",
                               "monitor": self.monitor})  # fmt: skip
        if not schedulers:
            return optimizer
        return [optimizer], schedulers
