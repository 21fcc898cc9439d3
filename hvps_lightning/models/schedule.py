"""Learning-rate schedules sized in optimiser steps, and the one place that builds a task's schedulers.

A stage's schedule is an :class:`LRSchedule`: a linear warm-up and a decay (``multistep``,
``cosine`` or ``constant``) whose lengths are fractions of the run's optimiser steps. The run's
length is what the trainer makes of the data (``trainer.estimated_stepping_batches``: frames,
GPUs, batch size, gradient accumulation, ``max_epochs`` or ``max_steps``), so the shape of the
schedule survives a change of dataset size, GPU count or batch size: the milestones move with
the run instead of sitting at fixed epochs that a smaller run reaches late or never.
``hvps plan`` resolves the same schedule from the dataset's frame count without training.

:func:`build_schedulers` is what ``BaseTask.configure_optimizers`` returns next to the optimiser
(an :class:`LRSchedule`, or a torch scheduler from the YAML with an optional linear warm-up);
:func:`simulate_lr` steps those schedulers as Lightning does (per step or per epoch) and returns
the LR of every optimiser step, which is how ``hvps plan`` reports any of them.

Example:
    >>> schedule = LRSchedule(decay="multistep", warmup=0.1, milestones=(0.5,), gamma=0.1)
    >>> resolved = schedule.resolve(100)
    >>> resolved.warmup_steps, resolved.milestone_steps
    (10, (50,))
    >>> [round(resolved.factor(s), 3) for s in (0, 5, 10, 49, 50, 99)]
    [0.001, 0.5, 1.0, 1.0, 0.1, 0.1]
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

import torch

from hvps_lightning.errors import HVPSError

Decay = Literal["multistep", "cosine", "constant"]

#: torch schedulers whose sizes count optimiser steps (stepped every step, not every epoch)
PER_STEP_SCHEDULERS: tuple[type, ...] = (
    torch.optim.lr_scheduler.OneCycleLR,
    torch.optim.lr_scheduler.CyclicLR,
)


@dataclass(frozen=True)
class LRSchedule:
    """Warm-up and decay of the LR, in fractions of the run's optimiser steps.

    Attributes:
        decay: ``multistep`` (multiply by ``gamma`` at each milestone), ``cosine`` (half a cosine
            from the peak after the warm-up down to ``final_factor`` at the last step) or
            ``constant``.
        warmup: fraction of the run's steps over which the LR rises linearly to its peak.
        warmup_start: the LR factor of the first step of the warm-up.
        milestones: ``multistep``: the fractions of the run at which the LR is multiplied by
            ``gamma`` (increasing, after the warm-up, before the end).
        gamma: ``multistep``: the factor applied at each milestone.
        final_factor: ``cosine``: the LR factor at the end of the run.
        total_steps: the run's length in optimiser steps; ``None`` (the rule): the trainer's
            ``estimated_stepping_batches``.
    """

    decay: Decay = "multistep"
    warmup: float = 0.05
    warmup_start: float = 0.001
    milestones: tuple[float, ...] = field(default=(0.67, 0.92))
    gamma: float = 0.1
    final_factor: float = 0.0
    total_steps: int | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "milestones", tuple(float(m) for m in self.milestones))
        if self.decay not in ("multistep", "cosine", "constant"):
            raise HVPSError(f"schedule.decay: expected multistep, cosine or constant, got {self.decay!r}")
        if not 0.0 <= self.warmup < 1.0:
            raise HVPSError(f"schedule.warmup: a fraction of the run in [0, 1), got {self.warmup}")
        if not 0.0 < self.warmup_start <= 1.0:
            raise HVPSError(f"schedule.warmup_start: an LR factor in (0, 1], got {self.warmup_start}")
        if not 0.0 < self.gamma <= 1.0:
            raise HVPSError(f"schedule.gamma: a factor in (0, 1], got {self.gamma}")
        if not 0.0 <= self.final_factor <= 1.0:
            raise HVPSError(f"schedule.final_factor: an LR factor in [0, 1], got {self.final_factor}")
        if self.total_steps is not None and self.total_steps < 1:
            raise HVPSError(f"schedule.total_steps: expected >= 1 or null, got {self.total_steps}")
        if self.decay == "multistep":
            points = (self.warmup, *self.milestones, 1.0)
            if any(b <= a for a, b in itertools.pairwise(points)):
                raise HVPSError(
                    f"schedule.milestones {list(self.milestones)}: fractions of the run, increasing, "
                    f"after the warm-up ({self.warmup}) and before the end (1.0)"
                )

    @classmethod
    def of(cls, value: LRSchedule | Mapping[str, Any] | None) -> LRSchedule | None:
        """An :class:`LRSchedule` from itself, a mapping of its fields (hyperparameters), or ``None``.

        Raises:
            HVPSError: for a mapping with unknown keys or bad values.
        """
        if value is None or isinstance(value, LRSchedule):
            return value
        unknown = set(value) - set(cls.__dataclass_fields__)
        if unknown:
            known = ", ".join(cls.__dataclass_fields__)
            raise HVPSError(f"schedule: unknown keys {sorted(unknown)}; known: {known}")
        return cls(**value)

    def as_dict(self) -> dict[str, Any]:
        """The fields as plain values (how the task keeps it among its hyperparameters)."""
        data = asdict(self)
        data["milestones"] = list(self.milestones)
        return data

    def resolve(self, total_steps: int | None = None) -> ResolvedSchedule:
        """The schedule of a run of ``total_steps`` optimiser steps (``self.total_steps`` wins).

        Raises:
            HVPSError: if neither gives a finite length of at least one step.
        """
        total = self.total_steps if self.total_steps is not None else total_steps
        if total is None or not math.isfinite(total) or total < 1:
            raise HVPSError(
                f"schedule: the run has no finite length ({total} optimiser steps); set trainer.max_epochs "
                "or trainer.max_steps (or schedule.total_steps)"
            )
        total = int(total)
        milestones = tuple(round(m * total) for m in self.milestones) if self.decay == "multistep" else ()
        return ResolvedSchedule(self, total, round(self.warmup * total), milestones)


@dataclass(frozen=True)
class ResolvedSchedule:
    """An :class:`LRSchedule` sized for a run: every length in optimiser steps."""

    schedule: LRSchedule
    total_steps: int
    warmup_steps: int
    milestone_steps: tuple[int, ...]

    def factor(self, step: int) -> float:
        """The LR factor (of the optimiser's base LR) of optimiser step ``step`` (0-based)."""
        s = self.schedule
        warm = 1.0
        if step < self.warmup_steps:
            warm = s.warmup_start + (1.0 - s.warmup_start) * step / self.warmup_steps
        if s.decay == "multistep":
            return warm * s.gamma ** sum(1 for m in self.milestone_steps if step >= m)
        if s.decay == "cosine":
            span = max(self.total_steps - 1 - self.warmup_steps, 1)
            progress = min(max((step - self.warmup_steps) / span, 0.0), 1.0)
            cosine = 0.5 * (1.0 + math.cos(math.pi * progress))
            return warm * (s.final_factor + (1.0 - s.final_factor) * cosine)
        return warm

    def scheduler(self, optimizer: torch.optim.Optimizer) -> torch.optim.lr_scheduler.LambdaLR:
        """A per-step ``LambdaLR`` following :meth:`factor`.

        The factor is passed as a plain function, which ``LambdaLR`` leaves out of its state
        dict: a resumed run rebuilds it from its config (and so from its own length).
        """
        factor = self.factor
        return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: factor(step))


