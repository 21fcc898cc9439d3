"""Export a tracker sweep as a W&B sweep config (``hvps sweep tracker --export-wandb FILE``).

The config carries the same ranges as ``TrackerConfig.search_space()`` (translated by
:func:`hvps_lightning.sweeps.space.wandb_parameter`) and a ``command`` that runs one trial
through the ``hvps`` CLI::

    command: [${env}, hvps, sweep, trial, --detections, /abs/cache, --gt, /abs/gt, ...,
              --objective, aq, ${args}]

W&B's ``${args}`` expands to ``--<param>=<value>`` per parameter, which ``hvps sweep trial``
accepts for every search-space parameter. Then::

    wandb sweep sweep.yaml          # prints the sweep id
    wandb agent ENTITY/PROJECT/ID   # on any number of machines

Samplers map to W&B methods: ``tpe`` -> ``bayes``, ``random`` -> ``random``, ``grid`` ->
``grid`` (the same grid as ``--sampler grid``). ``--trials N`` becomes ``run_cap: N``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from hvps_lightning.io import atomic_open
from hvps_lightning.sweeps.space import ParamRangeLike, grid_values, wandb_parameter

METHODS = {"tpe": "bayes", "random": "random", "grid": "grid"}


def wandb_sweep_config(
    space: Mapping[str, ParamRangeLike],
    objective: str,
    sampler: str,
    trial_args: Sequence[str],
    base_params: Mapping[str, Any] | None = None,
    n_trials: int | None = None,
    grid_points: int = 3,
    name: str | None = None,
    project: str | None = None,
) -> dict[str, Any]:
    """Build the W&B sweep config.

    Args:
        space: ``TrackerConfig.search_space()``.
        objective: the metric the trial command logs and W&B maximises.
        sampler: ``tpe``, ``random`` or ``grid``.
        trial_args: the arguments of ``hvps sweep trial`` before the parameters
            (``--detections ... --gt ... --objective ...``).
        base_params: the base config (its values join the grid, as in ``--sampler grid``).
        n_trials: becomes ``run_cap``.
        grid_points: values per numeric parameter for ``grid``.
        name: the sweep's name.
        project: the W&B project.
    """
    grid = grid_values(space, grid_points, base_params) if sampler == "grid" else None
    config: dict[str, Any] = {
        "name": name or f"hvps-tracker-{objective}",
        "method": METHODS[sampler],
        "metric": {"name": objective, "goal": "maximize"},
        "parameters": {
            param: wandb_parameter(rng, None if grid is None else grid[param]) for param, rng in space.items()
        },
        "command": ["${env}", "hvps", "sweep", "trial", *trial_args, "${args}"],
    }
    if project:
        config["project"] = project
    if n_trials:
        config["run_cap"] = int(n_trials)
    return config


def write_wandb_sweep(path: str | Path, config: Mapping[str, Any]) -> None:
    """Write the sweep config as YAML (atomically)."""
    header = (
        "# W&B sweep for the hvps tracker, written by `hvps sweep tracker --export-wandb`.\n"
        "# Run: wandb sweep THIS_FILE, then wandb agent ENTITY/PROJECT/SWEEP_ID on each machine.\n"
    )
    with atomic_open(path, "w", encoding="utf-8") as handle:
        handle.write(header)
        yaml.safe_dump(dict(config), handle, sort_keys=False, default_flow_style=None, width=120)
