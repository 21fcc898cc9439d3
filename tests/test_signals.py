"""Killed and interrupted commands: one line, exit 130/143, nothing half-written in --out."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hvps_lightning.data.synthetic.detections import moving_objects_gt, simulate_detections
from hvps_lightning.formats.detection_cache import write_detection_cache


@pytest.fixture(scope="module")
def long_cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A detection cache that takes `hvps track` several seconds: 8 sequences of 400 frames."""
    root = tmp_path_factory.mktemp("signals") / "cache"
    for index in range(8):
        gt = moving_objects_gt(400, 6, 48, 64, seed=index)
        frames = simulate_detections(gt, seed=index, drop_rate=0.1, embedding_dim=16)
        write_detection_cache(root, f"{index:04d}", frames, {"dataset": "motchallenge_step"})
    return root


def _start_track(cache: Path, out: Path) -> subprocess.Popen[str]:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    args = ["track", "--detections", str(cache), "--out", str(out), "--quiet"]
    return subprocess.Popen(
        [sys.executable, "-m", "hvps_lightning.cli", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def _wait_until_tracking(process: subprocess.Popen[str], out: Path) -> None:
    # the partial folder appears once the cache is read and tracking has begun
    deadline = time.monotonic() + 120
    while not any(p.name.startswith(f".{out.name}.partial-") for p in out.parent.iterdir()):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "hvps track did not start"
        time.sleep(0.05)
    time.sleep(0.3)


@pytest.mark.slow
@pytest.mark.parametrize(
    ("sig", "code", "word"), [(signal.SIGTERM, 143, "terminated"), (signal.SIGINT, 130, "interrupted")]
)
def test_a_stopped_track_leaves_no_output(
    long_cache: Path, tmp_path: Path, sig: int, code: int, word: str
) -> None:
    out = tmp_path / "out"
    process = _start_track(long_cache, out)
    _wait_until_tracking(process, out)
    process.send_signal(sig)
    _, err = process.communicate(timeout=60)
    lines = [line for line in err.splitlines() if line.strip()]
    assert process.returncode == code, err
    assert lines == [f"hvps track: {word}; nothing half-written was kept"], err
    assert "Traceback" not in err
    assert not out.exists()
    assert [p.name for p in tmp_path.iterdir()] == []  # the partial folder is gone too


@pytest.mark.slow
def test_a_killed_track_leaves_no_output_and_the_next_run_cleans_up(long_cache: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    process = _start_track(long_cache, out)
    _wait_until_tracking(process, out)
    process.send_signal(signal.SIGKILL)
    process.communicate(timeout=60)
    assert not out.exists()
    leftovers = [p.name for p in tmp_path.iterdir()]
    assert len(leftovers) == 1 and leftovers[0].startswith(".out.partial-")
    from hvps_lightning.cli import main

    assert main(["track", "--detections", str(long_cache), "--out", str(out), "--sequences", "0000",
                 "--quiet"]) == 0  # fmt: skip
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
