"""What a sweep leaves in ``--out``: best.yaml, trials.csv, summary.json and two plots.

Every file is written atomically (a temporary name, then a rename), so a sweep interrupted
while writing never leaves a half-written best.yaml for ``hvps track`` to read.

* ``best.yaml``: the best trial's full tracker config (``TrackerConfig.to_yaml``), accepted
  by ``hvps track --tracker-config``.
* ``trials.csv``: one row per trial of the study (all workers, all runs): number, state,
  value, ``counted`` (whether it counts towards ``--trials``), timings, ``params_<name>``
  and ``user_attrs_<name>`` (metrics, ``fail_reason``, ``worker``, ``source``).
* ``summary.json``: study, storage, objective, counts, the best and the base trial.
* ``optimization_history.png`` and ``param_importances.png``
  (``optuna.visualization.matplotlib``); a plot that cannot be drawn yet (fewer than two
  completed trials) is skipped and named in ``summary.json``.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import TrialState

from hvps_lightning.io import atomic_open, atomic_path, write_json
from hvps_lightning.sweeps.storage import describe_storage
from hvps_lightning.sweeps.study import (
    SOURCE_ATTR,
    SweepSettings,
    best_trial,
    finished_trials,
    is_finished,
)

logger = logging.getLogger(__name__)

BEST_YAML = "best.yaml"
TRIALS_CSV = "trials.csv"
SUMMARY_JSON = "summary.json"
HISTORY_PNG = "optimization_history.png"
IMPORTANCES_PNG = "param_importances.png"


def write_trials_csv(study: optuna.Study, path: Path) -> int:
    """Write one row per trial to ``path``; return the number of rows."""
    frame = study.trials_dataframe(
        attrs=("number", "state", "value", "datetime_start", "datetime_complete", "duration", "params",
               "user_attrs"),
        multi_index=False,
    )  # fmt: skip
    if len(frame):
        trials = study.get_trials(deepcopy=False)
        counted = {t.number: is_finished(t) for t in trials}
        frame.insert(3, "counted", frame["number"].map(counted))
    with atomic_open(path, "w", encoding="utf-8", newline="") as handle:
        frame.to_csv(handle, index=False)
    return len(frame)


def write_best_yaml(study: optuna.Study, settings: SweepSettings, path: Path) -> dict[str, Any] | None:
    """Write the best trial's full tracker config to ``path``; return it (``None``: no completed trial)."""
    best = best_trial(study)
    if best is None:
        return None
    config = settings.config_type().from_dict(settings.full_params(best.params), where=f"trial {best.number}")
    with atomic_path(path) as tmp:
        config.to_yaml(tmp)
    return config.to_dict()


def write_plots(study: optuna.Study, out_dir: Path) -> dict[str, str]:
    """Draw the optimisation history and parameter importances; return ``{file: status}``."""
    import matplotlib

    if "matplotlib.pyplot" not in sys.modules:
        matplotlib.use("Agg")  # files only; never open a window from a sweep
    import matplotlib.pyplot as plt
    from optuna.visualization import matplotlib as optuna_plots

    status: dict[str, str] = {}
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    plots = (
        (HISTORY_PNG, optuna_plots.plot_optimization_history, 1),
        (IMPORTANCES_PNG, optuna_plots.plot_param_importances, 2),
    )
    for name, plot, needed in plots:
        if len(complete) < needed:
            status[name] = f"skipped: needs {needed} completed trial(s), has {len(complete)}"
            continue
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # optuna's matplotlib plots are "experimental"
                axes = plot(study)
            figure = axes.figure
            figure.set_size_inches(9, 5)
            figure.tight_layout()
            with atomic_path(out_dir / name) as tmp:
                figure.savefig(tmp, dpi=100)
            plt.close(figure)
            status[name] = "written"
        except (ValueError, RuntimeError, ZeroDivisionError) as exc:
            # e.g. importances when every completed trial has the same parameters
            status[name] = f"skipped: {exc}"
            logger.info("sweep plot %s skipped: %s", name, exc)
    return status


def write_outputs(
    study: optuna.Study, settings: SweepSettings, out_dir: Path, plots: bool = True
) -> dict[str, Any]:
    """Write every output file of a sweep to ``out_dir``; return the summary (also in summary.json)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = write_trials_csv(study, out_dir / TRIALS_CSV)
    best_config = write_best_yaml(study, settings, out_dir / BEST_YAML)
    best = best_trial(study)
    base = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get(SOURCE_ATTR) == "base"]
    base_done = [t for t in base if t.state == TrialState.COMPLETE]
    states: dict[str, int] = {}
    for trial in study.get_trials(deepcopy=False):
        states[trial.state.name] = states.get(trial.state.name, 0) + 1
    summary: dict[str, Any] = {
        "study": settings.study_name,
        "storage": describe_storage(settings.storage_url),
        "objective": settings.objective,
        "sampler": settings.sampler,
        "n_trials_target": settings.n_trials,
        "n_finished": len(finished_trials(study)),
        "n_trials_in_study": rows,
        "states": states,
        "best": None
        if best is None
        else {"number": best.number, "value": best.value, "params": best.params, "metrics": best.user_attrs},
        "best_config": best_config,
        "base": None if not base_done else {"number": base_done[0].number, "value": base_done[0].value},
    }
    if plots:
        summary["plots"] = write_plots(study, out_dir)
    write_json(out_dir / SUMMARY_JSON, summary)
    return summary
