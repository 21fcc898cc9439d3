"""`hvps plan`: the resolved schedule of every shipped training config, and that it is what training does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hvps_lightning.cli import main
from hvps_lightning.io import CONFIGS_DIR
from hvps_lightning.lightning.plan import steps_per_epoch, summarize_lrs, total_steps, world_size

#: every config that trains a stage on its own (stages/ and submission/), the paper overlay that fits it
STAGE_CONFIGS = sorted(
    p.relative_to(CONFIGS_DIR).with_suffix("").as_posix()
    for folder in ("stages", "submission")
    for p in (CONFIGS_DIR / folder).rglob("*.yaml")
)
KEYS = {"steps_per_epoch", "total_steps", "warmup_steps", "steps_at_peak_lr", "lr_drops", "images_seen",
        "pretrained", "image_size", "augmentation", "warnings"}  # fmt: skip


def plan(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[dict, str]:
    assert main(["plan", *args]) == 0
    captured = capsys.readouterr()
    return json.loads(captured.out), captured.err


def overlay(name: str) -> str:
    return "paper/semantic" if name.endswith("semantic") else "paper/mots"


@pytest.fixture
def no_data(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working folder without data/ or outputs/: plans use the official frame counts."""
    monkeypatch.chdir(tmp_path)
    return tmp_path


def test_the_stage_configs_are_all_here() -> None:
    assert STAGE_CONFIGS == [
        "stages/kitti_panoptic/mots", "stages/kitti_panoptic/semantic", "stages/kitti_step/mots",
        "stages/kitti_step/semantic", "stages/mot_step/mots", "stages/mot_step/semantic",
        "stages/mots20/mots", "submission/mots", "submission/mots20", "submission/semantic",
    ]  # fmt: skip


