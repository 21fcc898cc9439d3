"""Sweeps under real signals and concurrent processes (subprocesses, real SIGTERM / SIGKILL).

* SIGTERM of ``hvps sweep tracker --n-jobs 2`` stops both workers, writes ``best.yaml``,
  ``summary.json`` and ``trials.csv`` of the finished trials and exits 143 with one line.
* SIGKILL of the parent leaves no worker running on its own (``PR_SET_PDEATHSIG``).
* Two sweep processes started alike on one storage never evaluate the same parameters.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pandas as pd
import pytest
from optuna.trial import TrialState

from hvps_lightning.io import process_alive
from hvps_lightning.sweeps.storage import WORKER_ATTR, open_storage
from hvps_lightning.tracking.config import TrackerConfig

HERE = Path(__file__).parent


def _start_sweep(sim_cache: dict[str, Path], out: Path) -> subprocess.Popen[str]:
    args = [sys.executable, "-m", "hvps_lightning.cli", "sweep", "tracker",
            "--detections", str(sim_cache["cache"]), "--gt", str(sim_cache["root"]), "--out", str(out),
            "--trials", "100000", "--n-jobs", "2",
            "--sampler", "random", "--wandb", "disabled", "--quiet"]  # fmt: skip
    # a session of its own, like a command started in a terminal: Ctrl-C signals the whole group
    return subprocess.Popen(
        args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )


def _trials(out: Path) -> list[optuna.trial.FrozenTrial]:
    storage = open_storage(f"journal:///{out / 'study.journal'}")
    names = optuna.get_all_study_names(storage)
    return optuna.load_study(study_name=names[0], storage=storage).get_trials(deepcopy=False) if names else []


def _wait_for_trials(
    process: subprocess.Popen[str], out: Path, complete: int, timeout_s: float = 120
) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        if (out / "study.journal").exists():
            trials = _trials(out)
            done = sum(t.state == TrialState.COMPLETE for t in trials)
            workers = {t.user_attrs.get(WORKER_ATTR) for t in trials} - {None}
            if done >= complete and len(workers) == 2:
                return
        time.sleep(0.2)
    process.kill()
    pytest.fail(f"the sweep did not finish {complete} trials in two workers within {timeout_s} s")


def _worker_pids(out: Path) -> set[int]:
    identities = {t.user_attrs[WORKER_ATTR] for t in _trials(out) if WORKER_ATTR in t.user_attrs}
    return {int(identity.rsplit(":", 1)[1]) for identity in identities}


def _wait_until_dead(pids: set[int], timeout_s: float = 20) -> set[int]:
    deadline = time.monotonic() + timeout_s
    alive = set(pids)
    while alive and time.monotonic() < deadline:
        alive = {pid for pid in alive if process_alive(pid) and not _zombie(pid)}
        time.sleep(0.1)
    return alive


def _zombie(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ")[1].startswith("Z")
    except OSError:
        return False


@pytest.mark.slow
@pytest.mark.parametrize(
    ("how", "code", "line"),
    [("SIGTERM to the command", 143, "terminated"), ("Ctrl-C in its terminal", 130, "interrupted")],
)
def test_a_signal_stops_the_workers_and_writes_the_finished_trials(sim_cache, tmp_path, how, code, line):
    out = tmp_path / "sweep"
    process = _start_sweep(sim_cache, out)
    try:
        _wait_for_trials(process, out, complete=3)
        workers = _worker_pids(out)
        if how.startswith("SIGTERM"):
            process.send_signal(signal.SIGTERM)
        else:  # the terminal sends SIGINT to the foreground process group: parent and workers
            os.killpg(process.pid, signal.SIGINT)
        _, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == code, err
    assert err.strip().splitlines() == [f"hvps sweep: {line}; nothing half-written was kept"]
    assert not _wait_until_dead(workers), "a sweep worker outlived its parent's SIGTERM"
    trials = _trials(out)
    finished = [t for t in trials if t.state == TrialState.COMPLETE]
    assert 3 <= len(finished) < 100000
    assert not [t for t in trials if t.state == TrialState.RUNNING]  # interrupted trials recorded as failed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_finished"] == len(finished)
    assert len(pd.read_csv(out / "trials.csv")) == len(trials)
    best = max(finished, key=lambda t: (t.value, -t.number))
    assert TrackerConfig.from_yaml(out / "best.yaml") == TrackerConfig().replace(**best.params)


@pytest.mark.slow
def test_sigkill_of_the_parent_leaves_no_worker_running(sim_cache, tmp_path):
    out = tmp_path / "sweep"
    process = _start_sweep(sim_cache, out)
    try:
        _wait_for_trials(process, out, complete=2)
        workers = _worker_pids(out)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
    finally:
        if process.poll() is None:
            process.kill()
    assert not _wait_until_dead(workers), "a sweep worker kept running after its parent was killed"
    count = len(_trials(out))
    time.sleep(2)
    assert len(_trials(out)) == count  # nobody adds trials to the study any more


_SWEEP = """
import sys
sys.path.insert(0, {stub_dir!r})
from hvps_lightning.sweeps.study import SweepSettings, run_sweep
from hvps_lightning.tracking.config import TrackerConfig
settings = SweepSettings(storage_url={url!r}, study_name="test", objective="aq", n_trials={n},
                         sampler={sampler!r}, seed=0, base_params=TrackerConfig().to_dict(),
                         evaluator="hvps_sweep_stub:load", evaluator_kwargs={{"sleep_s": 0.05}})
run_sweep(settings)
"""


@pytest.mark.slow
@pytest.mark.parametrize(
    ("storage", "sampler"), [("journal", "random"), ("sqlite", "random"), ("journal", "tpe")]
)
def test_concurrent_sweeps_started_alike_never_repeat_parameters(tmp_path, storage, sampler):
    url = f"journal:///{tmp_path}/s.journal" if storage == "journal" else f"sqlite:///{tmp_path / 's.db'}"
    code = _SWEEP.format(stub_dir=str(HERE), url=url, n=24, sampler=sampler)
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    processes = [subprocess.Popen([sys.executable, "-c", code], env=env) for _ in range(2)]
    for process in processes:
        assert process.wait(timeout=240) == 0
    study = optuna.load_study(study_name="test", storage=open_storage(url))
    searched = [t for t in study.get_trials(deepcopy=False) if t.user_attrs.get("source") != "base"]
    assert len({t.user_attrs[WORKER_ATTR] for t in searched}) == 2  # both processes ran trials
    params = [tuple(sorted(t.params.items())) for t in searched]
    assert len(params) >= 20 and len(set(params)) == len(params)


def test_workers_share_the_cores_unless_the_user_sized_the_pools(monkeypatch):
    from hvps_lightning.sweeps.study import THREAD_VARIABLES, _thread_share

    for name in THREAD_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("OMP_NUM_THREADS", "3")  # the user's choice stays
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(8)))
    with _thread_share(4):
        assert os.environ["OMP_NUM_THREADS"] == "3"
        assert all(os.environ[name] == "2" for name in THREAD_VARIABLES[1:])
    assert os.environ["OMP_NUM_THREADS"] == "3"
    assert not any(name in os.environ for name in THREAD_VARIABLES[1:])
    with _thread_share(16):  # more workers than cores: one thread each
        assert os.environ["OPENBLAS_NUM_THREADS"] == "1"
