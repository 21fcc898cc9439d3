"""The package works outside a checkout: the wheel, installed elsewhere, runs the demo from elsewhere."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import sysconfig
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_wheel_installed_outside_the_repository_runs_the_fast_demo(tmp_path: Path) -> None:
    wheels = tmp_path / "wheels"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "--quiet", "-w", str(wheels), str(REPO)],
        check=True,
        cwd=tmp_path,
    )
    (wheel,) = wheels.glob("hvps_lightning-*.whl")

    # A fresh environment: the wheel installed on its own; its dependencies (torch & co.) are
    # borrowed from this environment's site-packages instead of downloaded again. Path entries of
    # a .pth file are not scanned for further .pth files, so this checkout's editable install
    # stays invisible there.
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    Path(purelib, "borrowed_dependencies.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [str(python), "-m", "pip", "install", "--no-deps", "--no-index", "--quiet", str(wheel)], check=True
    )

    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {**os.environ, "WANDB_MODE": "offline", "PYTHONPATH": ""}
    where = subprocess.run(
        [str(python), "-c", "import hvps_lightning; print(hvps_lightning.__file__)"],
        check=True,
        capture_output=True,
        text=True,
        cwd=elsewhere,
        env=env,
    ).stdout.strip()
    assert Path(where).is_relative_to(venv), where

    hvps = venv / "bin" / "hvps"
    listed = subprocess.run(
        [str(hvps), "config", "list"], check=True, capture_output=True, text=True, cwd=elsewhere
    )
    assert "stages/mot_step/mots" in listed.stdout and "tracker/default" in listed.stdout

    out = tmp_path / "demo"
    subprocess.run([str(hvps), "demo", "--fast", "--out", str(out)], check=True, cwd=elsewhere, env=env)
    results = json.loads((out / "results.json").read_text())
    assert 0.0 <= results["stq"] <= 1.0
    assert (out / "commands.sh").read_text().count("--config stages/") >= 2
