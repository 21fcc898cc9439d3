"""The tracker's search space, translated for Optuna and for W&B sweeps.

``TrackerConfig.search_space()`` is the single source of the ranges: this module only
translates each ``ParamRange(kind, low, high, log, choices)`` into an Optuna suggestion, a
grid of values (for the grid sampler and W&B grid sweeps) and a W&B sweep parameter. It
never defines a range of its own.

Example:
    >>> from types import SimpleNamespace as R
    >>> space = {"gate": R(kind="float", low=0.1, high=0.9, log=False, choices=None),
    ...          "reid": R(kind="bool", low=None, high=None, log=False, choices=None)}
    >>> grid_values(space, points=3, base={"gate": 0.3, "reid": True})
    {'gate': [0.1, 0.3, 0.5, 0.9], 'reid': [False, True]}
    >>> wandb_parameter(space["gate"])
    {'distribution': 'uniform', 'min': 0.1, 'max': 0.9}
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any, Protocol

import numpy as np
import optuna

from hvps_lightning.errors import HVPSError

KINDS = ("float", "int", "bool", "categorical")


class ParamRangeLike(Protocol):
    """What this module reads of ``hvps_lightning.tracking.config.ParamRange``."""

    kind: str
    low: Any
    high: Any
    log: bool
    choices: Any


def check_space(space: Mapping[str, ParamRangeLike]) -> None:
    """Raise :class:`HVPSError` if a range cannot be searched (empty space, unknown kind, low > high)."""
    if not space:
        raise HVPSError("TrackerConfig.search_space() is empty: nothing to sweep")
    for name, rng in space.items():
        if rng.kind not in KINDS:
            raise HVPSError(f"search space {name!r}: unknown kind {rng.kind!r} (expected one of {KINDS})")
        if rng.kind in ("float", "int"):
            if rng.low is None or rng.high is None or rng.low > rng.high:
                raise HVPSError(f"search space {name!r}: bad range [{rng.low}, {rng.high}]")
            if rng.log and rng.low <= 0:
                raise HVPSError(f"search space {name!r}: a log range needs low > 0, got {rng.low}")
        if rng.kind == "categorical" and not list(rng.choices or ()):
            raise HVPSError(f"search space {name!r}: a categorical range needs choices")


def restrict_space(
    space: Mapping[str, ParamRangeLike], names: Sequence[str] | None = None
) -> dict[str, ParamRangeLike]:
    """Return ``space`` restricted to ``names`` (all when ``None``), checked.

    Raises:
        HVPSError: for a name that is not in the search space, or a range that cannot be searched.
    """
    if names is not None:
        unknown = [n for n in names if n not in space]
        if unknown:
            raise HVPSError(
                f"--params: {', '.join(unknown)} not in TrackerConfig.search_space(); "
                f"searchable: {', '.join(space)}"
            )
        space = {name: space[name] for name in space if name in set(names)}
    check_space(space)
    return dict(space)


def _choices(rng: ParamRangeLike) -> list[Any]:
    if rng.kind == "bool":
        return [False, True]
    return list(rng.choices)


def distribution(rng: ParamRangeLike) -> optuna.distributions.BaseDistribution:
    """Return the Optuna distribution of one range."""
    if rng.kind == "float":
        return optuna.distributions.FloatDistribution(float(rng.low), float(rng.high), log=bool(rng.log))
    if rng.kind == "int":
        return optuna.distributions.IntDistribution(int(rng.low), int(rng.high), log=bool(rng.log))
    return optuna.distributions.CategoricalDistribution(_choices(rng))


def distributions(space: Mapping[str, ParamRangeLike]) -> dict[str, optuna.distributions.BaseDistribution]:
    """Return ``{name: Optuna distribution}`` for a whole search space."""
    return {name: distribution(rng) for name, rng in space.items()}


def suggest_params(trial: optuna.Trial, space: Mapping[str, ParamRangeLike]) -> dict[str, Any]:
    """Ask ``trial`` for one value per range (in the order of ``space``) and return them."""
    params: dict[str, Any] = {}
    for name, rng in space.items():
        if rng.kind == "float":
            params[name] = trial.suggest_float(name, float(rng.low), float(rng.high), log=bool(rng.log))
        elif rng.kind == "int":
            params[name] = trial.suggest_int(name, int(rng.low), int(rng.high), log=bool(rng.log))
        else:
            params[name] = trial.suggest_categorical(name, _choices(rng))
    return params


def clip_to_space(params: Mapping[str, Any], space: Mapping[str, ParamRangeLike]) -> dict[str, Any]:
    """Return the values of ``params`` for the names in ``space``, as the types Optuna stores.

    Used to enqueue the base (default) configuration: a default outside its own search range
    is a mistake in ``TrackerConfig`` and raises :class:`HVPSError` rather than being clipped.
    """
    out: dict[str, Any] = {}
    for name, rng in space.items():
        if name not in params:
            raise HVPSError(f"search space names {name!r}, which is not a TrackerConfig field")
        value = params[name]
        if rng.kind in ("float", "int"):
            value = float(value) if rng.kind == "float" else int(value)
            if not rng.low <= value <= rng.high:
                raise HVPSError(
                    f"tracker config {name}={value} lies outside its search range [{rng.low}, {rng.high}]"
                )
        elif value not in _choices(rng):
            raise HVPSError(f"tracker config {name}={value!r} is not one of its choices {_choices(rng)}")
        out[name] = value
    return out


def _numeric_points(rng: ParamRangeLike, points: int) -> list[float]:
    low, high = float(rng.low), float(rng.high)
    if points <= 1 or low == high:
        return [low]
    if rng.log:
        return list(np.geomspace(low, high, points))
    return list(np.linspace(low, high, points))


def grid_values(
    space: Mapping[str, ParamRangeLike], points: int = 3, base: Mapping[str, Any] | None = None
) -> dict[str, list[Any]]:
    """Return a finite grid per range: ``points`` evenly spaced values (log-spaced for log ranges).

    Bools and categoricals give all their choices. The base value of each range (the default
    config) is added to its grid so that the default trial is a grid point.
    """
    grid: dict[str, list[Any]] = {}
    for name, rng in space.items():
        if rng.kind in ("bool", "categorical"):
            grid[name] = _choices(rng)
            continue
        values = _numeric_points(rng, points)
        if rng.kind == "int":
            values = [round(v) for v in values]
        if base is not None and name in base:
            values.append(base[name])
        cast = int if rng.kind == "int" else float
        # Rounding keeps the grid readable in CSVs and W&B; dedupe after rounding.
        grid[name] = sorted({cast(round(v, 6)) if cast is float else cast(v) for v in values})
    return grid


def grid_size(grid: Mapping[str, list[Any]]) -> int:
    """Number of points of a grid (the product of its value counts)."""
    return math.prod(len(v) for v in grid.values())


def wandb_parameter(rng: ParamRangeLike, grid: list[Any] | None = None) -> dict[str, Any]:
    """Return the W&B sweep ``parameters`` entry of one range (``grid``: explicit values)."""
    if grid is not None:
        return {"values": list(grid)}
    if rng.kind == "float":
        kind = "log_uniform_values" if rng.log else "uniform"
        return {"distribution": kind, "min": float(rng.low), "max": float(rng.high)}
    if rng.kind == "int":
        if rng.log:
            # W&B has no integer log distribution; q_log_uniform_values with q=1 is its equivalent.
            return {"distribution": "q_log_uniform_values", "min": int(rng.low), "max": int(rng.high), "q": 1}
        return {"distribution": "int_uniform", "min": int(rng.low), "max": int(rng.high)}
    return {"values": _choices(rng)}
