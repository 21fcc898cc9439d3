"""``hvps plan``: the resolved schedule of a training run as JSON, without training.

``hvps plan`` takes the arguments of ``hvps fit`` (``--config A --config B``, ``--trainer.devices
8``, ...), parses them with the same LightningCLI (every default filled in, unknown keys refused),
instantiates nothing, and prints :func:`~hvps_lightning.lightning.plan.plan_run`'s JSON:
``steps_per_epoch``, ``total_steps``, ``warmup_steps``, ``steps_at_peak_lr``, ``lr_drops``,
``images_seen``, ``pretrained``, ``image_size``, ``augmentation``, ... Each warning (warm-up
over 10 % of the run, fewer than half the steps at half the peak LR or more, random start
weights) is also printed on stderr. ``--output FILE`` writes the JSON to a file as well.
"""

from __future__ import annotations

import json
import sys
import warnings
from collections.abc import Sequence
from typing import Any

from hvps_lightning.errors import HVPSError
from hvps_lightning.io import write_json

USAGE = """usage: hvps plan --config A.yaml [--config B.yaml] [--output FILE] [any `hvps fit` argument]

The resolved schedule of `hvps fit` with the same arguments, as JSON, without training or data
(frames are counted in the dataset root when it exists, else taken from the official counts):
steps_per_epoch, total_steps, warmup_steps, steps_at_peak_lr, lr_drops, images_seen, pretrained,
image_size, augmentation, warnings. Warns when the warm-up exceeds 10 % of the run or fewer than
half of the steps run at half the peak LR or more.

  --output FILE   also write the JSON to FILE
  e.g. hvps plan --config stages/mot_step/mots --config paper/mots --trainer.devices 8"""


def parse_config(args: Sequence[str]) -> dict[str, Any]:
    """The configuration ``hvps fit <args>`` would run with, as plain values (nothing instantiated)."""
    from hvps_lightning.data.datamodule import HVPSDataModule
    from hvps_lightning.lightning.cli import HVPSLightningCLI
    from hvps_lightning.models.base import BaseTask

    class _ParseOnly(HVPSLightningCLI):
        def _set_seed(self) -> None:
            pass

        def before_instantiate_classes(self) -> None:
            pass

        def instantiate_classes(self) -> None:
            pass

    with warnings.catch_warnings():
        # LightningCLI warns when `args` is given while sys.argv holds arguments too: here the
        # `args` are sys.argv's, with the shipped config names resolved
        warnings.filterwarnings("ignore", message=".*args parameter is intended.*")
        cli = _ParseOnly(BaseTask, HVPSDataModule, subclass_mode_model=True, subclass_mode_data=True,
                         seed_everything_default=0, run=False, args=list(args))  # fmt: skip
    return cli.config.as_dict()


def run_args(args: Sequence[str]) -> int:
    """Run ``hvps plan <args>``: print the plan as JSON, the warnings on stderr; return 0."""
    from hvps_lightning.lightning.plan import plan_run

    args = list(args)
    if any(a in ("-h", "--help") for a in args):
        print(USAGE)
        return 0
    output = None
    if "--output" in args:
        index = args.index("--output")
        if index + 1 >= len(args):
            raise HVPSError("--output: expected a file name")
        output = args[index + 1]
        del args[index : index + 2]
    if not any(a == "--config" or a.startswith("--config=") for a in args):
        raise HVPSError("--config: give the training config(s), e.g. hvps plan --config stages/mot_step/mots")
    plan = plan_run(parse_config(args))
    for warning in plan["warnings"]:
        print(f"hvps plan: warning: {warning}", file=sys.stderr)
    print(json.dumps(plan, indent=2))
    if output is not None:
        write_json(output, plan)
    return 0
