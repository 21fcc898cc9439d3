"""Sweep outputs (best.yaml, trials.csv, summary.json, plots) and the W&B run of a sweep."""

from __future__ import annotations

import json

import optuna
import pandas as pd
import pytest
from PIL import Image
from wandb_offline import read_offline_run

from hvps_lightning.cli.sweep import run_tracker_sweep
from hvps_lightning.sweeps.study import open_study
from hvps_lightning.sweeps.wandb_log import resolve_wandb_mode
from hvps_lightning.tracking.config import TrackerConfig


def test_outputs_of_a_sweep(make_settings, tmp_path):
    out = tmp_path / "out"
    settings = make_settings(n_trials=6, stub={"fail_above": 0.8})
    summary = run_tracker_sweep(settings, out, wandb="disabled")
    study = open_study(settings)

    best = TrackerConfig.from_yaml(out / "best.yaml")
    best_trial = max((t for t in study.trials if t.value is not None), key=lambda t: t.value)
    for name, value in best_trial.params.items():
        assert getattr(best, name) == value
    assert best.max_track_id == TrackerConfig().max_track_id  # not searched: the base value

    table = pd.read_csv(out / "trials.csv")
    assert list(table["number"]) == list(range(6))
    assert {"state", "value", "counted", "params_score_threshold", "user_attrs_worker"} <= set(table.columns)
    assert table["counted"].all()
    failed = table[table["state"] == "FAIL"]
    assert (failed["params_score_threshold"] > 0.8).all()

    on_disk = json.loads((out / "summary.json").read_text())
    assert on_disk == json.loads(json.dumps(summary, default=str))
    assert on_disk["n_finished"] == 6 and on_disk["best"]["number"] == best_trial.number
    assert on_disk["base"]["number"] == 0 and on_disk["best"]["value"] >= on_disk["base"]["value"]
    for png in ("optimization_history.png", "param_importances.png"):
        assert on_disk["plots"][png] == "written"
        with Image.open(out / png) as image:
            assert image.size == (900, 500)
    assert not list(out.glob(".*"))  # no temporary files left behind


def test_plots_are_skipped_with_too_few_trials(make_settings, tmp_path):
    summary = run_tracker_sweep(make_settings(n_trials=1), tmp_path / "out", wandb="disabled")
    assert summary["plots"]["optimization_history.png"] == "written"
    assert summary["plots"]["param_importances.png"].startswith("skipped")


def test_outputs_are_written_when_interrupted(make_settings, tmp_path):
    out = tmp_path / "out"

    def stop(study: optuna.Study, trial: optuna.trial.FrozenTrial) -> None:
        if trial.number == 1:
            raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        run_tracker_sweep(make_settings(n_trials=5), out, wandb="disabled", callbacks=[stop])
    assert len(pd.read_csv(out / "trials.csv")) == 2
    assert (out / "best.yaml").is_file()


def _wandb_files(out):
    runs = sorted((out / "wandb").glob("offline-run-*"))
    return runs


def test_offline_wandb_run_holds_every_trial(make_settings, tmp_path, monkeypatch, wandb_records):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.setenv("WANDB_MODE", "offline")
    out = tmp_path / "out"
    settings = make_settings(n_trials=5, stub={"fail_above": 0.8})
    run_tracker_sweep(settings, out, wandb="auto")
    runs = _wandb_files(out)
    assert len(runs) == 1
    tables = list(runs[0].glob("files/media/table/trials_*.table.json"))
    assert len(tables) == 1
    table = json.loads(tables[0].read_text())
    rows = [dict(zip(table["columns"], row, strict=True)) for row in table["data"]]
    study = open_study(settings)
    assert [r["number"] for r in rows] == [t.number for t in study.trials]
    assert [r["value"] for r in rows] == [t.value for t in study.trials]
    assert [r["score_threshold"] for r in rows] == [t.params["score_threshold"] for t in study.trials]
    assert rows[0]["source"] == "base"
    assert all((r["fail_reason"] is None) == (r["state"] == "COMPLETE") for r in rows)
    # the run's history (protobuf records) carries the per-trial curve, and the run was finished
    wandb_records(lambda: list(runs[0].glob("run-*.wandb")), [b"trial/best_so_far", b"trial/value"])
    # the results are the run's `result` artifact (lineage: cache -> sweep run -> best.yaml)
    (artifact,) = [a for a in read_offline_run(runs[0]).artifacts if a["type"] == "result"]
    assert artifact["name"] == f"sweep-{settings.study_name}"
    assert artifact["files"] == ["best.yaml", "summary.json", "trials.csv"]
    # a second sweep in the same process gets its own run (each run is finished)
    run_tracker_sweep(make_settings(n_trials=6), out, wandb="offline")
    assert len(_wandb_files(out)) == 2


def test_wandb_mode_resolution(monkeypatch):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_SWEEP_ID"):
        monkeypatch.delenv(var, raising=False)
    assert resolve_wandb_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_wandb_mode("auto") == "online"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_wandb_mode("auto") == "disabled"
    assert resolve_wandb_mode("offline") == "offline"


def test_progress_reports_finished_trials_and_the_best_so_far(make_settings, tmp_path):
    calls = []
    summary = run_tracker_sweep(
        make_settings(n_trials=4), tmp_path / "out", wandb="disabled",
        progress=lambda done, total, **postfix: calls.append((done, total, postfix)),
    )  # fmt: skip
    assert [c[0] for c in calls] == [1, 2, 3, 4] and {c[1] for c in calls} == {4}
    best = [float(c[2]["aq"]) for c in calls]
    assert best == sorted(best)  # best so far never decreases
    assert best[-1] == pytest.approx(summary["best"]["value"], abs=1e-4)
