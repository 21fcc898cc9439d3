"""W&B logging of tracker sweeps: one run per sweep invocation, finished properly.

A sweep of hundreds of trials stays readable as **one** run (job type ``tracker-sweep``,
grouped by study name): its history has one step per finished trial with ``trial/value``,
``trial/best_so_far`` (the best-so-far curve), ``trial/seconds`` and the trial's metrics; at
the end a ``trials`` table holds every trial of the study (number, state, value, metrics,
every parameter, the failure reason), the two plots are attached and the summary holds the
best value and parameters. The run is finished in a ``finally`` (with a non-zero exit code
when the sweep was interrupted), so several sweeps in one process each get their own run.

The sweep's results (``best.yaml``, ``summary.json``, ``trials.csv``) are logged as a ``result``
artifact of that run (``sweep-<study>``), and a detection cache given as a
``wandb-artifact://`` reference is declared as the run's input: the W&B lineage from the cache
(and the predict run that produced it) to the tuned tracker config.

``hvps sweep trial`` (the command W&B agents run) logs its single trial as its own run the
same way, so each agent run is finished too.

Modes (``--wandb``, :mod:`hvps_lightning.wandb_io`): ``disabled``; ``offline`` (files under
``<out>/wandb``, ``wandb sync`` later); ``online``; ``auto`` (default): ``WANDB_MODE`` when set,
else ``online`` with credentials or under a W&B agent (``WANDB_SWEEP_ID``), else ``offline``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hvps_lightning.errors import HVPSError
from hvps_lightning.sweeps.study import (
    FAIL_REASON_ATTR,
    SECONDS_ATTR,
    SOURCE_ATTR,
    WORKER_ATTR,
    SweepSettings,
)
from hvps_lightning.wandb_io import WANDB_MODES, log_path_artifact, resolve_wandb_mode, use_resolved_artifacts

__all__ = ["WANDB_MODES", "SweepRunLogger", "log_single_trial", "resolve_wandb_mode"]

DEFAULT_PROJECT = "hvps-lightning"
_BOOKKEEPING_ATTRS = (FAIL_REASON_ATTR, SECONDS_ATTR, SOURCE_ATTR, WORKER_ATTR)
#: the files of a sweep's ``--out`` logged as its ``result`` artifact
RESULT_FILES = ("best.yaml", "summary.json", "trials.csv")


def init_run(mode: str, directory: Path, **kwargs: Any) -> Any:
    """Start a W&B run in ``mode`` (``offline``/``online``) writing under ``directory``.

    Raises:
        HVPSError: if W&B cannot start (e.g. online without credentials or network).
    """
    import wandb

    directory.mkdir(parents=True, exist_ok=True)
    try:
        return wandb.init(mode=mode, dir=str(directory), reinit="create_new", **kwargs)
    except Exception as exc:  # wandb raises its own UsageError/CommError types
        raise HVPSError(f"--wandb {mode}: W&B could not start a run ({type(exc).__name__}: {exc})") from None


def trial_metrics(trial: FrozenTrial) -> dict[str, float]:
    """The metrics a trial recorded (its numeric user attributes except bookkeeping)."""
    return {
        key: float(value)
        for key, value in trial.user_attrs.items()
        if key not in _BOOKKEEPING_ATTRS and isinstance(value, (int, float)) and not isinstance(value, bool)
    }


class SweepRunLogger:
    """Logs the trials of one sweep to a single W&B run (a no-op with mode ``disabled``).

    Call :meth:`log_new` whenever trials may have finished (it logs each finished trial once,
    in completion order) and :meth:`finish` at the end, also when interrupted.
    """

    def __init__(
        self,
        mode: str,
        settings: SweepSettings,
        out_dir: Path,
        project: str = DEFAULT_PROJECT,
        entity: str | None = None,
        config: Mapping[str, Any] | None = None,
    ) -> None:
        self.mode = mode
        self.settings = settings
        self.run: Any = None
        self.logged: set[int] = set()
        self.best = -math.inf
        self.n_logged_finished = 0
        if mode == "disabled":
            return
        self.run = init_run(
            mode,
            out_dir,
            project=project,
            entity=entity,
            group=settings.study_name,
            job_type="tracker-sweep",
            name=f"{settings.study_name}-sweep",
            config={
                "study": settings.study_name,
                "objective": settings.objective,
                "sampler": settings.sampler,
                "n_trials": settings.n_trials,
                "n_jobs": settings.n_jobs,
                "seed": settings.seed,
                "base_config": settings.base_params,
                **dict(config or {}),
            },
        )
        self.run.define_metric("trial/best_so_far", summary="max")
        self.run.define_metric("trial/value", summary="max")
        use_resolved_artifacts(self.run)

    @property
    def enabled(self) -> bool:
        """Whether a run is open."""
        return self.run is not None

    def log_new(self, study: optuna.Study) -> int:
        """Log the trials of ``study`` that ended since the last call; return how many."""
        if self.run is None:
            return 0
        ended = [
            t
            for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL))
            if t.number not in self.logged
        ]
        ended.sort(key=lambda t: (t.datetime_complete or t.datetime_start, t.number))
        for trial in ended:
            self.logged.add(trial.number)
            row: dict[str, Any] = {"trial/number": trial.number, "trial/state": trial.state.name}
            if trial.state == TrialState.COMPLETE and trial.value is not None:
                self.best = max(self.best, trial.value)
                row["trial/value"] = trial.value
            if math.isfinite(self.best):
                row["trial/best_so_far"] = self.best
            if SECONDS_ATTR in trial.user_attrs:
                row["trial/seconds"] = trial.user_attrs[SECONDS_ATTR]
            row.update({f"metrics/{k}": v for k, v in trial_metrics(trial).items()})
            self.run.log(row)
        return len(ended)

    def trials_table(self, study: optuna.Study) -> Any:
        """A ``wandb.Table`` of every trial of the study (one row per trial)."""
        import wandb

        trials = study.get_trials(deepcopy=False)
        params = list(self.settings.search_space())
        metrics = sorted({k for t in trials for k in trial_metrics(t)})
        columns = ["number", "state", "value", "seconds", "source", *metrics, *params, "fail_reason"]
        rows = []
        for trial in trials:
            values = trial_metrics(trial)
            rows.append(
                [
                    trial.number,
                    trial.state.name,
                    trial.value,
                    trial.user_attrs.get(SECONDS_ATTR),
                    trial.user_attrs.get(SOURCE_ATTR, "sampler"),
                    *[values.get(m) for m in metrics],
                    *[trial.params.get(p) for p in params],
                    trial.user_attrs.get(FAIL_REASON_ATTR),
                ]
            )
        return wandb.Table(columns=columns, data=rows)

    def log_results(self, out_dir: Path) -> Any:
        """Log the sweep's result files as the ``result`` artifact ``sweep-<study>`` of the run."""
        import tempfile

        files = [out_dir / name for name in RESULT_FILES if (out_dir / name).is_file()]
        if not files:
            return None
        with tempfile.TemporaryDirectory() as staging:  # only the result files, not the journal or plots
            for path in files:
                (Path(staging) / path.name).write_bytes(path.read_bytes())
            return log_path_artifact(
                self.run,
                staging,
                f"sweep-{self.settings.study_name}",
                "result",
                metadata={
                    "study": self.settings.study_name,
                    "objective": self.settings.objective,
                    "detections": self.settings.evaluator_kwargs.get("detections"),
                },
            )

    def finish(
        self,
        study: optuna.Study | None,
        summary: Mapping[str, Any] | None = None,
        out_dir: Path | None = None,
        exit_code: int = 0,
    ) -> None:
        """Log what is left, the trials table, the plots and the summary; finish the run."""
        if self.run is None:
            return
        try:
            if study is not None:
                self.log_new(study)
                final: dict[str, Any] = {"trials": self.trials_table(study)}
                if out_dir is not None:
                    import wandb

                    for png in ("optimization_history.png", "param_importances.png"):
                        if (out_dir / png).is_file():
                            final[f"plots/{png[:-4]}"] = wandb.Image(str(out_dir / png))
                self.run.log(final)
                if out_dir is not None and exit_code == 0:
                    self.log_results(out_dir)
            if summary is not None:
                best = summary.get("best") or {}
                self.run.summary["best_value"] = best.get("value")
                self.run.summary["best_trial"] = best.get("number")
                self.run.summary["best_params"] = best.get("params")
                self.run.summary["n_finished"] = summary.get("n_finished")
                base = summary.get("base") or {}
                self.run.summary["base_value"] = base.get("value")
        finally:
            self.run.finish(exit_code=exit_code)
            self.run = None


def log_single_trial(
    mode: str,
    out_dir: Path,
    params: Mapping[str, Any],
    metrics: Mapping[str, float],
    objective: str,
    project: str = DEFAULT_PROJECT,
    config: Mapping[str, Any] | None = None,
    exit_code: int = 0,
) -> str | None:
    """Log one trial (``hvps sweep trial``) as its own finished run; return the run's folder.

    Under a W&B agent, ``wandb.init`` joins the agent's sweep run; its config already holds
    the parameters, which are added here for runs started by hand.
    """
    if mode == "disabled":
        return None
    run = init_run(mode, out_dir, project=project, job_type="tracker-trial", config={**dict(config or {})})
    try:
        run.config.update(dict(params), allow_val_change=True)
        run.log(dict(metrics))
        run.summary[objective] = metrics.get(objective)
        return str(Path(run.dir).parent)
    finally:
        run.finish(exit_code=exit_code)
