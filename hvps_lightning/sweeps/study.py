"""The Optuna study of a tracker sweep: creation, resume, worker processes, failures.

Semantics (also in ``hvps sweep tracker --help``):

* ``--trials N`` means *until the study holds N finished trials*: trials that completed, plus
  trials that failed because their parameters were bad (they raised ``HVPSError`` or
  ``ValueError``; recorded as FAIL with a ``fail_reason`` user attribute). Rerunning a sweep with
  the same storage and study name therefore continues where it stopped, and rerunning a
  finished sweep runs nothing; raise N to search further. Trials cut short by an interrupt,
  a kill or a crash are FAIL without ``fail_reason``: they do not count and are not lost
  results (they had none).
* The base configuration (``TrackerConfig`` defaults, or ``--tracker-config``) is enqueued as
  the first trial, so the best trial is never worse than the default; it is enqueued again
  on resume if it never finished. ``--sampler grid`` puts the base values into the grid;
  Optuna's GridSampler does not count enqueued trials, so a whole grid of G points takes
  G + 1 trials (the base point twice).
* ``--params '[a, b]'`` restricts the search to those parameters (the others keep their base
  values); the grid sampler refuses grids above :data:`MAX_GRID_POINTS` points.
* ``--n-jobs K`` starts K worker processes (spawned, not threads); each opens the storage,
  loads the detection cache and the ground truth once and runs its share of the remaining
  trials. Other machines join the same study through a shared storage URL (see
  :mod:`hvps_lightning.sweeps.storage`); before each trial a worker checks the finished and
  running trials of the whole study, so machines that start later fill the remaining budget
  instead of exceeding it (machines that start in the same instant may overshoot by one
  trial each).

The machinery depends only on the ``TrackerConfig`` interface (``search_space()``,
``from_dict``, ``to_dict``, ``to_yaml``) and on an *evaluator*: ``load(**kwargs) ->
evaluate(params) -> {metric: value}``, named by import path so that spawned workers can
build it (:mod:`hvps_lightning.sweeps.objective` provides the real one).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import logging
import math
import multiprocessing
import os
import signal
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import optuna
from optuna.trial import FrozenTrial, TrialState

from hvps_lightning.errors import HVPSError
from hvps_lightning.sweeps.space import clip_to_space, grid_size, grid_values, restrict_space, suggest_params
from hvps_lightning.sweeps.storage import WORKER_ATTR, fail_dead_local_trials, open_storage, worker_identity

OBJECTIVES = ("stq", "aq", "idf1", "smotsa")
SAMPLERS = ("tpe", "random", "grid")
#: how long stopped workers get to record their interrupted trial: above Optuna's 30 s grace for
#: a journal lock left by a worker interrupted while holding it
STOP_GRACE_S = 40.0
#: prctl option: the signal this process gets when its parent dies (linux/prctl.h)
PR_SET_PDEATHSIG = 1

#: User attributes written on trials.
FAIL_REASON_ATTR = "fail_reason"
SOURCE_ATTR = "source"  # "base" for the enqueued base configuration
SECONDS_ATTR = "seconds"
#: Study user attributes.
STUDY_OBJECTIVE_ATTR = "objective"

#: ``--sampler grid`` refuses larger grids (Optuna's GridSampler lists every point up front).
MAX_GRID_POINTS = 100_000

#: Exceptions that mean "this parameter combination is bad": the trial fails, the sweep goes on.
TRIAL_ERRORS: tuple[type[Exception], ...] = (HVPSError, ValueError)

Evaluate = Callable[[dict[str, Any]], Mapping[str, float]]


def import_object(path: str) -> Any:
    """Import ``"package.module:attribute"``.

    Raises:
        HVPSError: if the module or attribute does not exist.
    """
    module_name, _, attr = path.partition(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise HVPSError(f"cannot import {path!r}: {exc}") from None


@dataclass
class SweepSettings:
    """Everything a worker process needs to join a sweep (picklable).

    Attributes:
        storage_url: Optuna storage URL (see :mod:`hvps_lightning.sweeps.storage`).
        study_name: the study; workers with the same storage and name share it.
        objective: metric to maximise (``stq``, ``aq``, ``idf1``, ``smotsa``).
        n_trials: the study ends with this many finished trials (see the module docstring).
        sampler: ``tpe``, ``random`` or ``grid``.
        seed: sampler seed (trial ``k`` draws from ``seed + k``, so that workers do not repeat each other).
        n_jobs: worker processes on this machine.
        grid_points: values per numeric parameter for the grid sampler.
        params: the parameters to search (default: all of the search space); the others keep
            their base values.
        base_params: the base ``TrackerConfig.to_dict()``; trial params override its entries.
        config_class: import path of the tracker config class.
        evaluator: import path of the evaluator loader, called as ``loader(**evaluator_kwargs)``.
        evaluator_kwargs: keyword arguments of the loader (paths, objective, dataset...).
    """

    storage_url: str
    study_name: str
    objective: str
    n_trials: int
    sampler: str = "tpe"
    seed: int = 0
    n_jobs: int = 1
    grid_points: int = 3
    params: list[str] | None = None
    base_params: dict[str, Any] = field(default_factory=dict)
    config_class: str = "hvps_lightning.tracking.config:TrackerConfig"
    evaluator: str = "hvps_lightning.sweeps.objective:load_evaluator"
    evaluator_kwargs: dict[str, Any] = field(default_factory=dict)

    def config_type(self) -> Any:
        """The tracker config class."""
        return import_object(self.config_class)

    def search_space(self) -> dict[str, Any]:
        """``TrackerConfig.search_space()`` (restricted to ``params`` when given), checked."""
        return restrict_space(self.config_type().search_space(), self.params)

    def full_params(self, params: Mapping[str, Any]) -> dict[str, Any]:
        """The base configuration with ``params`` (a trial's values) put in."""
        return {**self.base_params, **params}


# --------------------------------------------------------------------------- trial bookkeeping


def is_finished(trial: FrozenTrial) -> bool:
    """Whether a trial counts towards ``--trials``: completed, or failed on its parameters."""
    if trial.state == TrialState.COMPLETE:
        return True
    return trial.state == TrialState.FAIL and FAIL_REASON_ATTR in trial.user_attrs


def finished_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The trials that count towards ``--trials`` (see :func:`is_finished`)."""
    states = (TrialState.COMPLETE, TrialState.FAIL)
    return [t for t in study.get_trials(deepcopy=False, states=states) if is_finished(t)]


def running_trials(study: optuna.Study) -> list[FrozenTrial]:
    """The trials some worker is running now."""
    return study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))


def budget_left(study: optuna.Study, n_trials: int) -> int:
    """How many more trials may start: ``n_trials`` minus the finished and the running ones."""
    return max(0, n_trials - len(finished_trials(study)) - len(running_trials(study)))


def best_trial(study: optuna.Study) -> FrozenTrial | None:
    """The completed trial with the highest value (the earliest on ties), or ``None``."""
    complete = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    if not complete:
        return None
    return max(complete, key=lambda t: (t.value, -t.number))


def split_budget(total: int, workers: int) -> list[int]:
    """Split ``total`` trials over at most ``workers`` workers as evenly as possible.

    Example:
        >>> split_budget(7, 3)
        [3, 2, 2]
        >>> split_budget(1, 4)
        [1]
    """
    workers = max(1, min(workers, total))
    return [total // workers + (1 if i < total % workers else 0) for i in range(workers)] if total else []


# --------------------------------------------------------------------------- study and samplers


def make_grid(settings: SweepSettings) -> dict[str, list[Any]]:
    """The grid of ``--sampler grid``.

    Raises:
        HVPSError: if it has more than :data:`MAX_GRID_POINTS` points (Optuna enumerates them all).
    """
    grid = grid_values(settings.search_space(), settings.grid_points, settings.base_params)
    size = grid_size(grid)
    if size > MAX_GRID_POINTS:
        raise HVPSError(
            f"--sampler grid: {size:.3g} grid points over {len(grid)} parameters (limit {MAX_GRID_POINTS}); "
            "choose fewer with --params or lower --grid-points"
        )
    return grid


class TrialSeededSampler(optuna.samplers.BaseSampler):
    """A sampler whose random state is ``seed + trial number``, rebuilt for every trial.

    Trial numbers are handed out by the storage and unique within a study, so workers that
    share a study (``--n-jobs``, or several ``hvps sweep`` processes or machines on one
    storage, all started with the same ``--seed``) never draw from the same random stream,
    while a sweep stays reproducible: trial k always sees the stream of ``seed + k``. With
    one seed per worker instead, two processes started alike (both worker 0) drew the same
    parameters for a quarter of their trials.
    """

    def __init__(self, make: Callable[[int], optuna.samplers.BaseSampler], seed: int) -> None:
        self._make = make
        self._seed = seed
        self._current = make(seed)

    def before_trial(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Build this trial's sampler from ``seed + trial.number``."""
        self._current = self._make(self._seed + trial.number)
        self._current.before_trial(study, trial)

    def infer_relative_search_space(self, study: optuna.Study, trial: FrozenTrial) -> dict[str, Any]:
        """Delegated to the trial's sampler."""
        return self._current.infer_relative_search_space(study, trial)

    def sample_relative(
        self, study: optuna.Study, trial: FrozenTrial, search_space: dict[str, Any]
    ) -> dict[str, Any]:
        """Delegated to the trial's sampler."""
        return self._current.sample_relative(study, trial, search_space)

    def sample_independent(
        self, study: optuna.Study, trial: FrozenTrial, param_name: str, param_distribution: Any
    ) -> Any:
        """Delegated to the trial's sampler."""
        return self._current.sample_independent(study, trial, param_name, param_distribution)

    def after_trial(
        self, study: optuna.Study, trial: FrozenTrial, state: TrialState, values: Sequence[float] | None
    ) -> None:
        """Delegated to the trial's sampler."""
        self._current.after_trial(study, trial, state, values)

    def reseed_rng(self) -> None:
        """Delegated to the trial's sampler."""
        self._current.reseed_rng()


def make_sampler(settings: SweepSettings, worker_index: int = 0) -> optuna.samplers.BaseSampler:
    """Build the sampler of ``settings`` (the same for every worker: see :class:`TrialSeededSampler`).

    TPE runs with Optuna's ``constant_liar``: a running trial counts as a poor result, so that
    parallel workers do not all sample next to the same promising point.
    """
    if settings.sampler == "tpe":
        return TrialSeededSampler(lambda seed: optuna.samplers.TPESampler(seed=seed, constant_liar=True),
                                  settings.seed)  # fmt: skip
    if settings.sampler == "random":
        return TrialSeededSampler(lambda seed: optuna.samplers.RandomSampler(seed=seed), settings.seed)
    if settings.sampler == "grid":
        # GridSampler already skips the grid points of finished and running trials
        return optuna.samplers.GridSampler(make_grid(settings), seed=settings.seed)
    raise HVPSError(f"--sampler {settings.sampler}: expected one of {', '.join(SAMPLERS)}")


def open_study(settings: SweepSettings, worker_index: int = 0, create: bool = False) -> optuna.Study:
    """Open (or with ``create``, create or resume) the study of ``settings``.

    Raises:
        HVPSError: if the study exists with another objective, or does not exist and ``create``
            is false.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)  # the commands report progress themselves
    storage = open_storage(settings.storage_url)
    sampler = make_sampler(settings, worker_index)
    if create:
        study = optuna.create_study(
            study_name=settings.study_name,
            storage=storage,
            sampler=sampler,
            direction="maximize",
            load_if_exists=True,
        )
    else:
        try:
            study = optuna.load_study(study_name=settings.study_name, storage=storage, sampler=sampler)
        except KeyError:
            raise HVPSError(f"--study {settings.study_name}: no such study in the storage") from None
    if study.direction != optuna.study.StudyDirection.MAXIMIZE:
        raise HVPSError(f"--study {settings.study_name}: the stored study minimises; tracker sweeps maximise")
    stored = study.user_attrs.get(STUDY_OBJECTIVE_ATTR)
    if stored is None and create:
        study.set_user_attr(STUDY_OBJECTIVE_ATTR, settings.objective)
    elif stored is not None and stored != settings.objective:
        raise HVPSError(
            f"--study {settings.study_name}: this study optimises {stored!r}, not {settings.objective!r}; "
            "use another --study name"
        )
    return study


def enqueue_base_trial(study: optuna.Study, settings: SweepSettings) -> bool:
    """Enqueue the base configuration unless a trial of it finished, runs or waits already.

    Returns whether it was enqueued.
    """
    for trial in study.get_trials(deepcopy=False):
        if trial.user_attrs.get(SOURCE_ATTR) != "base":
            continue
        if trial.state in (TrialState.WAITING, TrialState.RUNNING) or is_finished(trial):
            return False
    params = clip_to_space(settings.base_params, settings.search_space())
    study.enqueue_trial(params, user_attrs={SOURCE_ATTR: "base"})
    return True


# --------------------------------------------------------------------------- the objective


class BaseTrialFailed(Exception):
    """The base configuration failed: a problem of the inputs, fatal for the sweep."""


class TrialObjective:
    """The Optuna objective: suggest parameters, evaluate them, record metrics or the failure."""

    def __init__(self, settings: SweepSettings, evaluate: Evaluate) -> None:
        self.settings = settings
        self.space = settings.search_space()
        self.evaluate = evaluate
        self.identity = worker_identity()

    def __call__(self, trial: optuna.Trial) -> float:
        """Run one trial and return its objective value."""
        trial.set_user_attr(WORKER_ATTR, self.identity)
        params = suggest_params(trial, self.space)
        start = time.perf_counter()
        try:
            with _interruptible():
                metrics = dict(self.evaluate(self.settings.full_params(params)))
            value = float(metrics[self.settings.objective])
            if not math.isfinite(value):
                raise ValueError(f"objective {self.settings.objective} is {value}")
        except TRIAL_ERRORS as exc:
            reason = f"{type(exc).__name__}: {exc}"[:500]
            trial.set_user_attr(SECONDS_ATTR, round(time.perf_counter() - start, 4))
            if trial.user_attrs.get(SOURCE_ATTR) == "base":
                # The configuration everyone runs failed: the inputs are wrong, not the parameters.
                # Stop the sweep (the trial does not count, so a rerun tries the base again).
                trial.set_user_attr("error", reason)
                raise BaseTrialFailed(reason) from exc
            trial.set_user_attr(FAIL_REASON_ATTR, reason)
            raise
        trial.set_user_attr(SECONDS_ATTR, round(time.perf_counter() - start, 4))
        for name, metric in metrics.items():
            if isinstance(metric, (int, float)) and name != self.settings.objective:
                trial.set_user_attr(name, float(metric))
        return value


#: how often a worker goes on after a trial another process took too (see run_worker)
TAKEN_TRIAL_RETRIES = 3


def _ran_by(study: optuna.Study, identity: str) -> int:
    """How many trials of ``study`` the worker ``identity`` has run."""
    return sum(t.user_attrs.get(WORKER_ATTR) == identity for t in study.get_trials(deepcopy=False))


class _StopAtBudget:
    """Callback: stop this worker once the study holds enough finished and running trials."""

    def __init__(self, n_trials: int) -> None:
        self.n_trials = n_trials

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        if _INTERRUPTED or budget_left(study, self.n_trials) <= 0:
            study.stop()


def run_worker(
    settings: SweepSettings,
    max_trials: int,
    worker_index: int = 0,
    evaluate: Evaluate | None = None,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
) -> int:
    """Join the study and run at most ``max_trials`` trials; return how many this worker ran.

    ``evaluate`` defaults to ``settings.evaluator`` loaded with ``settings.evaluator_kwargs``:
    the detection cache and ground truth are read once here, not per trial.
    """
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = open_study(settings, worker_index)
    if max_trials <= 0 or budget_left(study, settings.n_trials) <= 0:
        return 0
    if evaluate is None:
        evaluate = import_object(settings.evaluator)(**settings.evaluator_kwargs)
    objective = TrialObjective(settings, evaluate)
    before = len(study.get_trials(deepcopy=False))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        earlier = _ran_by(study, objective.identity)  # this process may have run the study before
        try:
            for attempt in range(TAKEN_TRIAL_RETRIES + 1):
                try:
                    study.optimize(
                        objective,
                        n_trials=max(1, max_trials - (_ran_by(study, objective.identity) - earlier)),
                        catch=TRIAL_ERRORS,
                        callbacks=[_StopAtBudget(settings.n_trials), *callbacks],
                        gc_after_trial=False,
                    )
                    break
                except ValueError as exc:
                    # SQLite has no row locks: two processes can both take the one waiting (base)
                    # trial, and the second's result is refused. The first's stands; go on.
                    if not str(exc).startswith("Cannot tell a") or attempt == TAKEN_TRIAL_RETRIES:
                        raise
                    if budget_left(study, settings.n_trials) <= 0:
                        break
        except BaseTrialFailed as exc:
            raise HVPSError(
                f"the base tracker configuration failed ({exc}); check the inputs and --tracker-config"
            ) from None
    return len(study.get_trials(deepcopy=False)) - before


def _worker_process(settings: SweepSettings, max_trials: int, worker_index: int, errors: Any) -> None:
    """Entry point of a spawned worker: report user errors through ``errors`` instead of a traceback.

    SIGTERM (from the parent, or from the kernel when the parent dies: ``PR_SET_PDEATHSIG``) and
    SIGINT interrupt the running trial like Ctrl-C: Optuna records it as failed and the worker exits.
    A worker never goes on alone after its parent is gone.
    """
    signal.signal(signal.SIGTERM, _interrupt)
    signal.signal(signal.SIGINT, _interrupt)  # Ctrl-C reaches the workers too: one line, from the parent
    _die_with_parent()
    try:
        run_worker(settings, max_trials, worker_index)
        if _INTERRUPTED:
            raise SystemExit(130)
    except HVPSError as exc:
        errors.put(f"worker {worker_index}: {exc}")
        raise SystemExit(2) from None
    except BaseException:
        # An interrupt can land anywhere, also inside Optuna's bookkeeping, which may then fail
        # with another error; once interrupted, the worker only stops (the parent says why).
        if _INTERRUPTED:
            raise SystemExit(130) from None
        raise


#: the signals this worker process got (SIGINT, SIGTERM)
_INTERRUPTED: list[int] = []
#: whether the worker is evaluating a trial's parameters (the one place an interrupt may land)
_EVALUATING: list[bool] = [False]


@contextmanager
def _interruptible() -> Iterator[None]:
    """Let a signal interrupt the block; elsewhere it waits for the end of the trial.

    Optuna's storage writes (a journal file's lock above all) must not be cut in the middle: a
    worker interrupted while holding the lock left it to Optuna's 30 s stale-lock grace, and the
    other workers and the parent waited that long. Evaluating is where a worker spends its time,
    so an interrupt still lands at once.
    """
    if _INTERRUPTED:
        raise KeyboardInterrupt
    _EVALUATING[0] = True
    try:
        yield
    finally:
        _EVALUATING[0] = False


def _interrupt(signum: int, frame: object) -> None:
    # Optuna logs an interrupted trial as a warning with its traceback; the parent prints one line.
    optuna.logging.set_verbosity(optuna.logging.ERROR)
    first = not _INTERRUPTED
    _INTERRUPTED.append(signum)
    if first and _EVALUATING[0]:
        _EVALUATING[0] = False
        raise KeyboardInterrupt


def _die_with_parent() -> None:
    """Ask Linux to send this process SIGTERM when its parent dies; elsewhere, poll the parent."""
    parent = os.getppid()
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) == 0:
            if os.getppid() != parent:  # the parent died before prctl took effect
                os.kill(os.getpid(), signal.SIGTERM)
            return
    except (OSError, AttributeError):
        pass
    threading.Thread(target=_watch_parent, args=(parent,), daemon=True, name="watch-parent").start()


def _watch_parent(parent: int, poll_s: float = 1.0) -> None:
    while os.getppid() == parent:
        time.sleep(poll_s)
    os.kill(os.getpid(), signal.SIGTERM)


# --------------------------------------------------------------------------- the launcher


@dataclass
class SweepResult:
    """What :func:`run_sweep` did."""

    study: optuna.Study
    ran: int  # trials started by this invocation (all workers)
    finished: int  # finished trials in the study at the end
    dead_trials_failed: list[int] = field(default_factory=list)


def validate_settings(settings: SweepSettings) -> None:
    """Check what can be checked without opening the storage or the data.

    Raises:
        HVPSError: for an unknown sampler or objective, ``n_trials < 1``, an unusable search
            space or a grid that is too large.
    """
    if settings.sampler not in SAMPLERS:
        raise HVPSError(f"--sampler {settings.sampler}: expected one of {', '.join(SAMPLERS)}")
    if settings.objective not in OBJECTIVES:
        raise HVPSError(f"--objective {settings.objective}: expected one of {', '.join(OBJECTIVES)}")
    if settings.n_trials < 1:
        raise HVPSError(f"--trials {settings.n_trials}: must be at least 1")
    if settings.n_jobs < 1:
        raise HVPSError(f"--n-jobs {settings.n_jobs}: must be at least 1")
    clip_to_space(settings.base_params, settings.search_space())
    if settings.sampler == "grid":
        make_grid(settings)


def prepare_study(settings: SweepSettings) -> tuple[optuna.Study, list[int]]:
    """Create or resume the study, fail the trials of dead local workers, enqueue the base trial."""
    validate_settings(settings)
    study = open_study(settings, create=True)
    dead = fail_dead_local_trials(study)
    if budget_left(study, settings.n_trials) > 0:
        enqueue_base_trial(study, settings)
    return study, dead


def run_sweep(
    settings: SweepSettings,
    on_progress: Callable[[optuna.Study], None] | None = None,
    evaluate: Evaluate | None = None,
    callbacks: Sequence[Callable[[optuna.Study, FrozenTrial], None]] = (),
    poll_seconds: float = 2.0,
) -> SweepResult:
    """Run the sweep of ``settings`` until the study holds ``n_trials`` finished trials.

    With ``n_jobs == 1`` the trials run in this process (``evaluate`` and ``callbacks`` may
    replace the evaluator and add Optuna callbacks, e.g. in tests); otherwise ``n_jobs``
    spawned processes run them. ``on_progress(study)`` is called after each trial (one
    process) or every ``poll_seconds`` (several), e.g. to log new trials to W&B.

    Raises:
        HVPSError: bad settings, an unusable storage, or a worker's user error.
        KeyboardInterrupt: when interrupted; the finished trials are in the storage.
    """
    study, dead = prepare_study(settings)
    left = budget_left(study, settings.n_trials)
    shares = split_budget(left, settings.n_jobs)
    before = _started(study)
    if not shares:
        pass
    elif len(shares) == 1 or evaluate is not None or callbacks:
        # One process: also the way tests inject an evaluator or callbacks.
        progress = [] if on_progress is None else [lambda s, t: on_progress(s)]
        run_worker(settings, left, 0, evaluate=evaluate, callbacks=[*callbacks, *progress])
    else:
        _run_processes(settings, shares, on_progress, study, poll_seconds)
    return SweepResult(study, _started(study) - before, len(finished_trials(study)), dead)


def _started(study: optuna.Study) -> int:
    waiting = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    return len(study.get_trials(deepcopy=False)) - len(waiting)


def _run_processes(
    settings: SweepSettings,
    shares: list[int],
    on_progress: Callable[[optuna.Study], None] | None,
    study: optuna.Study,
    poll_seconds: float,
) -> None:
    # spawn, not fork: the parent may hold threads (W&B, SQLAlchemy pools, torch) that fork would copy.
    context = multiprocessing.get_context("spawn")
    errors = context.Queue()
    processes = [
        context.Process(target=_worker_process, args=(settings, share, index, errors), daemon=False)
        for index, share in enumerate(shares)
    ]
    with _thread_share(len(processes)):
        for process in processes:
            process.start()
    try:
        while any(p.is_alive() for p in processes):
            if not errors.empty():
                break
            for process in processes:
                process.join(timeout=poll_seconds / len(processes))
            if on_progress is not None:
                on_progress(study)
    except BaseException:
        # Ctrl-C (the workers got the same SIGINT from the terminal), SIGTERM of this process
        # (raised here by the command line's handler) or an error: stop every worker, give them
        # time to record their interrupted trial, then return to write the finished ones.
        for process in processes:
            if process.is_alive() and process.pid is not None:
                os.kill(process.pid, signal.SIGTERM)
        _stop(processes, grace_s=STOP_GRACE_S)
        # a worker interrupted inside Optuna's own bookkeeping may leave its trial RUNNING: the
        # workers are gone now, so mark their trials failed as a rerun would
        with contextlib.suppress(Exception):
            fail_dead_local_trials(study)
        raise
    failed = [p for p in processes if p.exitcode not in (0, None)]
    message = errors.get() if not errors.empty() else None
    _stop(processes, grace_s=0.0 if message else STOP_GRACE_S)
    if message is not None:
        raise HVPSError(message)
    if failed:
        codes = ", ".join(str(p.exitcode) for p in failed)
        raise HVPSError(
            f"--n-jobs: {len(failed)} worker process(es) died (exit codes {codes}); rerun to resume"
        )


#: the thread pools a worker's libraries size from the environment (OpenMP, BLAS, OpenCV's own)
THREAD_VARIABLES = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OPENCV_FOR_THREADS_NUM")


@contextmanager
def _thread_share(workers: int) -> Iterator[None]:
    """Give each spawned worker ``cores // workers`` threads, unless the user set the variables.

    Spawned workers read these variables when their libraries load. Without them each of K
    workers sizes its pools for every core, and K pools of spinning threads on the same cores
    run slower than one (``benchmarks/thread_contention.py``: a torch step 3.6x slower beside a
    second job, 0.99x with the cores split).
    """
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    share = str(max(1, cores // max(1, workers)))
    added = [name for name in THREAD_VARIABLES if name not in os.environ]
    for name in added:
        os.environ[name] = share
    try:
        yield
    finally:
        for name in added:
            os.environ.pop(name, None)


def _stop(processes: list[Any], grace_s: float) -> None:
    deadline = time.monotonic() + grace_s
    for process in processes:
        process.join(timeout=max(0.0, deadline - time.monotonic()))
    for process in processes:
        if process.is_alive():
            # the interrupted command prints its one line; this is for --debug logs only
            logging.getLogger(__name__).debug("killing sweep worker pid %s", process.pid)
            process.kill()
            process.join(timeout=5.0)