@pytest.mark.parametrize("paper", [False, True], ids=["plain", "paper"])
@pytest.mark.parametrize("name", STAGE_CONFIGS)
def test_every_stage_plans_without_warning(name: str, paper: bool, no_data: Path,
                                           capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    args = ["--config", name] + (["--config", overlay(name)] if paper else [])
    found, err = plan(capsys, *args)
    assert found["warnings"] == [] and "warning" not in err
    assert KEYS <= set(found)
    epochs = 40 if name.endswith("semantic") else 24
    assert found["total_steps"] == found["steps_per_epoch"] * epochs
    assert found["devices"] == (4 if paper else 1)
    assert found["warmup_steps"] <= 0.1 * found["total_steps"]
    assert [d["epoch"] for d in found["lr_drops"]] == pytest.approx(
        [0.75 * epochs, 0.9 * epochs] if name.endswith("semantic") else [16, 22], abs=0.05
    )
    assert found["pretrained"] != "none" or found["init_from"] or found["init_checkpoint"]
    if paper:
        assert found["image_size"] == "native"
        assert found["augmentation"]["crop"] == "to each frame's native size"  # scale jitter stays on


def test_the_issues_example_and_its_fix(no_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """525 frames / 4 GPUs / batch 2 = 66 steps per epoch, 1,584 in all (the issue's arithmetic)."""
    paper = ["--config", "stages/mot_step/mots", "--config", "paper/mots"]
    found, _ = plan(capsys, *paper)
    assert (found["frames"], found["steps_per_epoch"], found["total_steps"]) == (525, 66, 1584)
    assert found["images_seen"] == 1584 * 8 * 2  # 2 clips per item
    assert found["warmup_steps"] == 79 and [d["step"] for d in found["lr_drops"]] == [1057, 1453]
    # the former schedule: a 1,000-step warm-up and MultiStepLR at epochs 16 and 22
    legacy = ["--model.init_args.schedule", "null", "--model.init_args.warmup_steps", "1000",
              "--model.init_args.lr_scheduler",
              '{"class_path": "torch.optim.lr_scheduler.MultiStepLR", "init_args": {"milestones": [16, 22]}}']
    found, err = plan(capsys, *paper, *legacy)
    # the issue counts 1,028 steps below half the peak; step 499 of the warm-up sits exactly at half
    assert found["steps_at_peak_lr"] == 57 and found["total_steps"] - found["steps_at_half_peak_lr"] == 1027
    assert len(found["warnings"]) == 2 and err.count("hvps plan: warning:") == 2
    assert "the warm-up takes 999 of 1584 steps" in err and "only 557 of 1584 steps" in err
    # the same schedule keeps its shape on 1 GPU and on 16
    for devices, per_epoch in (("1", 263), ("16", 17)):
        found, _ = plan(capsys, *paper, "--trainer.devices", devices)
        assert found["steps_per_epoch"] == per_epoch and found["warnings"] == []
        assert found["steps_at_peak_lr"] / found["total_steps"] == pytest.approx(0.617, abs=0.01)


def test_counts_the_root_when_present(synth_mot_step_root: Path, no_data: Path,
                                      capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    found, _ = plan(capsys, "--config", "stages/mot_step/semantic", "--data.init_args.root",
                    str(synth_mot_step_root), "--output", "plan.json")  # fmt: skip
    (source,) = found["train_data"]
    assert source["frames"] == 10 and source["counted"] == f"counted in {synth_mot_step_root}"
    assert found["steps_per_epoch"] == 3  # 10 frames, batch 4
    assert json.loads((no_data / "plan.json").read_text()) == found


def test_random_start_weights_are_a_warning(no_data: Path, capsys: pytest.CaptureFixture[str]) -> None:
    found, _err = plan(capsys, "--config", "stages/mot_step/mots", "--model.init_args.init_from", "null")
    assert found["warnings"] == ["the network starts from random weights (pretrained: none, no "
                                 "init_checkpoint, no init_from)"]  # fmt: skip


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "hvps plan: error: --config: give the training config(s)"),
        (["--config", "stages/mot_step/mots", "--data.init_args.sequences", '{"train": ["0005"]}'],
         "data/motchallenge_step: not found, and the official frame count of motchallenge_step 0005 is "
         "not recorded; give --data.init_args.root"),
        (["--config", "stages/mot_step/mots", "--model.init_args.schedule.milestones", "[0.9, 0.5]"],
         "schedule.milestones [0.9, 0.5]: fractions of the run, increasing"),
    ],
)
def test_errors_are_one_line(args: list[str], message: str, no_data: Path,
                             capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    assert main(["plan", *args]) == 2
    err = capsys.readouterr().err
    assert message in err and len(err.strip().splitlines()) == 1


def test_lightnings_arithmetic() -> None:
    assert world_size({"devices": 4, "num_nodes": 2}) == 8
    assert world_size({"devices": "0,1,2", "accelerator": "gpu"}) == 3
    assert world_size({"devices": "auto", "accelerator": "cpu"}) == 1
    assert steps_per_epoch(525, 4, 2, {}) == 66
    assert steps_per_epoch(525, 1, 2, {"accumulate_grad_batches": 4}) == 66  # 263 batches
    assert steps_per_epoch(525, 1, 2, {"limit_train_batches": 0.5}) == 131
    assert total_steps(66, {"max_epochs": 24}) == 1584
    assert total_steps(66, {"max_epochs": 24, "max_steps": 1000}) == 1000
    assert total_steps(66, {"max_epochs": None, "max_steps": 500}) == 500
    assert total_steps(66, {"max_epochs": -1, "max_steps": -1}) == float("inf")
    assert total_steps(66, {"max_epochs": None}) == 66000


@pytest.mark.slow
def test_the_plan_is_what_training_does(synth_mot_step_root: Path, tmp_path: Path,
                                        capsys: pytest.CaptureFixture[str]) -> None:  # fmt: skip
    """A real `hvps fit` steps the LR exactly as the plan of the same arguments says."""
    record = tmp_path / "lrs.json"
    args = ["--config", "stages/mot_step/semantic", "--config", "demo/semantic",
            "--data.init_args.root", str(synth_mot_step_root), "--data.init_args.batch_size", "3",
            "--data.init_args.image_size", "[48, 80]",
            "--model.init_args.lr_scheduler", "null",
            "--model.init_args.schedule", '{"decay": "multistep", "warmup": 0.2, "milestones": [0.5, 0.8]}',
            "--trainer.max_steps", "-1", "--trainer.max_epochs", "3"]  # fmt: skip
    found, _ = plan(capsys, *args)
    assert (found["steps_per_epoch"], found["total_steps"]) == (4, 12)  # 10 frames, batch 3, 3 epochs
    fit = ["fit", *args, "--trainer.default_root_dir", str(tmp_path), "--trainer.logger", "false",
           "--trainer.callbacks+", json.dumps({"class_path": "lr_recorder.LRRecorder",
                                               "init_args": {"path": str(record)}})]  # fmt: skip
    assert main(fit) == 0
    trained = json.loads(record.read_text())
    assert trained["estimated"] == found["total_steps"] and trained["batches"] == found["steps_per_epoch"]
    summary = summarize_lrs(trained["lrs"], found["steps_per_epoch"])
    for key, value in summary.items():
        assert found[key] == value, key
