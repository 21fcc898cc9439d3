"""Shared test configuration: deterministic, single-threaded, offline."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

# tests/helpers: code only the tests use (e.g. the offline W&B run reader)
sys.path.insert(0, str(Path(__file__).parent / "helpers"))

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")
os.environ.setdefault("OMP_NUM_THREADS", "1")

import lightning.pytorch  # noqa: F401  (see below)
import torch
from hypothesis import settings

# Lightning gives its logger a StreamHandler bound to sys.stderr when first imported. Imported
# inside a test, that is the test's capture stream, which pytest closes afterwards; every later
# log line then prints "--- Logging error ---" with a traceback into another test's stderr.
# Imported here, the handler binds the session's stream.

torch.set_num_threads(1)

# Property tests draw the same examples on every run (a red CI is reproducible); set
# HYPOTHESIS_PROFILE=explore to draw new random examples each run (loop it when changing the
# tracker, the metrics or the formats).
settings.register_profile("ci", derandomize=True, print_blob=True)
settings.register_profile("explore", derandomize=False, print_blob=True)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))


# ---------------------------------------------------------------------------------------------
# Generated datasets (hvps synth), written once per test session at tiny sizes; treat them as
# read-only (copy one with shutil.copytree before breaking files in it).
SYNTH_FIXTURE_SIZE = {"height": 96, "width": 160, "seed": 0, "progress": False}


def _generate(tmp_path_factory: pytest.TempPathFactory, preset: str, sequences: int, frames: int) -> Path:
    from hvps_lightning.data.synthetic.generate import generate_dataset

    root = tmp_path_factory.mktemp(f"synth_{preset}") / preset
    generate_dataset(preset, root, sequences=sequences, frames=frames, **SYNTH_FIXTURE_SIZE)
    return root


@pytest.fixture(scope="session")
def synth_mot_step_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated MOTChallenge-STEP root: train/0009 (train) and train/0002 (val), 10 frames each,
    96x160, frames 000001..000010, with instances_txt/train/<seq>.txt."""
    return _generate(tmp_path_factory, "motchallenge_step", sequences=2, frames=10)


@pytest.fixture(scope="session")
def synth_kitti_step_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated KITTI-STEP root: train/0000 and val/0002, 10 frames each (000000..000009), 96x160."""
    return _generate(tmp_path_factory, "kitti_step", sequences=2, frames=10)


@pytest.fixture(scope="session")
def synth_kitti_panoptic_root(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A generated KITTI panoptic root: training/ (6 images of scene 0000) and validation/ (6 of scene
    0001), each with images/, annotations/ (COCO panoptic PNGs) and annotations.json; 96x160."""
    return _generate(tmp_path_factory, "kitti_panoptic", sequences=2, frames=6)


@pytest.fixture(scope="session")
def sim_cache(synth_mot_step_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A detection cache of noisy GT-derived detections over the generated MOTChallenge-STEP root.

    Returns ``{"root": dataset root, "cache": detection cache, "semantic": semantic cache}``; the
    semantic cache holds the GT semantic maps (a perfect semantic model).
    """
    from hvps_lightning.data.synthetic.detections import gt_frames_from_mots, simulate_detections
    from hvps_lightning.formats import read_mots_txt, read_step_png
    from hvps_lightning.formats.detection_cache import write_detection_cache
    from hvps_lightning.formats.semantic_cache import write_semantic_map

    out = tmp_path_factory.mktemp("sweep_cache")
    cache, semantic = out / "cache", out / "semantic"
    maps = synth_mot_step_root / "panoptic_maps" / "train"
    for index, txt in enumerate(sorted((synth_mot_step_root / "instances_txt" / "train").glob("*.txt"))):
        sequence = txt.stem
        frame_names = sorted(p.stem for p in (maps / sequence).glob("*.png"))
        gt = gt_frames_from_mots(read_mots_txt(txt), {2: 4}, frame_names)
        frames = simulate_detections(
            gt, seed=index, drop_rate=0.15, embedding_noise=0.6, false_positives_per_frame=0.5
        )
        write_detection_cache(cache, sequence, frames, {"dataset": "motchallenge_step"})
        for frame in frame_names:
            gt_semantic, _ = read_step_png(maps / sequence / f"{frame}.png")
            write_semantic_map(semantic, sequence, frame, gt_semantic.astype("uint8"))
    return {"root": synth_mot_step_root, "cache": cache, "semantic": semantic}
