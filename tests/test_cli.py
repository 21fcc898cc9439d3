"""`hvps` dispatcher: runs without a logger, and Lightning's configuration errors as one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from hvps_lightning.cli import main

SEMANTIC = [
    "--config", "stages/mot_step/semantic",
    "--config", "demo/semantic",
]  # fmt: skip


def _fit(root: Path, out: Path, *extra: str) -> list[str]:
    return ["fit", *SEMANTIC, "--data.init_args.root", str(root), "--data.init_args.image_size", "[64, 96]",
            "--trainer.default_root_dir", str(out), "--trainer.logger", "false", *extra]  # fmt: skip


def test_a_stage_config_runs_without_a_logger(synth_mot_step_root: Path, tmp_path: Path) -> None:
    # The stage configs carry a LearningRateMonitor, which Lightning refuses without a logger.
    assert main(_fit(synth_mot_step_root, tmp_path, "--trainer.fast_dev_run", "1")) == 0


def test_a_lightning_configuration_error_is_one_line(
    synth_mot_step_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(_fit(synth_mot_step_root, tmp_path, "--trainer.fast_dev_run", "-1")) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1] == (
        "hvps fit: error: Lightning refused the configuration: "
        "fast_dev_run=-1 is not a valid configuration. It should be >= 0."
    )
    assert not any("Traceback" in line for line in err), err
