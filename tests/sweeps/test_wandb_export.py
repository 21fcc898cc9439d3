"""`hvps sweep tracker --export-wandb`: the W&B sweep config and the command its agents run."""

from __future__ import annotations

import dataclasses

import pytest
import yaml
from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

from hvps_lightning.cli import main
from hvps_lightning.cli.sweep import build_parser
from hvps_lightning.tracking.config import TrackerConfig

W_AND_B_DISTRIBUTIONS = {"uniform", "log_uniform_values", "int_uniform", "q_log_uniform_values"}


@pytest.fixture
def folders(tmp_path):
    for name in ("cache", "gt", "semantic"):
        (tmp_path / name).mkdir()
    return tmp_path


def _export(folders, *extra):
    path = folders / "sweep.yaml"
    code = main(
        ["sweep", "tracker", "--detections", str(folders / "cache"), "--gt", str(folders / "gt"),
         "--export-wandb", str(path), *extra]
    )  # fmt: skip
    assert code == 0
    return yaml.safe_load(path.read_text())


def _samples(spec):
    if "values" in spec:
        return list(spec["values"])
    low, high = spec["min"], spec["max"]
    if spec["distribution"] == "q_log_uniform_values":
        return [float(low), float(high)]  # W&B hands quantised values over as floats
    return [low, high, (low + high) / 2 if spec["distribution"] != "int_uniform" else (low + high) // 2]


def _command_for(config, values):
    args = create_sweep_command_args({"args": {k: {"value": v} for k, v in values.items()}})["args"]
    command = []
    for item in config["command"]:
        command += args if item == "${args}" else ([] if item == "${env}" else [item])
    return command


def test_exported_parameters_are_the_tracker_search_space(folders):
    config = _export(folders, "--objective", "aq", "--trials", "40")
    space = TrackerConfig.search_space()
    fields = {f.name for f in dataclasses.fields(TrackerConfig)}
    assert set(config["parameters"]) == set(space) and set(config["parameters"]) <= fields
    assert config["method"] == "bayes" and config["metric"] == {"name": "aq", "goal": "maximize"}
    assert config["run_cap"] == 40
    for name, spec in config["parameters"].items():
        rng = space[name]
        if "values" in spec:
            assert spec["values"] == ([False, True] if rng.kind == "bool" else list(rng.choices))
        else:
            assert spec["distribution"] in W_AND_B_DISTRIBUTIONS
            assert (spec["min"], spec["max"]) == (rng.low, rng.high)
            assert spec["distribution"].startswith("log") == (rng.log and rng.kind == "float")
    assert config["command"][:4] == ["${env}", "hvps", "sweep", "trial"]
    assert config["command"][-1] == "${args}"


def test_the_agent_command_parses_with_sample_values(folders):
    config = _export(folders, "--objective", "aq")
    parser = build_parser()
    samples = {name: _samples(spec) for name, spec in config["parameters"].items()}
    for index in range(3):
        values = {name: options[index % len(options)] for name, options in samples.items()}
        command = _command_for(config, values)
        assert command[:3] == ["hvps", "sweep", "trial"]
        cfg = parser.parse_args(command[2:])
        assert cfg.subcommand == "trial"
        trial = cfg.trial
        assert trial.detections == str((folders / "cache").resolve()) and trial.objective == "aq"
        parsed = {name: getattr(trial, name) for name in values}
        for name, value in values.items():
            assert parsed[name] == value, name
        # ...and builds the tracker config the trial runs
        ints = {n for n, r in TrackerConfig.search_space().items() if r.kind == "int"}
        config_values = {n: int(v) if n in ints else v for n, v in parsed.items()}
        built = TrackerConfig.from_dict(config_values)
        assert all(getattr(built, n) == v for n, v in config_values.items())


def test_grid_export_lists_the_grid_and_needs_a_small_space(folders, capsys):
    config = _export(folders, "--sampler", "grid", "--params", "[score_threshold, long_term_enabled]")
    assert config["method"] == "grid"
    assert config["parameters"] == {
        "score_threshold": {"values": [0.05, 0.5, 0.95]},
        "long_term_enabled": {"values": [False, True]},
    }
    path = folders / "big.yaml"
    code = main(["sweep", "tracker", "--detections", str(folders / "cache"), "--gt", str(folders / "gt"),
                 "--sampler", "grid", "--export-wandb", str(path)])  # fmt: skip
    assert code == 2 and "--params" in capsys.readouterr().err and not path.exists()


def test_stq_export_carries_the_semantic_cache(folders):
    config = _export(folders, "--semantic", str(folders / "semantic"))
    assert config["metric"]["name"] == "stq"
    command = config["command"]
    assert command[command.index("--semantic") + 1] == str((folders / "semantic").resolve())


def test_export_keeps_an_artifact_reference_for_the_agents(folders):
    reference = "wandb-artifact://me/hvps-lightning/detections-motchallenge_step:v2"
    path = folders / "sweep.yaml"
    assert main(["sweep", "tracker", "--detections", reference, "--gt", str(folders / "gt"),
                 "--export-wandb", str(path)]) == 0  # fmt: skip
    command = yaml.safe_load(path.read_text())["command"]
    assert command[command.index("--detections") + 1] == reference  # each agent run resolves it
