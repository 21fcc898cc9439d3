"""TrackerConfig.search_space() -> Optuna distributions, grids and W&B parameters."""

from __future__ import annotations

import dataclasses
from types import SimpleNamespace

import optuna
import pytest

from hvps_lightning.errors import HVPSError
from hvps_lightning.sweeps.space import (
    check_space,
    clip_to_space,
    distributions,
    grid_values,
    suggest_params,
    wandb_parameter,
)
from hvps_lightning.tracking.config import TrackerConfig


def _range(kind, low=None, high=None, log=False, choices=None):
    return SimpleNamespace(kind=kind, low=low, high=high, log=log, choices=choices)


def test_every_range_becomes_the_same_optuna_distribution():
    space = TrackerConfig.search_space()
    fields = {f.name for f in dataclasses.fields(TrackerConfig)}
    assert set(space) <= fields
    dists = distributions(space)
    for name, rng in space.items():
        dist = dists[name]
        if rng.kind == "float":
            assert isinstance(dist, optuna.distributions.FloatDistribution)
            assert (dist.low, dist.high, dist.log) == (rng.low, rng.high, rng.log)
        elif rng.kind == "int":
            assert isinstance(dist, optuna.distributions.IntDistribution)
            assert (dist.low, dist.high, dist.log) == (rng.low, rng.high, rng.log)
        else:
            assert isinstance(dist, optuna.distributions.CategoricalDistribution)
            assert list(dist.choices) == ([False, True] if rng.kind == "bool" else list(rng.choices))
    # the ablation switches are swept with the numbers
    assert {"short_term_enabled", "long_term_enabled"} <= set(space)


def test_suggested_params_build_a_valid_tracker_config():
    space = TrackerConfig.search_space()
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=3))
    for _ in range(20):
        trial = study.ask()
        params = suggest_params(trial, space)
        assert set(params) == set(space)
        config = TrackerConfig.from_dict({**TrackerConfig().to_dict(), **params})
        for name, value in params.items():
            assert getattr(config, name) == value
        study.tell(trial, 0.0)


def test_default_config_lies_in_its_space():
    space = TrackerConfig.search_space()
    params = clip_to_space(TrackerConfig().to_dict(), space)
    assert params == {k: v for k, v in TrackerConfig().to_dict().items() if k in space}
    with pytest.raises(HVPSError, match="outside its search range"):
        clip_to_space({"x": 5.0}, {"x": _range("float", 0.0, 1.0)})
    with pytest.raises(HVPSError, match="not one of its choices"):
        clip_to_space({"x": "c"}, {"x": _range("categorical", choices=("a", "b"))})


def test_grid_values_are_spaced_and_hold_the_base():
    space = {
        "lin": _range("float", 0.0, 1.0),
        "log": _range("float", 0.01, 1.0, log=True),
        "n": _range("int", 1, 9),
        "flag": _range("bool", choices=(False, True)),
        "kind": _range("categorical", choices=("a", "b")),
    }
    grid = grid_values(space, points=3, base={"lin": 0.25, "n": 2})
    assert grid == {
        "lin": [0.0, 0.25, 0.5, 1.0],
        "log": [0.01, 0.1, 1.0],
        "n": [1, 2, 5, 9],
        "flag": [False, True],
        "kind": ["a", "b"],
    }


def test_wandb_parameters():
    assert wandb_parameter(_range("float", 0.1, 0.9)) == {"distribution": "uniform", "min": 0.1, "max": 0.9}
    assert wandb_parameter(_range("float", 0.01, 1.0, log=True)) == {
        "distribution": "log_uniform_values",
        "min": 0.01,
        "max": 1.0,
    }
    assert wandb_parameter(_range("int", 1, 5)) == {"distribution": "int_uniform", "min": 1, "max": 5}
    assert wandb_parameter(_range("int", 5, 300, log=True))["distribution"] == "q_log_uniform_values"
    assert wandb_parameter(_range("bool", choices=(False, True))) == {"values": [False, True]}
    assert wandb_parameter(_range("categorical", choices=("a", "b"))) == {"values": ["a", "b"]}
    assert wandb_parameter(_range("float", 0.0, 1.0), grid=[0.0, 1.0]) == {"values": [0.0, 1.0]}


@pytest.mark.parametrize(
    ("space", "message"),
    [
        ({}, "empty"),
        ({"x": _range("complex")}, "unknown kind"),
        ({"x": _range("float", 2.0, 1.0)}, "bad range"),
        ({"x": _range("float", 0.0, 1.0, log=True)}, "low > 0"),
        ({"x": _range("categorical", choices=())}, "needs choices"),
    ],
)
def test_bad_spaces_are_user_errors(space, message):
    with pytest.raises(HVPSError, match=message):
        check_space(space)
