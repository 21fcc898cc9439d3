"""LightningCLI behind ``hvps fit|validate|test|predict``.

Subclass mode for both the model (any :class:`~hvps_lightning.models.base.BaseTask`) and the
data (:class:`~hvps_lightning.data.datamodule.HVPSDataModule`). The model's network is nested in
its config (``model.init_args.net: {class_path, init_args}``); the DataModule's dataset spec is
linked into the model (``dataset``) and its classes into the network (``thing_ids`` of a
MOTSNet, ``num_classes`` of a SemanticNet; jsonargparse skips a link whose target the chosen
network lacks) on instantiation, so one ``--data.init_args.finetune_stage`` change moves a model from
one finetuning stage to the next. The resolved config is saved next to each
logger's run (the W&B run folder and its config panel included), never over an earlier run's.

Also:

* the task classes are imported, so short class names resolve (``--model MOTSModule``,
  ``--model.net MOTSNet``);
* LightningCLI's automatic ``--optimizer``/``--lr_scheduler`` arguments are off
  (``auto_configure_optimizers=False``): the optimiser and schedule belong to the task
  (``--model.init_args.optimizer``), whose ``configure_optimizers`` composes them with the
  warm-up, so no command-line optimiser can silently replace it;
* ``wandb-artifact://`` references in ``--ckpt_path`` and the model's ``init_from`` /
  ``init_checkpoint`` are downloaded (:mod:`hvps_lightning.wandb_io`) and declared as inputs of
  the run;
* a run resumed from a checkpoint of a :class:`~hvps_lightning.lightning.checkpoint.RunCheckpoint`
  folder (``--ckpt_path last`` or a path) logs into the same W&B run (its id is in ``run.json``).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from hvps_lightning.data.datamodule import HVPSDataModule
from hvps_lightning.io import atomic_open
from hvps_lightning.lightning.checkpoint import RunCheckpoint, read_run_record
from hvps_lightning.lightning.progress import replace_default_progress_bar
from hvps_lightning.lightning.wandb import HVPSWandbLogger
from hvps_lightning.models.base import BaseTask, check_resumable
from hvps_lightning.models.mots.lightning_model import MOTSModule
from hvps_lightning.models.semantic.lightning_model import SemanticModule
from hvps_lightning.structures.specs import DatasetSpec
from hvps_lightning.wandb_io import resolve_path

#: the tasks: imported here so that jsonargparse resolves their short names (``--model MOTSModule``)
TASKS = (MOTSModule, SemanticModule)


def _free_path(path: Path) -> Path:
    """Return ``path`` or, if it exists, ``stem-1.suffix``, ``stem-2.suffix``... that does not."""
    candidate, k = path, 0
    while candidate.exists():
        k += 1
        candidate = path.with_name(f"{path.stem}-{k}{path.suffix}")
    return candidate


class HVPSSaveConfigCallback(SaveConfigCallback):
    """Save the resolved CLI config with every logger and send it to W&B runs as their config."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs["save_to_log_dir"] = False
        super().__init__(*args, **kwargs)

    def save_config(self, trainer: L.Trainer, pl_module: L.LightningModule, stage: str) -> None:
        """Write ``config.yaml`` into each logger's run folder; W&B also gets it as run config."""
        text = self.parser.dump(self.config, skip_none=False)
        targets: list[Path] = []
        for logger in trainer.loggers:
            if isinstance(logger, WandbLogger):
                logger.experiment.config.update(yaml.safe_load(text), allow_val_change=True)
                targets.append(Path(logger.experiment.dir) / self.config_filename)
            elif logger.log_dir:
                targets.append(Path(logger.log_dir) / self.config_filename)
        if not targets:
            targets.append(Path(trainer.default_root_dir) / self.config_filename)
        for target in targets:
            with atomic_open(_free_path(target), "w", encoding="utf-8") as handle:
                handle.write(text)


def spec_thing_ids(spec: DatasetSpec) -> tuple[int, ...]:
    """The thing classes of a spec (what a MOTSNet detects)."""
    return tuple(spec.thing_ids)


def spec_num_classes(spec: DatasetSpec) -> int:
    """The number of semantic classes of a spec (what a SemanticNet predicts)."""
    return spec.num_classes