def build_schedulers(
    optimizer: torch.optim.Optimizer,
    *,
    schedule: LRSchedule | None,
    lr_scheduler: Callable[[torch.optim.Optimizer], Any] | None,
    warmup_steps: int,
    total_steps: float | None,
    monitor: str | None = None,
) -> list[dict[str, Any]]:
    """The LR schedulers of a task, as Lightning's ``configure_optimizers`` lists them.

    Args:
        optimizer: the task's optimiser.
        schedule: a schedule in fractions of the run (excludes the two below).
        lr_scheduler: a torch scheduler factory from the YAML: stepped every epoch, or every
            step for :data:`PER_STEP_SCHEDULERS` (their sizes count optimiser steps).
        warmup_steps: a linear warm-up before an epoch-level ``lr_scheduler`` (0: none).
        total_steps: the run's optimiser steps (the trainer's estimate), if known.
        monitor: the metric a ``ReduceLROnPlateau`` watches.

    Raises:
        HVPSError: for a schedule combined with ``lr_scheduler`` or ``warmup_steps``, a warm-up
            with a per-step scheduler, or a ``OneCycleLR`` shorter than the run.
    """
    if schedule is not None:
        if lr_scheduler is not None or warmup_steps > 0:
            raise HVPSError(
                "schedule is set together with lr_scheduler or warmup_steps; use one: schedule (warm-up "
                "and decay in fractions of the run) or lr_scheduler (+ warmup_steps)"
            )
        resolved = schedule.resolve(total_steps)
        return [{"scheduler": resolved.scheduler(optimizer), "interval": "step"}]
    schedulers: list[dict[str, Any]] = []
    scheduler = lr_scheduler(optimizer) if lr_scheduler is not None else None
    per_step = isinstance(scheduler, PER_STEP_SCHEDULERS)
    if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR) and total_steps is not None:
        if total_steps > scheduler.total_steps:
            raise HVPSError(
                f"lr_scheduler OneCycleLR: total_steps={scheduler.total_steps} is shorter than this run's "
                f"{int(total_steps)} optimiser steps (trainer.max_steps / max_epochs); set "
                f"--model.init_args.lr_scheduler.init_args.total_steps to at least {int(total_steps)}"
            )
    if per_step and warmup_steps > 0:
        raise HVPSError(
            f"warmup_steps={warmup_steps} with lr_scheduler {type(scheduler).__name__}: both set the LR "
            "every step; set warmup_steps to 0 (the scheduler warms up itself, e.g. OneCycleLR's pct_start)"
        )
    if warmup_steps > 1:
        # LR factor (step + 1) / warmup, reaching 1 at step warmup - 1. LinearLR is chainable (it
        # scales the current LR), so after the warm-up it leaves an epoch scheduler's decay alone;
        # LambdaLR would reset the LR to base * 1 every step and undo it.
        warm = torch.optim.lr_scheduler.LinearLR(
            optimizer, start_factor=1.0 / warmup_steps, end_factor=1.0, total_iters=warmup_steps - 1
        )
        schedulers.append({"scheduler": warm, "interval": "step"})
    if scheduler is not None:
        schedulers.append({"scheduler": scheduler, "interval": "step" if per_step else "epoch",
                           "monitor": monitor})  # fmt: skip
    return schedulers


def simulate_lr(
    optimizer: torch.optim.Optimizer,
    schedulers: list[dict[str, Any]],
    total_steps: int,
    steps_per_epoch: int,
) -> list[float]:
    """The LR (of the first parameter group) of each of ``total_steps`` optimiser steps.

    Schedulers are stepped as Lightning steps them: ``interval: step`` after every optimiser
    step, ``interval: epoch`` after the last step of each epoch. A ``ReduceLROnPlateau`` never
    sees a metric here, so it keeps the LR (what it does while the metric improves).
    """
    lrs: list[float] = []
    for step in range(int(total_steps)):
        lrs.append(float(optimizer.param_groups[0]["lr"]))
        optimizer.step()  # no gradients: a no-op that keeps torch from warning about the order
        end_of_epoch = steps_per_epoch > 0 and (step + 1) % steps_per_epoch == 0
        for entry in schedulers:
            scheduler = entry["scheduler"]
            if isinstance(scheduler, torch.optim.lr_scheduler.ReduceLROnPlateau):
                continue
            if entry.get("interval") == "step" or end_of_epoch:
                scheduler.step()
    return lrs
