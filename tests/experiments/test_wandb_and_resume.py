"""W&B offline runs get the CLI config, hparams and metrics; a killed fit resumes with --ckpt_path last."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml
from wandb_offline import find_offline_runs, read_offline_run

from hvps_lightning.cli import main
from hvps_lightning.cli.config import expand_config_args
from hvps_lightning.lightning.cli import run_lightning_cli

SEMANTIC = ["--config", "stages/mot_step/semantic", "--config", "demo/semantic"]
MOTS = ["--config", "stages/mot_step/mots", "--config", "demo/mots"]
CPU = ["--trainer.accelerator", "cpu", "--trainer.enable_progress_bar", "false",
       "--data.init_args.num_workers", "0"]  # fmt: skip


def common(root: Path, out: Path) -> list[str]:
    return ["--data.init_args.root", str(root), "--trainer.default_root_dir", str(out),
            "--trainer.logger.init_args.save_dir", str(out / "wandb"),
            "--trainer.logger.init_args.mode", "offline", *CPU]  # fmt: skip


@pytest.mark.slow
def test_mots_fit_sends_config_hparams_losses_and_tracking_metrics_to_wandb(
    synth_mot_step_root: Path, tmp_path: Path
) -> None:
    args = ["fit", *MOTS, *common(synth_mot_step_root, tmp_path), "--trainer.max_steps", "2",
            "--trainer.check_val_every_n_epoch", "1", "--trainer.limit_train_batches", "2",
            "--data.init_args.max_frames", "4", "--trainer.log_every_n_steps", "1"]  # fmt: skip
    assert main(args) == 0
    (run_dir,) = find_offline_runs(tmp_path / "wandb")
    run = read_offline_run(run_dir)
    # the resolved CLI config (HVPSSaveConfigCallback) and the model's hparams (Lightning)
    assert "model" in run.config, sorted(run.config)
    assert run.config["model"]["class_path"] == "hvps_lightning.models.mots.lightning_model.MOTSModule"
    assert run.config["trainer"]["max_steps"] == 2
    assert run.config["dataset"] == "motchallenge_step"
    assert run.config["net"]["init_args"]["backbone"] == "resnet18"  # the network, as its configuration
    assert (Path(run_dir) / "files" / "config.yaml").is_file()
    logged = set().union(*(row.keys() for row in run.history))
    for key in ("train/loss", "train/loss_mask", "train/loss_embedding_triplet",
                "train/loss_spatial_attention", "val/segm_map", "val/aq", "val/mots/pedestrian/sMOTSA",
                "val/mots/pedestrian/IDF1"):  # fmt: skip
        assert key in logged, key
    assert {"val/tracks/0002", "val/tracks_video/0002"} <= logged, sorted(logged)  # overlay images + GIF
    images = next(row["val/tracks/0002"] for row in run.history if "val/tracks/0002" in row)
    assert images["_type"] == "images/separated" and images["count"] == 3


@pytest.mark.slow
def test_semantic_fit_logs_miou_per_class(synth_mot_step_root: Path, tmp_path: Path) -> None:
    args = ["fit", *SEMANTIC, *common(synth_mot_step_root, tmp_path), "--trainer.max_steps", "2",
            "--trainer.check_val_every_n_epoch", "1", "--trainer.limit_train_batches", "2",
            "--trainer.limit_val_batches", "2", "--trainer.log_every_n_steps", "1"]  # fmt: skip
    assert main(args) == 0
    run = read_offline_run(find_offline_runs(tmp_path / "wandb")[0])
    logged = set().union(*(row.keys() for row in run.history))
    assert {"train/loss_step", "train/loss_epoch", "val/miou", "val/iou/sky"} <= logged, sorted(logged)
    assert run.config["model"]["init_args"]["net"]["init_args"]["arch"] == "efficientps"


@pytest.mark.slow
def test_killed_fit_resumes_with_ckpt_path_last(synth_mot_step_root: Path, tmp_path: Path) -> None:
    # checkpoint every 2 steps so that a kill mid-epoch leaves a last.ckpt behind
    override = tmp_path / "often.yaml"
    override.write_text(yaml.safe_dump({"trainer": {"callbacks": [{
        "class_path": "hvps_lightning.lightning.checkpoint.RunCheckpoint",
        "init_args": {"save_last": True, "every_n_train_steps": 2, "save_top_k": 0}}]}}))  # fmt: skip
    args = ["fit", *SEMANTIC, "--config", str(override), *common(synth_mot_step_root, tmp_path),
            "--data.init_args.batch_size", "1", "--model.init_args.lr_scheduler.init_args.total_steps", "400",
            "--trainer.max_steps", "400"]  # fmt: skip
    # a run of its own, as from a shell: not attached to this test process's W&B service (inherited
    # through WANDB_SERVICE), which would keep the killed run's id "in use" for the resume below
    env = {k: v for k, v in os.environ.items() if k != "WANDB_SERVICE"}
    env.update(WANDB_MODE="offline", PYTHONUNBUFFERED="1")
    process = subprocess.Popen([sys.executable, "-m", "hvps_lightning.cli", *args], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)  # fmt: skip
    checkpoints = tmp_path / "checkpoints"
    deadline = time.time() + 300
    step = 0
    try:
        while time.time() < deadline and step < 4:
            time.sleep(0.2)
            assert process.poll() is None, "the run ended before it could be killed"
            for ckpt in checkpoints.glob("*/last.ckpt"):
                try:
                    step = torch.load(ckpt, map_location="cpu", weights_only=True)["global_step"]
                except Exception:  # being written
                    continue
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait()
    assert step >= 4, "no checkpoint appeared in time"
    (first_run,) = checkpoints.iterdir()
    killed = torch.load(first_run / "last.ckpt", map_location="cpu", weights_only=True)
    in_epoch = killed["loops"]["fit_loop"]["epoch_loop.batch_progress"]["current"]["completed"]
    assert 0 < in_epoch < 10  # killed mid-epoch: 10 frames of 0009 at batch size 1 per epoch
    resumed_target = killed["global_step"] + 4  # even: the last checkpoint (every 2 steps) lands on it
    resume = [*args[1:-1], str(resumed_target), "--ckpt_path", "last"]
    cli = run_lightning_cli(["fit", *expand_config_args(resume)])
    assert cli.trainer.ckpt_path is not None and Path(cli.trainer.ckpt_path).parent == first_run
    assert cli.trainer.global_step == resumed_target  # continued, not restarted from 0
    # the resumed run wrote into a new folder; the killed run's files are untouched
    runs = sorted(checkpoints.iterdir())
    assert len(runs) == 2 and (first_run / "last.ckpt").is_file()
    resumed = torch.load(runs[1] / "last.ckpt", map_location="cpu", weights_only=True)
    assert resumed["global_step"] == resumed_target
    assert resumed["hyper_parameters"] == killed["hyper_parameters"]  # hparams survive the resume
    offline = [read_offline_run(r) for r in find_offline_runs(tmp_path / "wandb")]
    assert offline[-1].config["net"]["init_args"]["arch"] == "efficientps"  # and reach the resumed W&B run
