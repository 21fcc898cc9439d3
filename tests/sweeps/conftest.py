"""Fixtures of the sweep tests: settings over the real TrackerConfig with a stub evaluator."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hvps_lightning.sweeps.storage import default_storage_url
from hvps_lightning.sweeps.study import SweepSettings
from hvps_lightning.tracking.config import TrackerConfig

HERE = Path(__file__).parent


def wait_for_bytes(
    path_glob: Callable[[], list[Path]], needles: list[bytes], timeout_s: float = 60.0
) -> bytes:
    """Return the bytes of the one file ``path_glob()`` finds once they hold every needle.

    W&B's ``run.finish()`` returns before its service process has flushed the offline
    ``run-*.wandb`` file, so tests wait for the records instead of reading at once.
    """
    deadline = time.monotonic() + timeout_s
    data = b""
    while time.monotonic() < deadline:
        paths = path_glob()
        assert len(paths) <= 1, paths
        data = paths[0].read_bytes() if paths else b""
        if all(n in data for n in needles):
            return data
        time.sleep(0.2)
    raise AssertionError(f"W&B records {needles} never appeared ({len(data)} bytes)")


@pytest.fixture
def wandb_records() -> Callable[..., bytes]:
    """:func:`wait_for_bytes` as a fixture (test modules do not import each other)."""
    return wait_for_bytes


@pytest.fixture
def stub_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``hvps_sweep_stub`` importable here and in spawned workers (they inherit sys.path)."""
    monkeypatch.syspath_prepend(str(HERE))


@pytest.fixture
def make_settings(tmp_path: Path, stub_on_path: None) -> Callable[..., SweepSettings]:
    """Build sweep settings with the stub evaluator; keyword arguments override fields."""

    def make(stub: dict[str, Any] | None = None, **overrides: Any) -> SweepSettings:
        values: dict[str, Any] = {
            "storage_url": default_storage_url(tmp_path),
            "study_name": "test",
            "objective": "aq",
            "n_trials": 5,
            "sampler": "random",
            "seed": 0,
            "base_params": TrackerConfig().to_dict(),
            "evaluator": "hvps_sweep_stub:load",
            "evaluator_kwargs": dict(stub or {}),
        }
        values.update(overrides)
        return SweepSettings(**values)

    return make
