"""The checkpoint policy (RunCheckpoint) and the LightningCLI's hygiene.

Smoke runs never poison ``--ckpt_path last``; ``last`` picks the newest run of the same config
and says so; the final weights are saved whatever the epoch boundary and ``init_from`` names
their step; a resumed run logs into the same (offline) W&B run; no LightningCLI ``args``
warning; short class names; no command-line optimiser that would drop the warm-up.
"""

from __future__ import annotations

import logging
import sys
import warnings
from pathlib import Path

import pytest
import torch
import yaml
from wandb_offline import find_offline_runs

from hvps_lightning.cli import main
from hvps_lightning.cli.config import expand_config_args
from hvps_lightning.lightning.checkpoint import RUN_FILE, read_run_record
from hvps_lightning.lightning.cli import HVPSLightningCLI, run_lightning_cli

SEMANTIC = ["--config", "stages/mot_step/semantic", "--config", "demo/semantic"]
#: 10 frames of 0009 at batch size 2: 5 steps per epoch
TINY = ["--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
        "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "2",
        "--data.init_args.image_size", "[64, 96]", "--trainer.check_val_every_n_epoch", "100",
        "--model.init_args.lr_scheduler.init_args.total_steps", "50"]  # fmt: skip


def fit_args(root: Path, out: Path, *extra: str, logger: bool = False) -> list[str]:
    wandb = (["--trainer.logger.init_args.save_dir", str(out / "wandb"), "--trainer.logger.init_args.mode",
              "offline"] if logger else ["--trainer.logger", "false"])  # fmt: skip
    return ["fit", *SEMANTIC, "--data.init_args.root", str(root), "--trainer.default_root_dir", str(out),
            *wandb, *TINY, *extra]  # fmt: skip


def lightning_cli(args: list[str]) -> HVPSLightningCLI:
    """The LightningCLI of ``hvps <args>`` (config names resolved as ``hvps`` does)."""
    return run_lightning_cli([args[0], *expand_config_args(args[1:])])


def step_of(path: Path) -> int:
    return int(torch.load(path, map_location="cpu", weights_only=True)["global_step"])


@pytest.mark.slow
def test_fast_dev_run_writes_no_checkpoint(synth_mot_step_root: Path, tmp_path: Path) -> None:
    assert main(fit_args(synth_mot_step_root, tmp_path, "--trainer.fast_dev_run", "1")) == 0
    assert not list(tmp_path.rglob("*.ckpt"))


