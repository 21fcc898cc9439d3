"""Every shipped config gets a fast_dev_run on generated data (the smoke tests of hvps_lightning/configs/).

Stage configs run with the demo override (CPU sizes, random start weights: nothing downloads);
the MOTS20 stage on a MOTS20 layout made of the generated MOTChallenge-STEP root; the submission
configs train on both generated training sequences; the paper overrides run on top of the
MOTChallenge-STEP stage with sizes, devices, precision and internet-only weights overridden;
each ablation override runs with the demo settings; the predict overrides run `hvps predict`
from a checkpoint of a tiny fit and must write their caches; the EfficientPS start names its file.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml
from mots_layouts import make_mots20
from wandb_offline import find_offline_runs, read_offline_run

from hvps_lightning.cli import main
from hvps_lightning.cli.pipeline import STAGE_PRESETS
from hvps_lightning.formats.detection_cache import list_cached_sequences
from hvps_lightning.io import CONFIGS_DIR, last_checkpoint

EXPERIMENTS = CONFIGS_DIR
LIGHTNING_YAMLS = sorted(
    p.relative_to(EXPERIMENTS).as_posix()
    for p in EXPERIMENTS.rglob("*.yaml")
    if p.parts[len(EXPERIMENTS.parts)] not in ("tracker", "sweeps")
)

#: sizes that keep a fast_dev_run of any config a few seconds on a CPU
TINY = ["--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.precision", "32-true",
        "--data.init_args.num_workers", "0", "--data.init_args.batch_size", "1",
        "--data.init_args.max_frames", "4"]  # fmt: skip
PAPER_OFFLINE = {
    "mots": ["--model.init_args.pretrained", "none", "--model.init_args.init_from", "null",
             "--trainer.strategy", "auto",
             "--trainer.sync_batchnorm", "false", "--data.init_args.image_size", "[96, 160]"],
    "semantic": ["--model.init_args.pretrained", "none", "--model.init_args.init_from", "null",
                 "--model.init_args.net.init_args.encoder_name", "efficientnet-b0",
                 "--trainer.strategy", "auto", "--trainer.sync_batchnorm", "false",
                 "--data.init_args.image_size", "[96, 160]"],
}  # fmt: skip


@pytest.fixture(scope="module")
def roots(synth_mot_step_root: Path, synth_kitti_step_root: Path, synth_kitti_panoptic_root: Path) -> dict:
    return {"mot_step": synth_mot_step_root, "kitti_step": synth_kitti_step_root,
            "kitti_panoptic": synth_kitti_panoptic_root}  # fmt: skip


def fit(configs: list[Path], root: Path, out: Path, *extra: str) -> int:
    args = ["fit"]
    for config in configs:
        args += ["--config", str(config)]
    args += ["--data.init_args.root", str(root), "--trainer.default_root_dir", str(out),
             "--trainer.logger.init_args.save_dir", str(out / "wandb"), *TINY, *extra]  # fmt: skip
    return main(args)


def test_every_yaml_is_covered() -> None:
    covered = {f"stages/{s}/{m}.yaml" for s in STAGE_PRESETS for m in ("mots", "semantic")}
    for folder in ("demo", "paper", "predict"):
        covered |= {f"{folder}/{m}.yaml" for m in ("mots", "semantic")}
    covered |= {f"ablations/ta_sa/ta_{t}_sa_{s}.yaml" for t in ("on", "off") for s in ("on", "off")}
    covered |= {"base/mots.yaml", "base/semantic.yaml"}  # every stage config builds on them
    covered |= {"stages/mots20/mots.yaml", "submission/mots.yaml", "submission/semantic.yaml",
                "submission/mots20.yaml", "weights/efficientps_kitti.yaml"}  # fmt: skip
    assert set(LIGHTNING_YAMLS) == covered


@pytest.mark.parametrize("name", LIGHTNING_YAMLS)
def test_yaml_has_no_unknown_keys(name: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """jsonargparse rejects unknown keys: a typo in a config is an error, not silently ignored."""
    text = yaml.safe_load((EXPERIMENTS / name).read_text())
    assert isinstance(text, dict) and text
    broken = tmp_path / "broken.yaml"
    text.setdefault("trainer", {})["max_epochz"] = 3
    broken.write_text(yaml.safe_dump(text))
    model = "semantic" if "semantic" in name or "efficientps" in name else "mots"
    base = EXPERIMENTS / "stages" / "mot_step" / f"{model}.yaml"
    assert main(["fit", "--config", str(base), "--config", str(broken), "--print_config"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == f"hvps fit: error: --config {broken}: trainer.max_epochz: unknown key"


@pytest.mark.slow
@pytest.mark.parametrize("stage", list(STAGE_PRESETS))
@pytest.mark.parametrize("model", ["mots", "semantic"])
def test_stage_config_with_demo_override(stage: str, model: str, roots: dict, tmp_path: Path) -> None:
    configs = [EXPERIMENTS / "stages" / stage / f"{model}.yaml", EXPERIMENTS / "demo" / f"{model}.yaml"]
    assert fit(configs, roots[stage], tmp_path, "--trainer.fast_dev_run", "1") == 0


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mots", "semantic"])
def test_paper_config_with_sizes_overridden(model: str, roots: dict, tmp_path: Path) -> None:
    configs = [EXPERIMENTS / "stages" / "mot_step" / f"{model}.yaml", EXPERIMENTS / "paper" / f"{model}.yaml"]
    extra = [*PAPER_OFFLINE[model], "--trainer.fast_dev_run", "1"]
    assert fit(configs, roots["mot_step"], tmp_path, *extra) == 0


@pytest.mark.slow
@pytest.mark.parametrize("variant", ["ta_on_sa_on", "ta_on_sa_off", "ta_off_sa_on", "ta_off_sa_off"])
def test_ablation_override(variant: str, roots: dict, tmp_path: Path) -> None:
    configs = [EXPERIMENTS / "stages" / "mot_step" / "mots.yaml", EXPERIMENTS / "demo" / "mots.yaml",
               EXPERIMENTS / "ablations" / "ta_sa" / f"{variant}.yaml"]  # fmt: skip
    assert fit(configs, roots["mot_step"], tmp_path, "--trainer.fast_dev_run", "1") == 0


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mots", "semantic"])
def test_predict_override_writes_its_cache(model: str, roots: dict, tmp_path: Path) -> None:
    stage = [EXPERIMENTS / "stages" / "mot_step" / f"{model}.yaml", EXPERIMENTS / "demo" / f"{model}.yaml"]
    assert fit(stage, roots["mot_step"], tmp_path / "fit", "--trainer.max_steps", "1") == 0
    ckpt = last_checkpoint(tmp_path / "fit")
    cache = tmp_path / "cache"
    args = ["predict"]
    for config in [*stage, EXPERIMENTS / "predict" / f"{model}.yaml"]:
        args += ["--config", str(config)]
    args += ["--data.init_args.root", str(roots["mot_step"]), "--trainer.default_root_dir", str(tmp_path),
             "--trainer.callbacks.init_args.output_dir", str(cache), "--ckpt_path", str(ckpt),
             "--trainer.logger.init_args.save_dir", str(tmp_path / "wandb"), *TINY]  # fmt: skip
    assert main(args) == 0
    if model == "mots":
        assert list_cached_sequences(cache) == ["0002"]
    else:
        assert len(list((cache / "0002").glob("*.png"))) == 4
    # lineage: the predict run logged the cache as a dataset artifact naming the checkpoint and its run
    (run,) = [read_offline_run(r) for r in find_offline_runs(tmp_path / "wandb")]
    assert run.job_type == "predict"
    (artifact,) = [a for a in run.artifacts if a["type"] == "dataset"]
    kind = "detections" if model == "mots" else "semantic"
    assert artifact["name"] == f"{kind}-motchallenge_step" and artifact["metadata"]["sequences"] == ["0002"]
    assert artifact["metadata"]["checkpoint"] == str(ckpt) and artifact["metadata"]["checkpoint_step"] == 1
    trained_by = read_offline_run(find_offline_runs(tmp_path / "fit" / "wandb")[0]).run_id
    assert artifact["metadata"]["trained_by_wandb_run"]["id"] == trained_by


@pytest.mark.slow
def test_mots20_stage_with_demo_override(synth_mot_step_root: Path, tmp_path: Path) -> None:
    """Trains on MOTS20 (here MOTS20-09) and validates on MOTS20-02 with the offline tracker."""
    root = make_mots20(synth_mot_step_root, tmp_path / "mots20")
    configs = [EXPERIMENTS / "stages" / "mots20" / "mots.yaml", EXPERIMENTS / "demo" / "mots.yaml"]
    sequences = '{"train": ["MOTS20-09"], "val": ["MOTS20-02"]}'
    # whole sequences: max_frames cuts the images but not the MOTS ground truth of a MOTS20 root
    assert fit(configs, root, tmp_path / "run", "--trainer.fast_dev_run", "1", "--data.init_args.max_frames",
               "null", "--data.init_args.sequences", sequences) == 0  # fmt: skip


def test_mots20_stage_refuses_the_validation_footage_in_training(
    synth_mot_step_root: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = make_mots20(synth_mot_step_root, tmp_path / "mots20")
    configs = [EXPERIMENTS / "stages" / "mots20" / "mots.yaml", EXPERIMENTS / "demo" / "mots.yaml"]
    sequences = '{"train": ["MOTS20-09", "MOTS20-02"], "val": ["MOTS20-02"]}'
    assert fit(configs, root, tmp_path / "run", "--trainer.fast_dev_run", "1", "--data.init_args.max_frames",
               "null", "--data.init_args.sequences", sequences) == 2  # fmt: skip
    assert "training sequence MOTS20-02 (mots, " in capsys.readouterr().err


@pytest.mark.slow
@pytest.mark.parametrize("model", ["mots", "semantic"])
def test_submission_config_trains_on_both_sequences(model: str, roots: dict, tmp_path: Path) -> None:
    configs = [EXPERIMENTS / "submission" / f"{model}.yaml", EXPERIMENTS / "demo" / f"{model}.yaml"]
    assert fit(configs, roots["mot_step"], tmp_path, "--trainer.max_steps", "1") == 0
    assert last_checkpoint(tmp_path).is_file()  # no validation, no monitor: the last checkpoint


def test_efficientps_start_names_its_file(
    roots: dict, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configs = [
        EXPERIMENTS / "stages" / "kitti_step" / "semantic.yaml",
        EXPERIMENTS / "demo" / "semantic.yaml",
        EXPERIMENTS / "weights" / "efficientps_kitti.yaml",
    ]
    assert fit(configs, roots["kitti_step"], tmp_path, "--trainer.fast_dev_run", "1") == 2
    err = capsys.readouterr().err.strip().splitlines()[-1]
    assert err == "hvps fit: error: init_checkpoint data/weights/efficientps_kitti.pth: file not found"
