"""The base task every LightningModule of the project derives from.

A task receives its network built (``net``: the LightningCLI builds it from the YAML's nested
``net: {class_path, init_args}``, with the DataModule's classes linked into it), and owns what
the MOTS and the semantic tasks share:

* one constructor: it saves the hyperparameters (the network as its configuration, so that
  ``load_from_checkpoint``, ``--ckpt_path`` and resuming rebuild it), then calls the
  ``configure_models`` / ``configure_losses`` / ``configure_metrics`` hooks (torchgeo's
  ``BaseTask`` pattern);
* the dataset spec (linked from the DataModule by the CLI);
* the one start-weights loader: ``pretrained``, then ``init_checkpoint``, then ``init_from``,
  applied once in ``setup`` and never over weights a checkpoint restored. Building a network
  loads nothing (detectron2's ``build_model`` versus its ``Checkpointer``);
* the optimiser and the LR schedule: an :class:`~hvps_lightning.models.schedule.LRSchedule` sized in
  fractions of the run's optimiser steps (what the stage configs use), or a torch scheduler from
  YAML (LightningCLI callables) with a linear warm-up.

Subclasses fill in the ``configure_*`` hooks, :meth:`BaseTask.pretrained_state` (what
``pretrained`` names), :meth:`BaseTask.checkpoint_state` (the file formats ``init_checkpoint``
reads) and :meth:`BaseTask.transfer_state` (copying a state into the network, class rows
mapped).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.cli import LRSchedulerCallable, OptimizerCallable
from lightning.pytorch.utilities import rank_zero_info
from torch import Tensor, nn

from hvps_lightning.errors import HVPSError
from hvps_lightning.io import last_checkpoint
from hvps_lightning.models.net_config import net_config
from hvps_lightning.models.schedule import LRSchedule, build_schedulers
from hvps_lightning.models.state import LoadResult, fresh_modules
from hvps_lightning.structures.specs import DatasetSpec, get_spec

#: Lightning's instantiator (allow-listed by ``load_from_checkpoint``) that rebuilds a task and its
#: nested network from the saved configuration, as for a model the LightningCLI built
INSTANTIATOR = "lightning.pytorch.cli.instantiate_module"


def _default_optimizer(params: Any) -> torch.optim.Optimizer:
    return torch.optim.AdamW(params, lr=1e-4, weight_decay=1e-4)


def load_checkpoint_file(path: str | Path, option: str = "checkpoint") -> dict[str, Any]:
    """Load a Lightning checkpoint (or a plain state dict) without running pickled code.

    Args:
        path: the file.
        option: the argument that named it, for messages (``init_from``, ``init_checkpoint``).

    Raises:
        HVPSError: if the file is missing or is not a loadable checkpoint.
    """
    path = Path(path)
    if not path.is_file():
        raise HVPSError(f"{option} {path}: file not found")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for corrupt or non-checkpoint files
        raise HVPSError(f"{option} {path}: not a loadable checkpoint ({type(exc).__name__})") from None
    if not isinstance(ckpt, dict):
        raise HVPSError(f"{option} {path}: not a checkpoint (a {type(ckpt).__name__}, expected a dict)")
    return ckpt


def check_resumable(path: str | Path) -> None:
    """Refuse a checkpoint that cannot rebuild its task, before Lightning tries (``--ckpt_path``).

    Checkpoints written before the network was passed in hold the network's arguments flat
    among the task's hyperparameters (no ``net``); their weights still load as ``init_from``
    or ``init_checkpoint`` (same state-dict keys), but the task cannot be rebuilt from them.

    Raises:
        HVPSError: for such a checkpoint (one line, with what to do instead).
    """
    path = Path(path)
    if not path.is_file():
        return  # Lightning resolves "last"/"best" and reports missing files itself
    try:
        hparams = torch.load(path, map_location="cpu", weights_only=True, mmap=True).get("hyper_parameters")
    except Exception:  # not ours to judge: Lightning reports unreadable files
        return
    if isinstance(hparams, Mapping) and "dataset" in hparams and "net" not in hparams:
        raise HVPSError(
            f"--ckpt_path {path}: a checkpoint from before the network was nested in the model config "
            f"(hyperparameters without 'net'), so the model cannot be rebuilt from it; start from its "
            f"weights with --model.init_args.init_from {path} (or init_checkpoint) instead"
        )


@dataclass(frozen=True)
class WeightSource:
    """Where a state dict comes from, for messages and for its class-specific rows.

    Attributes:
        description: what named it (``pretrained='coco'``, ``init_from PATH``), for messages.
        spec: the dataset spec its classes follow (a checkpoint of this project), if known.
        class_names: its class names in row order, if known by name (torchvision's COCO models).
        dropped: keys of the original file a converter could not map, as ``"key: reason"``
            (reported with the load's unused keys).
    """

    description: str
    spec: DatasetSpec | None = None
    class_names: tuple[str, ...] | None = None
    dropped: tuple[str, ...] = ()


class BaseTask(L.LightningModule):
    """Shared LightningModule: network, spec, start weights, optimiser, warm-up, hparams.

    Args:
        net: the network (built; its constructor arguments become the ``net`` hyperparameter).
        dataset: name of the dataset spec the model predicts (linked from the DataModule).
        optimizer: optimiser factory (LightningCLI callable); AdamW(lr=1e-4) by default.
        lr_scheduler: optional LR scheduler factory, stepped every epoch; the per-batch schedulers
            of :data:`~hvps_lightning.models.schedule.PER_STEP_SCHEDULERS` (``OneCycleLR``,
            ``CyclicLR``) are stepped every optimiser step (their ``total_steps`` count steps) and
            bring their own warm-up.
        warmup_steps: linear LR warm-up over this many optimiser steps before an epoch-level
            ``lr_scheduler`` (0: none; must be 0 with a per-step scheduler, which would fight it
            over the LR).
        pretrained: published start weights (``none``; the values each task knows; downloads).
        init_checkpoint: a local weights file to start from (the formats each task reads).
        init_from: checkpoint of the previous finetuning stage to start from; class-specific
            weights are carried through the spec's class map, the rest start fresh. A run folder
            (``hvps fit``'s ``default_root_dir``) stands for its newest ``checkpoints/*/last.ckpt``.
        schedule: warm-up and decay in fractions of the run's optimiser steps, stepped every step
            (instead of ``lr_scheduler`` and ``warmup_steps``); its length is the trainer's
            ``estimated_stepping_batches`` unless it names ``total_steps``.
    """

    #: metric that checkpoint/early-stopping callbacks watch, and its direction
    monitor: str = "val/loss"
    mode: str = "min"
    #: constructor arguments not saved as they are: callables (the CLI's saved config keeps them)
    #: and the network (saved as its configuration)
    ignore: tuple[str, ...] = ("net", "optimizer", "lr_scheduler")

    def __init__(
        self,
        net: nn.Module,
        dataset: str = "motchallenge_step",
        optimizer: OptimizerCallable = _default_optimizer,
        lr_scheduler: LRSchedulerCallable | None = None,
        warmup_steps: int = 0,
        pretrained: str = "none",
        init_checkpoint: str | None = None,
        init_from: str | None = None,
        schedule: LRSchedule | None = None,
    ) -> None:
        super().__init__()
        # Collects the arguments of every __init__ up the subclass chain (or, under the
        # LightningCLI, takes its resolved config).
        self.save_hyperparameters(ignore=list(self.ignore))
        extra: dict[str, Any] = {"net": net_config(net)}
        if "_instantiator" not in self.hparams:
            # Built in Python: load_from_checkpoint rebuilds it as the CLI would, nested net included.
            extra["_class_path"] = f"{type(self).__module__}.{type(self).__qualname__}"
            extra["_instantiator"] = INSTANTIATOR
        self.schedule = LRSchedule.of(schedule)
        # plain values among the hyperparameters: checkpoints load without unpickling classes
        extra["schedule"] = self.schedule.as_dict() if self.schedule is not None else None
        self.save_hyperparameters(extra)  # merged in, and in hparams_initial (what loggers receive)
        if warmup_steps < 0:
            raise HVPSError(f"warmup_steps must be >= 0, got {warmup_steps}")
        if self.schedule is not None and (lr_scheduler is not None or warmup_steps > 0):
            raise HVPSError(
                "schedule is set together with lr_scheduler or warmup_steps; use one: schedule (warm-up "
                "and decay in fractions of the run) or lr_scheduler (+ warmup_steps)"
            )
        self.spec: DatasetSpec = get_spec(dataset)
        self.net = net
        self.optimizer_factory = optimizer
        self.lr_scheduler_factory = lr_scheduler
        #: keys of ``net`` that the start weights left at their initial values (after ``setup``)
        self.fresh_keys: list[str] = []
        self._start_weights_done = False
        self.configure_models()
        self.configure_losses()
        self.configure_metrics()

    # Hooks for subclasses ---------------------------------------------------------------
    def configure_models(self) -> None:
        """Check ``net`` against the spec and adapt it to the start weights (nothing is loaded here)."""

    def configure_losses(self) -> None:
        """Build the loss modules."""

    def configure_metrics(self) -> None:
        """Build the torchmetrics objects."""

    def pretrained_state(self, name: str) -> tuple[dict[str, Tensor], WeightSource]:
        """The state dict (network keys) of the published weights ``pretrained`` names."""
        raise HVPSError(f"pretrained: {type(self).__name__} knows no published weights {name!r}")

    def checkpoint_state(self, path: str) -> tuple[dict[str, Tensor], WeightSource]:
        """The state dict (network keys) in the file ``init_checkpoint`` names.

        This base reads this project's checkpoints and plain state dicts of the network; tasks
        add the foreign layouts they convert.
        """
        return self.project_checkpoint_state(load_checkpoint_file(path, "init_checkpoint"), path)

    def project_checkpoint_state(
        self, ckpt: Mapping[str, Any], path: str
    ) -> tuple[dict[str, Tensor], WeightSource]:
        """:meth:`checkpoint_state` of a file already read, in this project's layout.

        Raises:
            HVPSError: if it holds no tensors.
        """
        state, spec = self._project_state(ckpt)
        if not state:
            raise HVPSError(f"init_checkpoint {path}: holds no state dict of tensors")
        return state, WeightSource(f"init_checkpoint {path}", spec=spec)

    def transfer_state(self, state: Mapping[str, Tensor], source: WeightSource) -> LoadResult:
        """Copy ``state`` (network keys) into ``net``, class rows mapped; report what stayed fresh, unused."""
        raise NotImplementedError

    # Start weights ------------------------------------------------------------------------
    def setup(self, stage: str) -> None:
        """Load the start weights once, unless Lightning restores a checkpoint of this run."""
        resuming = self._trainer is not None and self.trainer.ckpt_path is not None
        if not self._start_weights_done and not resuming:
            self.load_start_weights()
        self._start_weights_done = True

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        """A model loaded from a checkpoint has its trained weights: never load start weights over them.

        (``load_from_checkpoint`` followed by ``trainer.validate(model)`` runs ``setup`` without a
        ``ckpt_path``; without this, the start weights would overwrite the trained ones.)
        """
        super().on_load_checkpoint(checkpoint)
        self._start_weights_done = True

    def load_start_weights(self) -> list[str]:
        """The one loader: ``pretrained``, then ``init_checkpoint``, then ``init_from``, each over the last.

        Returns:
            The keys of ``net`` that none of them set (also kept in :attr:`fresh_keys`); each
            source's tensors nothing took and the modules that start fresh are logged.
        """
        hp = self.hparams
        loads = []
        if hp.get("pretrained", "none") not in (None, "none"):
            loads.append(lambda: self.pretrained_state(hp["pretrained"]))
        if hp.get("init_checkpoint"):
            loads.append(lambda: self.checkpoint_state(hp["init_checkpoint"]))
        if hp.get("init_from"):
            loads.append(lambda: self.previous_stage_state(hp["init_from"]))
        fresh = [k for k in self.net.state_dict() if not k.endswith("num_batches_tracked")]
        for load in loads:
            state, source = load()
            result = self.transfer_state(state, source)
            left = set(result.fresh)
            fresh = [k for k in fresh if k in left]
            rank_zero_info(f"{source.description}: {len(state)} tensors read, {len(result.fresh)} of the "
                           f"network's left as they were, {len(result.unused)} not used")  # fmt: skip
            if result.unused:
                rank_zero_info(f"{source.description}: not used: {', '.join(result.unused)}")
        self.fresh_keys = fresh
        self._start_weights_done = True
        if loads:
            modules = ", ".join(fresh_modules(self.net, fresh)) or "none"
            rank_zero_info(f"start weights: modules starting fresh: {modules}")
        return fresh

    def previous_stage_state(self, path: str | Path) -> tuple[dict[str, Tensor], WeightSource]:
        """The network state and the dataset spec of the previous stage's checkpoint at ``path``.

        A folder (or a path without a file suffix) is the previous stage's run folder: its newest
        ``checkpoints/*/last.ckpt``.
        """
        if Path(path).is_dir() or not Path(path).suffix:
            path = last_checkpoint(path, "init_from")
        ckpt = load_checkpoint_file(path, "init_from")
        state, spec = self._project_state(ckpt)
        # say which weights: a stage's last.ckpt holds its final step (RunCheckpoint)
        step = ""
        if "global_step" in ckpt:
            step = f" (global step {ckpt['global_step']}, epoch {ckpt.get('epoch')})"
        return state, WeightSource(f"init_from {path}{step}", spec=spec or self.spec)

    def init_from_checkpoint(self, path: str | Path) -> LoadResult:
        """Start from the previous stage's checkpoint at ``path`` now (``init_from`` alone)."""
        result = self.transfer_state(*self.previous_stage_state(path))
        self._start_weights_done = True
        return result

    def _project_state(self, ckpt: Mapping[str, Any]) -> tuple[dict[str, Tensor], DatasetSpec | None]:
        """The network's tensors (``net.`` prefix dropped) and the spec of a checkpoint of this project."""
        state = ckpt.get("state_dict", ckpt)
        hparams = ckpt.get("hyper_parameters") or {}
        spec = get_spec(hparams["dataset"]) if isinstance(hparams.get("dataset"), str) else None
        if not isinstance(state, Mapping):
            return {}, spec
        tensors = {k: v for k, v in state.items() if isinstance(v, Tensor)}
        if any(k.startswith("net.") for k in tensors):
            tensors = {k[len("net.") :]: v for k, v in tensors.items() if k.startswith("net.")}
        return tensors, spec

    # Optimisation -------------------------------------------------------------------------
    def configure_optimizers(self) -> Any:
        """The optimiser from its factory and the LR schedulers (:func:`.schedule.build_schedulers`).

        Raises:
            HVPSError: for a schedule the run cannot size, or a scheduler that does not fit it.
        """
        params = [p for p in self.parameters() if p.requires_grad]
        optimizer = self.optimizer_factory(params)
        total = self.trainer.estimated_stepping_batches if self._trainer is not None else None
        schedulers = build_schedulers(
            optimizer,
            schedule=self.schedule,
            lr_scheduler=self.lr_scheduler_factory,
            warmup_steps=int(self.hparams.get("warmup_steps", 0)),
            total_steps=total,
            monitor=self.monitor,
        )
        if not schedulers:
            return optimizer
        return [optimizer], schedulers