@pytest.mark.slow
def test_last_skips_smoke_runs_and_the_final_weights_are_saved(
    synth_mot_step_root: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # a real run that stops mid-epoch (step 3 of 5) and whose periodic checkpoint is at step 2
    override = tmp_path / "every2.yaml"
    override.write_text(yaml.safe_dump({"trainer": {"callbacks": [{
        "class_path": "hvps_lightning.lightning.checkpoint.RunCheckpoint",
        "init_args": {"save_last": True, "every_n_train_steps": 2, "save_top_k": 0}}]}}))  # fmt: skip
    every2 = ["--config", str(override)]
    assert main(fit_args(synth_mot_step_root, tmp_path, "--trainer.max_steps", "3", *every2)) == 0
    (real,) = (tmp_path / "checkpoints").iterdir()
    assert step_of(real / "last.ckpt") == 3  # the final weights, not step 2
    record = read_run_record(real)
    assert record is not None and record["identity"]["smoke"] == {}
    # then a smoke run with limited batches, newer
    assert main(fit_args(synth_mot_step_root, tmp_path, "--trainer.max_steps", "1", *every2,
                         "--trainer.limit_train_batches", "1")) == 0  # fmt: skip
    smoke = next(p for p in (tmp_path / "checkpoints").iterdir() if p != real)
    assert read_run_record(smoke)["identity"]["smoke"] == {"limit_train_batches": 1}
    assert read_run_record(smoke)["fingerprint"] != record["fingerprint"]
    # resuming the real config with --ckpt_path last picks the real run, and says which file
    with caplog.at_level(logging.INFO):
        cli = lightning_cli(fit_args(synth_mot_step_root, tmp_path, "--trainer.max_steps", "4", *every2,
                                         "--ckpt_path", "last"))  # fmt: skip
    assert Path(cli.trainer.ckpt_path).parent == real
    assert cli.trainer.global_step == 4
    assert f"resuming from {real / 'last.ckpt'} (global step 3" in caplog.text
    assert "skipped 1 last checkpoint(s)" in caplog.text
    resumed = sorted(p for p in (tmp_path / "checkpoints").iterdir() if p not in (real, smoke))[-1]
    assert read_run_record(resumed)["resumed_from"] == str(real / "last.ckpt")


@pytest.mark.slow
def test_init_from_names_the_step_it_loads(synth_mot_step_root: Path, tmp_path: Path) -> None:
    assert main(fit_args(synth_mot_step_root, tmp_path / "a", "--trainer.max_steps", "2",
                         "--trainer.log_every_n_steps", "1")) == 0  # fmt: skip
    (ckpt,) = (tmp_path / "a" / "checkpoints").glob("*/last.ckpt")
    # the training curves beside the checkpoints (TrainingCurves of the base configs)
    curves = (ckpt.parent / "curves.csv").read_text().splitlines()
    assert curves[0].startswith("step,epoch,") and "train/loss" in curves[0] and len(curves) == 3
    assert (ckpt.parent / "curves.png").stat().st_size > 5000
    cli = lightning_cli(fit_args(synth_mot_step_root, tmp_path / "b", "--trainer.max_steps", "1",
                                     "--model.init_args.init_from", str(ckpt)))  # fmt: skip
    _, source = cli.model.previous_stage_state(ckpt)
    epoch = torch.load(ckpt, map_location="cpu", weights_only=True)["epoch"]
    assert source.description == f"init_from {ckpt} (global step 2, epoch {epoch})"


@pytest.mark.slow
def test_a_resumed_run_logs_into_the_same_wandb_run(synth_mot_step_root: Path, tmp_path: Path) -> None:
    assert main(fit_args(synth_mot_step_root, tmp_path, "--trainer.max_steps", "2", logger=True)) == 0
    (first,) = find_offline_runs(tmp_path / "wandb")
    (run_dir,) = (tmp_path / "checkpoints").iterdir()
    wandb_id = read_run_record(run_dir)["wandb"]["id"]
    assert first.name.endswith(wandb_id) and read_run_record(run_dir)["wandb"]["mode"] == "offline"
    assert main(fit_args(synth_mot_step_root, tmp_path, "--trainer.max_steps", "3", "--ckpt_path", "last",
                         logger=True)) == 0  # fmt: skip
    runs = find_offline_runs(tmp_path / "wandb")
    assert len(runs) == 2 and all(r.name.endswith(wandb_id) for r in runs)  # one W&B run, resumed


def test_no_args_warning_and_short_class_names(
    synth_mot_step_root: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    args = ["fit", "--model", "SemanticModule", "--model.net", "SemanticNet", "--data", "HVPSDataModule",
            "--data.root", str(synth_mot_step_root), "--print_config"]  # fmt: skip
    monkeypatch.setattr(sys, "argv", ["hvps", *args])  # as when typed: sys.argv holds them too
    with warnings.catch_warnings(record=True) as caught, pytest.raises(SystemExit) as exc:
        warnings.simplefilter("always")
        main(args)
    assert exc.value.code == 0
    assert not [w for w in caught if "args" in str(w.message) and "sys.argv" in str(w.message)]
    out = capsys.readouterr().out
    assert "class_path: hvps_lightning.models.semantic.lightning_model.SemanticModule" in out
    assert "class_path: hvps_lightning.models.semantic.SemanticNet" in out


def test_a_command_line_optimizer_cannot_replace_the_warmup(
    synth_mot_step_root: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["fit", *SEMANTIC, "--data.init_args.root", str(synth_mot_step_root), "--optimizer", "SGD",
                 "--print_config"]) == 2  # fmt: skip
    assert capsys.readouterr().err.strip() == "hvps fit: error: unrecognized arguments: --optimizer SGD"
    # the task's optimiser is the one to change, and the warm-up stays
    with pytest.raises(SystemExit):
        main(["fit", "--config", "stages/mot_step/semantic", "--data.init_args.root",
              str(synth_mot_step_root), "--model.init_args.optimizer", "SGD",
              "--model.init_args.optimizer.lr", "0.1", "--print_config"])  # fmt: skip
    out = capsys.readouterr().out
    assert "class_path: torch.optim.SGD" in out and "warmup: 0.05" in out  # the schedule's warm-up fraction


def test_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--version"]) == 0
    assert capsys.readouterr().out.startswith("hvps-lightning ")


def test_run_record_name() -> None:
    assert RUN_FILE == "run.json"