class HVPSLightningCLI(LightningCLI):
    """LightningCLI with the project's links between data and model."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Tie the model's dataset spec, and its network's classes, to the DataModule's.

        Also accepts a config's ``base:`` key: ``hvps`` has already put the configs it names
        before the file (``hvps_lightning.cli.config``), so here it is only recorded.
        """
        parser.add_argument(
            "--base", type=list[str] | str | None, default=None, help="configs this config builds on"
        )
        parser.link_arguments("data.dataset_name", "model.init_args.dataset", apply_on="instantiate")
        parser.link_arguments("data.spec", "model.init_args.net.init_args.thing_ids",
                              compute_fn=spec_thing_ids, apply_on="instantiate")  # fmt: skip
        parser.link_arguments("data.spec", "model.init_args.net.init_args.num_classes",
                              compute_fn=spec_num_classes, apply_on="instantiate")  # fmt: skip

    def parse_arguments(self, parser: LightningArgumentParser, args: Any) -> None:
        """Parse, fetch ``wandb-artifact://`` checkpoints, refuse a ``--ckpt_path`` that cannot be resumed."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        config = self.config[subcommand] if subcommand else self.config
        ckpt_path = config.get("ckpt_path")
        if ckpt_path:
            config["ckpt_path"] = ckpt_path = resolve_path(ckpt_path, "model", "--ckpt_path")
            check_resumable(ckpt_path)
        init_args = (config.get("model") or {}).get("init_args") if config.get("model") else None
        for key in ("init_from", "init_checkpoint"):
            value = init_args.get(key) if init_args is not None else None
            if value:
                init_args[key] = resolve_path(value, "model", f"--model.init_args.{key}")

    def before_instantiate_classes(self) -> None:
        """With ``--trainer.logger false``, drop the configs' ``LearningRateMonitor``.

        The stage configs carry one, and Lightning refuses it on a trainer without a logger;
        a run without logging is a normal request (quick checks, notebooks), not an error.
        """
        config = self.config.get(self.subcommand) if self.subcommand else self.config
        trainer = config.get("trainer") if config is not None else None
        if trainer is None or trainer.get("logger") is not False:
            return
        callbacks = trainer.get("callbacks")
        if not callbacks:
            return
        single = not isinstance(callbacks, list)
        entries = [callbacks] if single else callbacks
        kept = [c for c in entries if not str(getattr(c, "class_path", "")).endswith(".LearningRateMonitor")]
        if len(kept) < len(entries):
            trainer["callbacks"] = kept if not single else (kept[0] if kept else None)

    def instantiate_trainer(self, **kwargs: Any) -> L.Trainer:
        """The trainer, with ``HVPSProgressBar`` (``lightning/progress.py``) as its default bar."""
        trainer = super().instantiate_trainer(**kwargs)
        # run=False (scripts such as benchmarks/gpu_check.py) has no subcommand level
        config = self.config_init[self.subcommand] if self.subcommand else self.config_init
        configured = config.get("trainer", {}).get("callbacks") or []
        replace_default_progress_bar(trainer, configured if isinstance(configured, list) else [configured])
        return trainer

    def before_fit(self) -> None:
        """A resumed run logs into the W&B run of the checkpoint it resumes (``run.json`` beside it)."""
        ckpt_path = self.config[self.subcommand].get("ckpt_path") if self.subcommand else None
        if not ckpt_path:
            return
        checkpoint: Path | None = None
        if ckpt_path == "last":
            for callback in self.trainer.checkpoint_callbacks:
                if isinstance(callback, RunCheckpoint):
                    same, _ = callback.last_checkpoints(self.trainer, self.model, self.datamodule)
                    if same and (checkpoint is None or same[-1].stat().st_mtime > checkpoint.stat().st_mtime):
                        checkpoint = same[-1]
        elif ckpt_path not in ("best", "hpc", "registry"):
            checkpoint = Path(ckpt_path)
        record = read_run_record(checkpoint.parent) if checkpoint is not None else None
        run = (record or {}).get("wandb") or {}
        if not run.get("id"):
            return
        for logger in self.trainer.loggers:
            if isinstance(logger, HVPSWandbLogger) and logger.resolved_mode != "disabled":
                logger.resume_run(run["id"])
                print(f"hvps {self.subcommand}: W&B: continuing run {run['id']} of {checkpoint}",
                      file=sys.stderr)  # fmt: skip


@contextmanager
def _argv_of(args: list[str]) -> Iterator[None]:
    """``sys.argv`` as if ``args`` had been typed: the LightningCLI warns when it sees both."""
    saved = sys.argv
    sys.argv = [saved[0] if saved else "hvps", *args]
    try:
        yield
    finally:
        sys.argv = saved


def finish_wandb_run() -> None:
    """Finish the active W&B run, if any, so the next run in this process starts its own.

    Lightning's ``WandbLogger`` reuses a run that is still active; without this, consecutive
    in-process runs (notebooks, ``hvps demo``, sweeps, tests) would all log into the first.
    """
    wandb = sys.modules.get("wandb")
    if wandb is not None and getattr(wandb, "run", None) is not None:
        wandb.finish()


def run_lightning_cli(args: list[str], **kwargs: Any) -> HVPSLightningCLI:
    """Run ``hvps <subcommand> ...`` through the LightningCLI and return it (its W&B run finished)."""
    kwargs.setdefault("save_config_callback", HVPSSaveConfigCallback)
    kwargs.setdefault("auto_configure_optimizers", False)
    try:
        with _argv_of(list(args)):
            return HVPSLightningCLI(
                BaseTask,
                HVPSDataModule,
                subclass_mode_model=True,
                subclass_mode_data=True,
                seed_everything_default=0,
                args=None,
                **kwargs,
            )
    finally:
        finish_wandb_run()
