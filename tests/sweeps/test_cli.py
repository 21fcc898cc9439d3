"""`hvps sweep tracker` / `hvps sweep trial` end to end on a generated detection cache."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import yaml

from hvps_lightning.cli import main
from hvps_lightning.io import CONFIGS_DIR
from hvps_lightning.sweeps.objective import evaluate_config, load_sweep_data
from hvps_lightning.tracking.config import TrackerConfig

PRESETS = CONFIGS_DIR / "sweeps"


def _sweep(sim_cache, out, *extra):
    return main(
        ["sweep", "tracker", "--detections", str(sim_cache["cache"]), "--gt", str(sim_cache["root"]),
         "--out", str(out), "--wandb", "disabled", *extra]
    )  # fmt: skip


def test_sweep_finds_a_config_at_least_as_good_as_the_default_and_hvps_track_reads_it(sim_cache, tmp_path):
    out = tmp_path / "sweep"
    assert _sweep(sim_cache, out, "--objective", "aq", "--trials", "6", "--seed", "1") == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["n_finished"] == 6 and summary["objective"] == "aq"
    base, best = summary["base"], summary["best"]
    assert base["number"] == 0 and best["value"] >= base["value"]
    # the base trial is the default config, scored like any evaluation of it
    data = load_sweep_data(sim_cache["cache"], sim_cache["root"], "aq")
    assert base["value"] == pytest.approx(evaluate_config(data, TrackerConfig())["aq"])
    # best.yaml is a full TrackerConfig that `hvps track --tracker-config` accepts
    best_config = TrackerConfig.from_yaml(out / "best.yaml")
    assert best_config.to_dict() == summary["best_config"]
    assert best_config == TrackerConfig().replace(**best["params"])
    tracked = tmp_path / "tracked"
    code = main(["track", "--detections", str(sim_cache["cache"]), "--out", str(tracked),
                 "--tracker-config", str(out / "best.yaml"), "--quiet"])  # fmt: skip
    assert code == 0
    assert yaml.safe_load((tracked / "tracker_config.yaml").read_text()) == best_config.to_dict()
    assert best["value"] == pytest.approx(evaluate_config(data, best_config)["aq"])


def test_rerun_with_more_trials_resumes_the_study(sim_cache, tmp_path):
    out = tmp_path / "sweep"
    assert _sweep(sim_cache, out, "--trials", "2", "--sampler", "random") == 0
    first = pd.read_csv(out / "trials.csv")
    assert _sweep(sim_cache, out, "--trials", "4", "--sampler", "random") == 0
    second = pd.read_csv(out / "trials.csv")
    assert list(second["number"]) == [0, 1, 2, 3]
    pd.testing.assert_frame_equal(first, second.iloc[:2].reset_index(drop=True), check_dtype=False)
    assert (out / "study.journal").is_file()


def test_one_trial_command(sim_cache, tmp_path, capsys):
    output = tmp_path / "trial.json"
    code = main(
        ["sweep", "trial", "--detections", str(sim_cache["cache"]), "--gt", str(sim_cache["root"]),
         "--objective", "aq", "--min_hits=1", "--long_term_enabled=False", "--long_term_frames=20.0",
         "--motion_model=kalman", "--output", str(output), "--wandb", "disabled"]
    )  # fmt: skip
    assert code == 0
    printed = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert printed == json.loads(output.read_text())
    config = TrackerConfig(min_hits=1, long_term_enabled=False, long_term_frames=20, motion_model="kalman")
    data = load_sweep_data(sim_cache["cache"], sim_cache["root"], "aq")
    assert printed["value"] == pytest.approx(evaluate_config(data, config)["aq"])
    assert printed["params"] == {"min_hits": 1, "long_term_enabled": False, "long_term_frames": 20,
                                 "motion_model": "kalman"}  # fmt: skip


def test_one_trial_logs_an_offline_wandb_run(sim_cache, tmp_path, monkeypatch, wandb_records):
    monkeypatch.setenv("WANDB_MODE", "offline")
    code = main(
        ["sweep", "trial", "--detections", str(sim_cache["cache"]), "--gt", str(sim_cache["root"]),
         "--wandb-dir", str(tmp_path), "--min_hits=3"]
    )  # fmt: skip
    assert code == 0
    runs = lambda: list((tmp_path / "wandb").glob("offline-run-*/run-*.wandb"))  # noqa: E731
    wandb_records(runs, [b"num_tracks", b"min_hits"])


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--out", "{tmp}/o"], "--trials"),
        (["--trials", "2"], "--out"),
        (["--trials", "2", "--out", "{tmp}/o", "--objective", "stq"], "--semantic"),
        (["--trials", "2", "--out", "{tmp}/o", "--storage", "nonsense"], "--storage"),
        (["--trials", "0", "--out", "{tmp}/o"], "--trials"),
        (["--trials", "2", "--out", "{tmp}/o", "--params", "[nope]"], "--params"),
        (["--trials", "2", "--out", "{tmp}/o", "--tracker-config", "{tmp}/missing.yaml"], "missing.yaml"),
    ],
)
def test_user_errors_exit_2_with_one_line(sim_cache, tmp_path, capsys, extra, message):
    args = ["sweep", "tracker", "--detections", str(sim_cache["cache"]), "--gt", str(sim_cache["root"]),
            "--wandb", "disabled"]  # fmt: skip
    assert main(args + [a.format(tmp=tmp_path) for a in extra]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and message in err and err.startswith("hvps sweep: error:")


def test_bad_trial_parameters_exit_2(sim_cache, capsys):
    code = main(["sweep", "trial", "--detections", str(sim_cache["cache"]), "--gt", str(sim_cache["root"]),
                 "--wandb", "disabled", "--min_hits=2.5"])  # fmt: skip
    assert code == 2 and "--min_hits 2.5: expected an integer" in capsys.readouterr().err


@pytest.mark.slow
def test_two_worker_processes_run_the_real_objective(sim_cache, tmp_path):
    out = tmp_path / "sweep"
    storage = f"sqlite:///{tmp_path / 'shared.db'}"
    args = [
        "--objective",
        "idf1",
        "--trials",
        "4",
        "--n-jobs",
        "2",
        "--storage",
        storage,
        "--study",
        "shared",
    ]
    assert _sweep(sim_cache, out, *args) == 0
    table = pd.read_csv(out / "trials.csv")
    assert sorted(table["number"]) == [0, 1, 2, 3] and (table["state"] == "COMPLETE").all()
    assert table["user_attrs_worker"].nunique() == 2
    assert not (out / "study.journal").exists()  # the shared storage, not the local default


@pytest.mark.parametrize("preset", sorted(PRESETS.glob("*.yaml")), ids=lambda p: p.stem)
def test_sweep_presets_run(sim_cache, tmp_path, preset):
    """Every shipped sweep preset parses and runs (two trials; grid presets their grid)."""
    extra = ["--semantic", str(sim_cache["semantic"])] if "stq" in preset.stem else []
    trials = yaml.safe_load(preset.read_text())["trials"]
    out = tmp_path / "out"
    code = main(
        ["sweep", "tracker", "--config", str(preset), "--detections", str(sim_cache["cache"]),
         "--gt", str(sim_cache["root"]), "--out", str(out), "--wandb", "disabled", *extra,
         *(["--trials", "2"] if trials > 17 else [])]
    )  # fmt: skip
    assert code == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["objective"] == yaml.safe_load(preset.read_text())["objective"]
    assert summary["n_finished"] == (2 if trials > 17 else trials)
    if summary["sampler"] == "grid":  # the whole grid, each point once, plus the enqueued base
        table = pd.read_csv(out / "trials.csv")
        params = [c for c in table.columns if c.startswith("params_")]
        assert len(params) == 4 and len(table.drop_duplicates(params)) == 16
