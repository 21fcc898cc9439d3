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


def test_config_errors_are_one_line_naming_the_file_or_option(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    typo = tmp_path / "typo.yaml"
    typo.write_text("trainer:\n  max_epochz: 3\n")
    broken = tmp_path / "broken.yaml"
    broken.write_text("trainer:\n  max_epochs: [3\n")
    cases = [
        (["--config", str(typo)], f"--config {typo}: trainer.max_epochz: unknown key"),
        (["--config", str(broken)], f"{broken}: not valid YAML (line 3:"),
        (["--data.init_args.batch_size", "x"], "--data.init_args.batch_size: Expected a int. Got value: x"),
        (["--config", "stages/nope"], "--config stages/nope: no such file, and no shipped config"),
    ]
    for extra, message in cases:
        code = main(["fit", *SEMANTIC, *extra, "--print_config"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2
        lines = [line for line in err if "LightningCLI's args parameter" not in line]
        assert len(lines) == 1 and lines[0].startswith("hvps fit: error: ") and message in lines[0], err


def test_other_commands_argument_errors_are_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["track", "--nope", "1"]) == 2
    assert capsys.readouterr().err.strip() == "hvps track: error: unrecognized arguments: --nope 1"


def test_os_errors_name_the_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from hvps_lightning.cli.main import find_user_error

    error = find_user_error(PermissionError(13, "Permission denied", str(tmp_path / "out")))
    assert str(error) == f"{tmp_path / 'out'}: Permission denied"
    assert find_user_error(RuntimeError("a bug")) is None  # not a user error: a traceback
