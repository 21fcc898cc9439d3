r"""``hvps sweep``: tracker hyperparameter search on a detection cache.

``hvps sweep tracker`` runs an Optuna study over ``TrackerConfig.search_space()``; each trial
replays the detection cache through the tracker and scores the objective (see
:mod:`hvps_lightning.sweeps.objective` for ``--gt`` and the objectives, and
:mod:`hvps_lightning.sweeps.study` for ``--trials``, resume and workers).
``hvps sweep trial`` runs one trial: the command a W&B sweep agent runs.

Examples::

    hvps sweep tracker --detections cache/ --gt data/motchallenge_step --objective aq \\
        --trials 100 --n-jobs 4 --out runs/sweep
    hvps track --detections cache/ --tracker-config runs/sweep/best.yaml --out runs/tracked
    # many machines, one study:
    hvps sweep tracker ... --storage postgresql://user:pw@db/optuna --study aq-v1 --out runs/m1
    # W&B sweep instead of Optuna:
    hvps sweep tracker ... --export-wandb sweep.yaml && wandb sweep sweep.yaml
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Literal

from jsonargparse import ActionConfigFile, ArgumentParser, Namespace

from hvps_lightning.cli.progress import add_quiet_argument, progress_bar
from hvps_lightning.errors import HVPSError
from hvps_lightning.sweeps.study import OBJECTIVES, SAMPLERS, TRIAL_ERRORS
from hvps_lightning.wandb_io import WANDB_MODES, is_artifact_reference, resolve_path

CONFIG_CLASS = "hvps_lightning.tracking.config:TrackerConfig"

_STORAGE_HELP = (
    "Optuna storage URL (default: journal file <out>/study.journal). Forms: journal:///abs/path.journal "
    "(shared filesystem), sqlite:///file.db, postgresql://user:pass@host/db, mysql+pymysql://..., "
    "redis://host:port. Workers and machines with the same --storage and --study share one study"
)
_GT_HELP = (
    "ground truth: a dataset root with panoptic_maps/<split>/<seq>/ (stq, aq) or "
    "instances_txt/<split>/<seq>.txt (idf1, smotsa), or a folder of <seq>/<frame>.png STEP maps, "
    "or of <seq>.txt MOTS files"
)
_TRIALS_HELP = (
    "run until the study holds this many finished trials (completed, or failed on bad parameters); "
    "rerunning with the same --storage/--study resumes, a finished sweep runs nothing: raise it to go on"
)


def _add_data_arguments(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--detections",
        type=str,
        required=True,
        help="detection cache folder (hvps predict), or a wandb-artifact://entity/project/name:version",
    )
    parser.add_argument("--gt", type=str, required=True, help=_GT_HELP)
    parser.add_argument(
        "--semantic", type=str, default=None, help="semantic cache folder or wandb-artifact:// (for stq)"
    )
    parser.add_argument(
        "--objective",
        type=Literal[OBJECTIVES] | None,
        default=None,
        help="metric to maximise; default stq with --semantic, else aq (aq fuses with the GT semantics)",
    )
    parser.add_argument(
        "--split", type=str, default=None, help="folder or split name under the --gt dataset root"
    )
    parser.add_argument(
        "--dataset",
        type=str,
        default=None,
        help="dataset spec (default: from the cache, else motchallenge_step)",
    )
    parser.add_argument(
        "--tracker-config", type=str, default=None, help="base tracker config YAML (default: TrackerConfig())"
    )
    parser.add_argument(
        "--preload-mb",
        type=float,
        default=2048.0,
        help="label maps kept dense per worker (MB); above it run-length encoded",
    )


def _add_wandb_arguments(parser: ArgumentParser) -> None:
    parser.add_argument(
        "--wandb",
        type=Literal[WANDB_MODES],
        default="auto",
        help="W&B logging; auto: WANDB_MODE if set, online with WANDB_API_KEY or under a W&B agent, "
        "else offline",
    )
    parser.add_argument("--wandb-project", type=str, default="hvps-lightning", help="W&B project")


def _tracker_parser() -> ArgumentParser:
    parser = ArgumentParser(
        description="Optuna search over TrackerConfig.search_space() on a detection cache."
    )
    parser.add_argument(
        "--config",
        action=ActionConfigFile,
        help="a preset YAML (shipped: sweeps/...; see hvps config list); later arguments override it",
    )
    _add_data_arguments(parser)
    parser.add_argument("--trials", type=int, default=None, help=_TRIALS_HELP)
    parser.add_argument("--sampler", type=Literal[SAMPLERS], default="tpe", help="Optuna sampler")
    parser.add_argument(
        "--params",
        type=list[str] | None,
        default=None,
        help="search only these parameters, e.g. '[score_threshold, long_term_enabled]'; the others keep "
        "their base values",
    )
    parser.add_argument(
        "--grid-points", type=int, default=3, help="grid sampler: values per numeric parameter"
    )
    parser.add_argument(
        "--n-jobs", type=int, default=1, help="worker processes on this machine (-1: one per CPU)"
    )
    parser.add_argument("--storage", type=str, default=None, help=_STORAGE_HELP)
    parser.add_argument("--study", type=str, default=None, help="study name (default: tracker-<objective>)")
    parser.add_argument("--seed", type=int, default=0, help="sampler seed (worker i uses seed + i)")
    parser.add_argument("--out", type=str, default=None, help="output folder: best.yaml, trials.csv, plots")
    parser.add_argument(
        "--export-wandb",
        type=str,
        default=None,
        help="write a W&B sweep config (same ranges; runs `hvps sweep trial`) to this file and exit",
    )
    _add_wandb_arguments(parser)
    add_quiet_argument(parser)
    return parser


def _integral(value: float, option: str) -> int:
    """An int given as a float (W&B's q_log_uniform_values yields ``5.0``)."""
    if not float(value).is_integer():
        raise HVPSError(f"{option} {value}: expected an integer")
    return int(value)


def _trial_parser() -> ArgumentParser:
    from hvps_lightning.sweeps.study import import_object

    parser = ArgumentParser(
        description="Run one tracker trial (the command of an exported W&B sweep); print its metrics as JSON."
    )
    _add_data_arguments(parser)
    parser.add_argument("--output", type=str, default=None, help="also write the metrics JSON to this file")
    parser.add_argument("--wandb-dir", type=str, default=".", help="where W&B writes its run folder")
    _add_wandb_arguments(parser)
    group = parser.add_argument_group("tracker parameters (the search space; default: the base config)")
    config_type = import_object(CONFIG_CLASS)
    descriptions = config_type.describe() if hasattr(config_type, "describe") else {}
    for name, rng in config_type.search_space().items():
        kwargs: dict[str, Any] = {"default": None, "help": descriptions.get(name, name)}
        if rng.kind == "float":
            kwargs["type"] = float
        elif rng.kind == "int":
            # float, then checked integral: W&B's q_log_uniform_values passes ints as 5.0
            kwargs["type"] = float
            kwargs["help"] += " (integer)"
        elif rng.kind == "bool":
            kwargs["type"] = bool
        else:
            kwargs["type"] = Literal[tuple(rng.choices)] | None
        group.add_argument(f"--{name}", **kwargs)
    return parser


def build_parser() -> ArgumentParser:
    """The ``hvps sweep`` parser with its ``tracker`` and ``trial`` subcommands."""
    parser = ArgumentParser(
        prog="hvps sweep", description="Tracker hyperparameter sweeps on a detection cache."
    )
    commands = parser.add_subcommands(required=True, dest="subcommand")
    commands.add_subcommand("tracker", _tracker_parser(), help="Optuna study over the tracker's parameters")
    commands.add_subcommand("trial", _trial_parser(), help="one trial (the command of a W&B sweep agent)")
    return parser


# --------------------------------------------------------------------------- shared helpers


def _objective(cfg: Namespace) -> str:
    return cfg.objective or ("stq" if cfg.semantic else "aq")


def _base_params(cfg: Namespace) -> dict[str, Any]:
    from hvps_lightning.sweeps.study import import_object

    config_type = import_object(CONFIG_CLASS)
    base = config_type.from_yaml(cfg.tracker_config) if cfg.tracker_config else config_type()
    return base.to_dict()


def _resolve_artifacts(cfg: Namespace) -> None:
    """Replace ``wandb-artifact://`` references of the caches by the local folders they download to."""
    cfg.detections = resolve_path(cfg.detections, "dataset", "--detections")
    if cfg.semantic:
        cfg.semantic = resolve_path(cfg.semantic, "dataset", "--semantic")


def _local(value: str) -> str:
    """An absolute path, or an artifact reference unchanged (an exported W&B sweep resolves it per run)."""
    return value if is_artifact_reference(value) else str(Path(value).resolve())


def _data_kwargs(cfg: Namespace, objective: str) -> dict[str, Any]:
    for option, value in (("--detections", cfg.detections), ("--gt", cfg.gt), ("--semantic", cfg.semantic)):
        if value is not None and not is_artifact_reference(value) and not Path(value).is_dir():
            raise HVPSError(f"{option} {value}: not a folder")
    if objective == "stq" and not cfg.semantic:
        raise HVPSError("--semantic: the stq objective needs the semantic cache (or use --objective aq)")
    return {
        "config_class": CONFIG_CLASS,
        "detections": _local(cfg.detections),
        "gt": str(Path(cfg.gt).resolve()),
        "semantic": _local(cfg.semantic) if cfg.semantic else None,
        "objective": objective,
        "split": cfg.split,
        "dataset": cfg.dataset,
        "preload_mb": cfg.preload_mb,
    }


def _trial_args(cfg: Namespace, objective: str) -> list[str]:
    """The ``hvps sweep trial`` arguments that reproduce this sweep's data and base config."""
    args = ["--detections", _local(cfg.detections), "--gt", str(Path(cfg.gt).resolve())]
    if cfg.semantic:
        args += ["--semantic", _local(cfg.semantic)]
    args += ["--objective", objective]
    for option, value in (("--split", cfg.split), ("--dataset", cfg.dataset)):
        if value:
            args += [option, value]
    if cfg.tracker_config:
        args += ["--tracker-config", str(Path(cfg.tracker_config).resolve())]
    return args


# --------------------------------------------------------------------------- hvps sweep tracker


def run_tracker(cfg: Namespace) -> int:
    """``hvps sweep tracker``."""
    from hvps_lightning.sweeps.storage import default_storage_url
    from hvps_lightning.sweeps.study import SweepSettings, validate_settings

    objective = _objective(cfg)
    if not cfg.export_wandb:
        _resolve_artifacts(cfg)
    if cfg.grid_points < 1:
        raise HVPSError(f"--grid-points {cfg.grid_points}: must be at least 1")
    n_jobs = (os.cpu_count() or 1) if cfg.n_jobs == -1 else cfg.n_jobs
    if n_jobs < 1:
        raise HVPSError(f"--n-jobs {cfg.n_jobs}: must be at least 1 (or -1 for one per CPU)")
    settings = SweepSettings(
        storage_url=cfg.storage or (default_storage_url(cfg.out) if cfg.out else ""),
        study_name=cfg.study or f"tracker-{objective}",
        objective=objective,
        n_trials=cfg.trials if cfg.trials is not None else 1,
        sampler=cfg.sampler,
        seed=cfg.seed,
        n_jobs=n_jobs,
        grid_points=cfg.grid_points,
        params=cfg.params,
        base_params=_base_params(cfg),
        config_class=CONFIG_CLASS,
        evaluator_kwargs=_data_kwargs(cfg, objective),
    )
    validate_settings(settings)
    if cfg.export_wandb:
        return _export_wandb(cfg, settings)
    if cfg.trials is None:
        raise HVPSError("--trials: required (the number of finished trials the study should hold)")
    if cfg.out is None:
        raise HVPSError("--out: required (where best.yaml, trials.csv and the plots go)")
    out = Path(cfg.out)
    out.mkdir(parents=True, exist_ok=True)
    with progress_bar(cfg.quiet, unit="trial", desc=f"sweep {settings.study_name}") as progress:
        summary = run_tracker_sweep(
            settings, out, wandb=cfg.wandb, wandb_project=cfg.wandb_project, progress=progress
        )
    best = summary.get("best") or {}
    base_result = summary.get("base") or {}
    print(
        f"study {settings.study_name}: {summary['n_finished']}/{settings.n_trials} finished trials; "
        f"best {objective} {best.get('value')} (trial {best.get('number')}), "
        f"base {base_result.get('value')}; wrote {out / 'best.yaml'}"
    )
    return 0


def _export_wandb(cfg: Namespace, settings: Any) -> int:
    """``--export-wandb FILE``: write the W&B sweep config of these settings and stop."""
    from hvps_lightning.sweeps.wandb_export import wandb_sweep_config, write_wandb_sweep

    config = wandb_sweep_config(
        settings.search_space(),
        settings.objective,
        settings.sampler,
        _trial_args(cfg, settings.objective),
        base_params=settings.base_params,
        n_trials=cfg.trials,
        grid_points=settings.grid_points,
        name=cfg.study,
        project=cfg.wandb_project,
    )
    write_wandb_sweep(cfg.export_wandb, config)
    print(f"wrote W&B sweep config {cfg.export_wandb}: wandb sweep {cfg.export_wandb} && wandb agent <id>")
    return 0


def run_tracker_sweep(
    settings: Any,
    out: Path,
    wandb: str = "auto",
    wandb_project: str = "hvps-lightning",
    progress: Any = None,
    **sweep_kwargs: Any,
) -> dict[str, Any]:
    """Run a sweep with W&B logging and write its outputs (also when interrupted); return the summary.

    ``progress(done, total, best=...)`` (a progress bar) is told the finished trials of the
    study and the best value so far after every trial. ``sweep_kwargs`` go to
    :func:`~hvps_lightning.sweeps.study.run_sweep` (tests pass an evaluator or callbacks there).
    """
    from hvps_lightning.sweeps.outputs import write_outputs
    from hvps_lightning.sweeps.study import (
        best_trial,
        finished_trials,
        open_study,
        run_sweep,
        validate_settings,
    )
    from hvps_lightning.sweeps.wandb_log import SweepRunLogger, resolve_wandb_mode

    validate_settings(settings)  # user errors before a W&B run is started for nothing
    mode = resolve_wandb_mode(wandb)
    logger = SweepRunLogger(mode, settings, out, project=wandb_project)
    study = None
    summary: dict[str, Any] = {}
    exit_code = 1

    def on_progress(current: Any) -> None:
        logger.log_new(current)
        if progress is not None:
            best = best_trial(current)
            postfix = {settings.objective: f"{best.value:.4f}"} if best is not None else {}
            progress(min(len(finished_trials(current)), settings.n_trials), settings.n_trials, **postfix)

    try:
        result = run_sweep(settings, on_progress=on_progress, **sweep_kwargs)
        study = result.study
        exit_code = 0
    except KeyboardInterrupt:
        exit_code = 130
        raise
    finally:
        try:
            if study is None:
                study = open_study(settings)
            summary = write_outputs(study, settings, out)
        except HVPSError:
            if exit_code == 0:
                raise
        finally:
            logger.finish(study, summary, out, exit_code=exit_code)
    return summary


# --------------------------------------------------------------------------- hvps sweep trial


def run_trial(cfg: Namespace) -> int:
    """``hvps sweep trial``: evaluate one parameter set, print (and log) its metrics."""
    from hvps_lightning.io import write_json
    from hvps_lightning.sweeps.objective import load_evaluator
    from hvps_lightning.sweeps.study import import_object
    from hvps_lightning.sweeps.wandb_log import log_single_trial, resolve_wandb_mode

    objective = _objective(cfg)
    base = _base_params(cfg)
    space = import_object(CONFIG_CLASS).search_space()
    params = {name: getattr(cfg, name) for name in space if getattr(cfg, name, None) is not None}
    for name, value in params.items():
        if space[name].kind == "int":
            params[name] = _integral(value, f"--{name}")
    full = {**base, **params}
    mode = resolve_wandb_mode(cfg.wandb)
    _resolve_artifacts(cfg)
    evaluate = load_evaluator(**_data_kwargs(cfg, objective))
    try:
        metrics = evaluate(full)
    except TRIAL_ERRORS as exc:
        log_single_trial(mode, Path(cfg.wandb_dir), full, {}, objective, cfg.wandb_project, exit_code=1)
        raise HVPSError(f"trial parameters: {exc}") from None
    result = {"objective": objective, "value": metrics[objective], "metrics": metrics, "params": params}
    log_single_trial(mode, Path(cfg.wandb_dir), full, metrics, objective, cfg.wandb_project)
    if cfg.output:
        write_json(cfg.output, result)
    print(json.dumps(result))
    sys.stdout.flush()
    return 0


def run(cfg: Namespace) -> int:
    """Dispatch ``hvps sweep <subcommand>``."""
    if cfg.subcommand == "tracker":
        return run_tracker(cfg.tracker)
    if cfg.subcommand == "trial":
        return run_trial(cfg.trial)
    raise HVPSError(f"unknown sweep subcommand {cfg.subcommand!r}; use tracker or trial")
