"""LightningCLI behind ``hvps fit|validate|test|predict``.

Subclass mode for both the model (any :class:`~hvps_lightning.models.base.BaseTask`) and the
data (:class:`~hvps_lightning.data.datamodule.HVPSDataModule`). The model's network is nested in
its config (``model.init_args.net: {class_path, init_args}``); the DataModule's dataset spec is
linked into the model (``dataset``) and its classes into the network (``thing_ids`` of a
MOTSNet, ``num_classes`` of a SemanticNet; jsonargparse skips a link whose target the chosen
network lacks) on instantiation, so one ``--data.init_args.finetune_stage`` change moves a model from
one finetuning stage to the next. The resolved config is saved next to each
logger's run (the W&B run folder and its config panel included), never over an earlier run's.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning as L
import yaml
from lightning.pytorch.cli import LightningArgumentParser, LightningCLI, SaveConfigCallback
from lightning.pytorch.loggers import WandbLogger

from hvps_lightning.data.datamodule import HVPSDataModule
from hvps_lightning.io import atomic_open
from hvps_lightning.lightning.progress import replace_default_progress_bar
from hvps_lightning.models.base import BaseTask, check_resumable
from hvps_lightning.structures.specs import DatasetSpec


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
        """Parse, then refuse a ``--ckpt_path`` whose checkpoint cannot rebuild the model (one line)."""
        super().parse_arguments(parser, args)
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path:
            check_resumable(ckpt_path)

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
        configured = self.config_init[self.subcommand].get("trainer", {}).get("callbacks") or []
        replace_default_progress_bar(trainer, configured if isinstance(configured, list) else [configured])
        return trainer


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
    try:
        return HVPSLightningCLI(
            BaseTask,
            HVPSDataModule,
            subclass_mode_model=True,
            subclass_mode_data=True,
            seed_everything_default=0,
            args=args,
            **kwargs,
        )
    finally:
        finish_wandb_run()
