"""`hvps fit` / `hvps predict` with SemanticModule on a generated dataset root, on CPU."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from hvps_lightning.cli import main
from hvps_lightning.formats.semantic_cache import read_probabilities, read_semantic_map
from hvps_lightning.lightning.cli import run_lightning_cli
from hvps_lightning.models.semantic import SemanticNet
from hvps_lightning.models.semantic.lightning_model import SemanticModule

MODEL = "hvps_lightning.models.semantic.lightning_model.SemanticModule"
NET = "hvps_lightning.models.semantic.SemanticNet"
DATA = "hvps_lightning.data.datamodule.HVPSDataModule"


def _args(command: str, root: Path, out: Path, arch: str, *extra: str, stage: str = "mot_step") -> list[str]:
    dataset = {"mot_step": "motchallenge_step", "kitti_step": "kitti_step"}[stage]
    return [
        command,
        "--model", MODEL,
        "--model.init_args.net", NET,
        "--model.init_args.net.init_args.arch", arch,
        "--model.init_args.net.init_args.encoder_name", "efficientnet-b0",
        "--model.init_args.net.init_args.fpn_channels", "16",
        "--model.init_args.net.init_args.head_channels", "8",
        "--data", DATA,
        "--data.init_args.root", str(root),
        # the stage's own dataset, spelled out: equal to the model's linked `dataset` hparam
        "--data.init_args.finetune_stage", stage,
        "--data.init_args.dataset", dataset,
        "--data.init_args.clip_length", "1",
        "--data.init_args.image_size", "[64, 96]",
        "--data.init_args.max_frames", "4",
        "--trainer.accelerator", "cpu",
        "--trainer.default_root_dir", str(out),
        *extra,
    ]  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["efficientps", "Unet", "FPN", "DeepLabV3Plus"])
def test_fast_dev_run_fit(arch: str, synth_mot_step_root: Path, tmp_path: Path) -> None:
    code = main(_args("fit", synth_mot_step_root, tmp_path, arch, "--trainer.fast_dev_run", "1",
                      "--model.init_args.lovasz_weight", "0.5"))  # fmt: skip
    assert code == 0


@pytest.mark.slow
def test_fast_dev_run_fit_kitti_step(synth_kitti_step_root: Path, tmp_path: Path) -> None:
    args = _args("fit", synth_kitti_step_root, tmp_path, "efficientps", "--trainer.fast_dev_run", "1",
                 stage="kitti_step")  # fmt: skip
    cli = run_lightning_cli(args)
    assert cli.model.spec.name == "kitti_step" and cli.model.net.classifier.out_channels == 19
    assert "val/miou" in cli.trainer.callback_metrics


@pytest.mark.slow
def test_predict_writes_the_semantic_cache(synth_mot_step_root: Path, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    code = main(
        _args("predict", synth_mot_step_root, tmp_path, "efficientps",
              "--model.init_args.predict_probabilities", "true",
              "--trainer.callbacks+=hvps_lightning.lightning.writers.SemanticCacheWriter",
              "--trainer.callbacks.output_dir", str(cache),
              "--trainer.logger", "false")
    )  # fmt: skip
    assert code == 0
    # predict_split defaults to val: MOTChallenge-STEP validates on sequence 0002 (4 frames kept)
    frames = [f"{i:06d}" for i in range(1, 5)]
    expected = sorted([f"{f}.png" for f in frames] + [f"{f}.probs.npz" for f in frames])
    assert sorted(p.name for p in (cache / "0002").iterdir()) == expected
    for frame in frames:
        semantic = read_semantic_map(cache, "0002", frame)
        assert semantic.shape == (96, 160)  # the original size, not the network's 64x96
        assert semantic.max() < 7
        assert read_probabilities(cache, "0002", frame).shape == (7, 96, 160)


def test_unknown_architecture_is_a_one_line_error(
    synth_mot_step_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(_args("fit", synth_mot_step_root, tmp_path, "Unet9", "--trainer.fast_dev_run", "1"))
    assert code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("hvps fit: error: arch: unknown architecture 'Unet9'")


@pytest.mark.slow
def test_fit_init_from_previous_stage_maps_classifier_rows(synth_mot_step_root: Path, tmp_path: Path) -> None:
    torch.manual_seed(0)
    source = SemanticModule(net=SemanticNet(19, fpn_channels=16, head_channels=8), dataset="kitti_step")
    ckpt = tmp_path / "kitti_step.ckpt"
    torch.save({"state_dict": source.state_dict(), "hyper_parameters": dict(source.hparams)}, ckpt)
    args = _args("fit", synth_mot_step_root, tmp_path, "efficientps", "--trainer.fast_dev_run", "1",
                 "--model.init_args.init_from", str(ckpt))  # fmt: skip
    cli = run_lightning_cli(args)
    assert cli.model.spec.name == "motchallenge_step"
    weight = cli.model.net.classifier.weight.detach()
    src = source.net.classifier.weight.detach()
    # one AdamW step at lr 1e-4 moves each weight by about 1e-4
    # sidewalk <- road + sidewalk
    torch.testing.assert_close(weight[0], (src[0] + src[1]) / 2, atol=5e-4, rtol=0)
    torch.testing.assert_close(weight[4], src[11], atol=5e-4, rtol=0)  # person
    stem = cli.model.net.model.encoder._conv_stem.weight.detach()
    torch.testing.assert_close(stem, source.net.model.encoder._conv_stem.weight.detach(), atol=5e-4, rtol=0)
