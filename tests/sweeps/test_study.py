"""The Optuna machinery of tracker sweeps with a stub evaluator: budget, resume, failures, workers."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from optuna.trial import TrialState

from hvps_lightning.errors import HVPSError
from hvps_lightning.sweeps.space import grid_values
from hvps_lightning.sweeps.study import (
    FAIL_REASON_ATTR,
    SOURCE_ATTR,
    WORKER_ATTR,
    best_trial,
    finished_trials,
    open_study,
    run_sweep,
    split_budget,
)
from hvps_lightning.tracking.config import TrackerConfig


def _trials(settings):
    return open_study(settings).get_trials(deepcopy=False)


def test_base_config_is_trial_zero_and_best_is_at_least_as_good(make_settings):
    settings = make_settings(n_trials=6)
    result = run_sweep(settings)
    trials = _trials(settings)
    assert len(trials) == 6 and result.finished == 6 and result.ran == 6
    base = trials[0]
    assert base.user_attrs[SOURCE_ATTR] == "base"
    space = TrackerConfig.search_space()
    assert set(base.params) == set(space)
    assert base.params == {k: v for k, v in TrackerConfig().to_dict().items() if k in space}
    best = best_trial(result.study)
    assert best is not None and best.value >= base.value
    # the stub's value is a known function of the parameters; metrics reach the user attrs
    assert base.value == pytest.approx(1.0 - abs(0.5 - 0.3))
    assert base.user_attrs["num_tracks"] == 3.0 and base.user_attrs["stq"] == pytest.approx(base.value / 2)
    assert all(WORKER_ATTR in t.user_attrs for t in trials)


def test_rerunning_a_finished_sweep_runs_nothing(make_settings):
    settings = make_settings(n_trials=3)
    run_sweep(settings)
    again = run_sweep(settings)
    assert again.ran == 0 and again.finished == 3 and len(_trials(settings)) == 3


def test_resume_after_interrupt_between_trials_continues_the_count(make_settings):
    settings = make_settings(n_trials=7)
    done: list[int] = []

    def interrupt_after_three(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        done.append(trial.number)
        if len(done) == 3:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(settings, callbacks=[interrupt_after_three])
    first = {t.number: t.value for t in _trials(settings)}
    assert sorted(first) == [0, 1, 2] and all(v is not None for v in first.values())

    result = run_sweep(settings)
    trials = _trials(settings)
    assert result.ran == 4 and result.finished == 7
    assert [t.number for t in trials] == list(range(7))  # numbering continues, nothing lost
    assert {t.number: t.value for t in trials[:3]} == first  # finished trials untouched
    assert sum(t.user_attrs.get(SOURCE_ATTR) == "base" for t in trials) == 1


def test_interrupt_inside_a_trial_does_not_count_and_the_base_is_retried(make_settings, stub_on_path):
    import hvps_sweep_stub

    settings = make_settings(n_trials=4)
    real = hvps_sweep_stub.load()

    def interrupted(params):
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_sweep(settings, evaluate=interrupted)
    trials = _trials(settings)
    assert [t.state for t in trials] == [TrialState.FAIL]
    assert FAIL_REASON_ATTR not in trials[0].user_attrs and finished_trials(open_study(settings)) == []

    result = run_sweep(settings, evaluate=real)
    trials = _trials(settings)
    assert result.finished == 4 and len(trials) == 5
    # the interrupted base trial was enqueued again and this time completed
    base = [t for t in trials if t.user_attrs.get(SOURCE_ATTR) == "base"]
    assert [t.state for t in base] == [TrialState.FAIL, TrialState.COMPLETE]
    assert base[1].params == base[0].params


@pytest.mark.parametrize("raise_type", ["ValueError", "HVPSError"])
def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(make_settings, raise_type):
    settings = make_settings(n_trials=8, stub={"fail_above": 0.6, "raise_type": raise_type})
    result = run_sweep(settings)
    trials = _trials(settings)
    failed = [t for t in trials if t.state == TrialState.FAIL]
    complete = [t for t in trials if t.state == TrialState.COMPLETE]
    assert failed, "the seed must sample some score_threshold above 0.6"
    assert all(t.params["score_threshold"] > 0.6 for t in failed)
    assert all(t.params["score_threshold"] <= 0.6 for t in complete)
    assert all("too high" in t.user_attrs[FAIL_REASON_ATTR] for t in failed)
    # failures on bad parameters count towards --trials: the study holds exactly 8 trials
    assert result.finished == 8 and len(trials) == 8


def test_a_failing_base_configuration_stops_the_sweep(make_settings):
    # the default score_threshold 0.5 fails: every trial would, the inputs must be wrong
    settings = make_settings(n_trials=4, stub={"fail_above": 0.4, "raise_type": "HVPSError"})
    with pytest.raises(HVPSError, match=r"base tracker configuration failed.*too high"):
        run_sweep(settings)
    trials = _trials(settings)
    assert len(trials) == 1 and trials[0].state == TrialState.FAIL
    assert FAIL_REASON_ATTR not in trials[0].user_attrs  # does not count: a rerun retries the base
    result = run_sweep(make_settings(n_trials=4, stub={"fail_below": 0.0}))
    assert result.finished == 4 and _trials(settings)[1].user_attrs[SOURCE_ATTR] == "base"


def test_an_unexpected_error_is_fatal(make_settings):
    settings = make_settings(n_trials=4, stub={"fail_above": 0.0, "raise_type": "TypeError"})
    with pytest.raises(TypeError):
        run_sweep(settings)


def test_resuming_with_another_objective_is_refused(make_settings):
    run_sweep(make_settings(n_trials=1))
    with pytest.raises(HVPSError, match="optimises 'aq', not 'stq'"):
        run_sweep(make_settings(n_trials=2, objective="stq"))


def test_grid_sampler_covers_a_small_grid_including_the_base(make_settings):
    names = ["score_threshold", "long_term_enabled", "min_hits"]
    settings = make_settings(n_trials=50, sampler="grid", grid_points=2, params=names)
    grid = grid_values(settings.search_space(), 2, TrackerConfig().to_dict())
    assert grid["score_threshold"] == [0.05, 0.5, 0.95] and grid["min_hits"] == [1, 2, 5]
    result = run_sweep(settings)
    trials = _trials(settings)
    # the grid (3 x 2 x 3 = 18 points) runs out before --trials and the sweep ends: the enqueued
    # base, then every grid point once (the base's point among them: Optuna's GridSampler does not
    # count enqueued trials)
    assert result.finished == 19 and len(trials) == 19
    points = {tuple(t.params[n] for n in names) for t in trials}
    assert len(points) == 18 and all(set(t.params) == set(names) for t in trials)
    assert trials[0].params == {"score_threshold": 0.5, "long_term_enabled": True, "min_hits": 2}


def test_grid_sampler_refuses_a_huge_grid(make_settings):
    with pytest.raises(HVPSError, match="--params"):
        run_sweep(make_settings(n_trials=3, sampler="grid"))


def test_params_restrict_the_search_and_the_rest_keep_base_values(make_settings):
    settings = make_settings(n_trials=3, params=["score_threshold"])
    run_sweep(settings)
    assert all(set(t.params) == {"score_threshold"} for t in _trials(settings))
    with pytest.raises(HVPSError, match="--params: nonsense"):
        make_settings(params=["nonsense"]).search_space()


def test_split_budget():
    assert split_budget(7, 3) == [3, 2, 2]
    assert split_budget(2, 4) == [1, 1]
    assert split_budget(0, 4) == []
    assert sum(split_budget(101, 8)) == 101


@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_two_worker_processes_share_one_study(make_settings, tmp_path, storage):
    url = f"sqlite:///{tmp_path / 'study.db'}" if storage == "sqlite" else f"journal:///{tmp_path}/s.journal"
    settings = make_settings(n_trials=8, n_jobs=2, storage_url=url, stub={"sleep_s": 0.05})
    progress: list[int] = []
    result = run_sweep(settings, on_progress=lambda study: progress.append(1), poll_seconds=0.5)
    trials = _trials(settings)
    assert result.finished == 8 and len(trials) == 8
    assert sorted(t.number for t in trials) == list(range(8))
    assert all(t.state == TrialState.COMPLETE for t in trials)
    workers = {t.user_attrs[WORKER_ATTR] for t in trials}
    assert len(workers) == 2 and str(os.getpid()) not in {w.rsplit(":", 1)[1] for w in workers}
    assert progress  # the parent polled the study while the workers ran


_KILLED_SWEEP = """
import sys
sys.path.insert(0, {stub_dir!r})
from hvps_lightning.sweeps.study import SweepSettings, run_sweep
from hvps_lightning.tracking.config import TrackerConfig
settings = SweepSettings(storage_url={url!r}, study_name="test", objective="aq", n_trials=6, sampler="random",
                         base_params=TrackerConfig().to_dict(), evaluator="hvps_sweep_stub:load",
                         evaluator_kwargs={{"hang_after": 2}})
