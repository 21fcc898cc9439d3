"""``hvps fit`` with MOTSModule on generated data, for every TA/SA combination of the ablation grid."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hvps_lightning.cli import main

TINY_MODEL_ARGS = {
    "backbone": "resnet18",
    "trainable_layers": "1",
    "fpn_channels": "32",
    "temporal_attention_channels": "8",
    "rpn_pre_nms_top_n_train": "100",
    "rpn_post_nms_top_n_train": "50",
    "rpn_pre_nms_top_n_test": "100",
    "rpn_post_nms_top_n_test": "50",
    "rpn_batch_size_per_image": "32",
    "box_batch_size_per_image": "32",
    "box_representation_size": "64",
    "box_detections_per_img": "10",
    "mask_head_layers": "1",
    "mask_head_channels": "32",
    "spatial_attention_channels": "16",
    "embedding_channels": "32",
    "embedding_dim": "16",
}


def _fit_args(root: Path, ta: bool, sa: bool) -> list[str]:
    args = ["fit", "--model", "hvps_lightning.models.mots.lightning_model.MOTSModule",
            "--model.init_args.net", "hvps_lightning.models.mots.MOTSNet"]  # fmt: skip
    for name, value in {
        **TINY_MODEL_ARGS,
        "temporal_attention": str(ta),
        "spatial_attention": str(sa),
    }.items():
        args += [f"--model.init_args.net.init_args.{name}", value]
    args += ["--data", "hvps_lightning.data.datamodule.HVPSDataModule", "--data.init_args.root", str(root),
             "--data.init_args.finetune_stage", "mot_step", "--data.init_args.batch_size", "1",
             "--data.init_args.max_frames", "4"]  # fmt: skip
    args += ["--trainer.fast_dev_run", "1", "--trainer.accelerator", "cpu", "--trainer.logger", "false",
             "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false"]  # fmt: skip
    return args


@pytest.mark.parametrize(("ta", "sa"), [(True, True), (True, False), (False, True), (False, False)])
def test_fit_fast_dev_run_each_attention_combination(
    synth_mot_step_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, ta: bool, sa: bool
) -> None:
    monkeypatch.chdir(tmp_path)  # Lightning may write lightning_logs/ into the working directory
    assert main([*_fit_args(synth_mot_step_root, ta, sa), "--debug"]) == 0


def test_fit_with_a_bad_model_argument_exits_2(
    synth_mot_step_root: Path, capsys: pytest.CaptureFixture
) -> None:
    args = _fit_args(synth_mot_step_root, True, True)
    args[args.index("--model.init_args.net.init_args.backbone") + 1] = "resnet9"
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "resnet9" in err[0]


def test_fit_with_a_centred_window(
    synth_mot_step_root: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    args = [*_fit_args(synth_mot_step_root, True, True), "--data.init_args.clip_mode", "centred"]
    assert main([*args, "--debug"]) == 0


def test_predict_from_a_checkpoint_before_nested_networks_is_a_one_line_error(
    synth_mot_step_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    old = tmp_path / "old.ckpt"
    # the network's arguments among the task's, no "net"
    flat = {"_class_path": "hvps_lightning.models.mots.lightning_model.MOTSModule",
            "dataset": "motchallenge_step", "backbone": "resnet18", "temporal_attention": True}  # fmt: skip
    torch.save({"state_dict": {}, "hyper_parameters": flat}, old)
    args = ["predict", *_fit_args(synth_mot_step_root, True, True)[1:], "--ckpt_path", str(old)]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert "before the network was nested" in err and f"--model.init_args.init_from {old}" in err
