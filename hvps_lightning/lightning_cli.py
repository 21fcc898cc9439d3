"""LightningCLI behind ``hvps fit|validate|test|predict``.

Subclass mode for both the model (any :class:`~hvps_lightning.models.base.BaseTask`) and the
data (:class:`~hvps_lightning.data.datamodule.HVPSDataModule`); the DataModule's dataset spec
is linked into the model on instantiation, so one ``--data.init_args.stage`` change moves a
model from one finetuning stage to the next.
"""

from __future__ import annotations

from typing import Any

from lightning.pytorch.cli import LightningArgumentParser, LightningCLI

from hvps_lightning.data.datamodule import HVPSDataModule
from hvps_lightning.models.base import BaseTask


class HVPSLightningCLI(LightningCLI):
    """LightningCLI with the project's links between data and model."""

    def add_arguments_to_parser(self, parser: LightningArgumentParser) -> None:
        """Tie the model's dataset spec to the DataModule's."""
        parser.link_arguments("data.dataset_name", "model.init_args.dataset", apply_on="instantiate")


def run_lightning_cli(args: list[str], **kwargs: Any) -> HVPSLightningCLI:
    """Run ``hvps <subcommand> ...`` through the LightningCLI and return it."""
    return HVPSLightningCLI(
        BaseTask,
        HVPSDataModule,
        subclass_mode_model=True,
        subclass_mode_data=True,
        seed_everything_default=0,
        args=args,
        **kwargs,
    )