run_sweep(settings)
"""


@pytest.mark.parametrize("storage", ["journal", "sqlite"])
def test_resume_after_a_killed_sweep_process(make_settings, tmp_path, storage):
    store = tmp_path / ("killed.journal" if storage == "journal" else "killed.db")
    url = f"journal:///{store}" if storage == "journal" else f"sqlite:///{store}"
    settings = make_settings(n_trials=6, storage_url=url)
    code = _KILLED_SWEEP.format(stub_dir=str(Path(__file__).parent), url=url)
    process = subprocess.Popen([sys.executable, "-c", code])
    try:
        deadline = time.monotonic() + 60
        study = None
        while time.monotonic() < deadline:
            time.sleep(0.1)
            if study is None and store.exists():
                try:
                    study = open_study(settings)
                except HVPSError:  # the subprocess has not created the study yet
                    continue
            if study is not None:
                trials = study.get_trials(deepcopy=False)
                running = [t for t in trials if t.state == TrialState.RUNNING]
                # kill once the third trial has all its parameters: it hangs in the evaluator then,
                # and does not hold the journal's lock (a kill inside a write would leave the lock
                # to Optuna's 30 s grace period)
                complete = sum(t.state == TrialState.COMPLETE for t in trials)
                if complete >= 2 and running and len(running[0].params) == len(settings.search_space()):
                    time.sleep(0.5)  # the writer releases the lock just after the line is readable
                    break
        else:
            pytest.fail("the sweep subprocess did not get going")
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    before = _trials(settings)
    finished_before = {t.number: t.value for t in before if t.state == TrialState.COMPLETE}
    assert any(t.state == TrialState.RUNNING for t in before)

    result = run_sweep(settings)
    trials = _trials(settings)
    assert result.dead_trials_failed == [t.number for t in before if t.state == TrialState.RUNNING]
    assert result.finished == 6
    assert all(trials[n].value == v for n, v in finished_before.items())
    assert not any(t.state == TrialState.RUNNING for t in trials)
