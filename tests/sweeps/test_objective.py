"""One trial on a real (generated) detection cache: loading the ground truth, AQ/STQ objectives."""

from __future__ import annotations

import numpy as np
import pytest

from hvps_lightning.errors import HVPSError
from hvps_lightning.evaluation.ground_truth import locate_ground_truth
from hvps_lightning.sweeps.objective import evaluate_config, load_sweep_data
from hvps_lightning.tracking.config import TrackerConfig


def test_gt_layouts(sim_cache):
    root = sim_cache["root"]
    data = load_sweep_data(sim_cache["cache"], root, "aq")
    assert data.sequence_names == ["0002", "0009"] and data.num_frames == 20
    assert data.spec.name == "motchallenge_step"  # from the cache metadata
    # a dataset root (the one folder holding the sequences), a split name, or the folder itself
    folder = root / "panoptic_maps" / "train"
    spec = data.spec
    assert locate_ground_truth(root, "panoptic", ["0002"], spec) == folder
    assert locate_ground_truth(root, "panoptic", ["0002"], spec, "val") == folder  # val lives in train/
    assert locate_ground_truth(folder, "panoptic", ["0002", "0009"], spec) == folder
    assert locate_ground_truth(root, "mots", ["0002"], spec) == root / "instances_txt" / "train"
    with pytest.raises(HVPSError, match=r"--gt .*0003"):
        locate_ground_truth(folder, "panoptic", ["0003"], spec)
    with pytest.raises(HVPSError, match="--split nope"):
        locate_ground_truth(root, "panoptic", ["0002"], spec, "nope")


def test_run_length_ground_truth_gives_the_same_maps_and_numbers(sim_cache):
    kwargs = {"semantic": sim_cache["semantic"]}
    dense = load_sweep_data(sim_cache["cache"], sim_cache["root"], "stq", **kwargs)
    runs = load_sweep_data(sim_cache["cache"], sim_cache["root"], "stq", preload_mb=0, **kwargs)
    assert dense.dense and not runs.dense
    for name, frames in dense.detections.items():
        for frame in frames:
            a, b = dense.ground_truth.frame(name, frame.frame), runs.ground_truth.frame(name, frame.frame)
            assert np.array_equal(a.stacked(), b.stacked())
            assert b.semantic.dtype == np.int32 and b.shape == (96, 160)
            semantic = runs.semantic.semantic(name, frame.frame)
            assert np.array_equal(dense.semantic.semantic(name, frame.frame), semantic)
            assert semantic.dtype == np.uint8
    config = TrackerConfig()
    assert evaluate_config(dense, config)["stq"] == evaluate_config(runs, config)["stq"]


def test_aq_rewards_tracking_and_stq_needs_semantics(sim_cache):
    data = load_sweep_data(sim_cache["cache"], sim_cache["root"], "aq")
    good = evaluate_config(data, TrackerConfig(min_hits=1))
    assert 0.3 < good["aq"] <= 1.0 and good["num_tracks"] > 0
    # gates that refuse every association: a new track (or nothing) in every frame
    strict = TrackerConfig(
        min_hits=1,
        max_embedding_distance=0.05,
        min_iou=0.7,
        short_term_enabled=False,
        long_term_enabled=False,
    )
    broken = evaluate_config(data, strict)
    assert broken["aq"] < good["aq"]
    assert broken["num_tracks"] > good["num_tracks"]
    with pytest.raises(HVPSError, match="--semantic"):
        load_sweep_data(sim_cache["cache"], sim_cache["root"], "stq")
    stq_data = load_sweep_data(sim_cache["cache"], sim_cache["root"], "stq", semantic=sim_cache["semantic"])
    stq = evaluate_config(stq_data, TrackerConfig(min_hits=1))
    # the semantic cache holds the GT semantics, so STQ's AQ equals the AQ objective's
    assert stq["aq"] == pytest.approx(good["aq"]) and 0 < stq["stq"] <= 1


def test_missing_inputs_are_user_errors(sim_cache, tmp_path):
    with pytest.raises(HVPSError, match="--detections"):
        load_sweep_data(tmp_path, sim_cache["root"], "aq")
    with pytest.raises(HVPSError, match="--gt"):
        load_sweep_data(sim_cache["cache"], tmp_path, "aq")
    with pytest.raises(HVPSError, match="--semantic: missing"):
        load_sweep_data(sim_cache["cache"], sim_cache["root"], "stq", semantic=tmp_path)


def test_mots_objectives_score_the_written_mots_txt(sim_cache, tmp_path):
    from hvps_lightning.cli import main
    from hvps_lightning.evaluation.mots_folders import evaluate_mots_folders

    data = load_sweep_data(sim_cache["cache"], sim_cache["root"], "idf1")
    first = data.detections["0002"]
    assert data.ground_truth.mots_objects("0002", [f.frame for f in first])
    assert data.ground_truth.frame("0002", first[0].frame) is None
    config = TrackerConfig(min_hits=1)
    metrics = evaluate_config(data, config)
    assert 0 < metrics["idf1"] <= 1 and metrics["smotsa"] <= 1
    # the same numbers as `hvps track` + the MOTS evaluation of its files
    config.to_yaml(tmp_path / "config.yaml")
    code = main(["track", "--detections", str(sim_cache["cache"]), "--out", str(tmp_path / "tracked"),
                 "--tracker-config", str(tmp_path / "config.yaml"), "--quiet"])  # fmt: skip
    assert code == 0
    gt_dir = sim_cache["root"] / "instances_txt" / "train"
    combined = evaluate_mots_folders(gt_dir, tmp_path / "tracked" / "mots")["combined"]
    assert metrics["idf1"] == pytest.approx(combined["IDF1"])
    assert metrics["smotsa"] == pytest.approx(combined["sMOTSA"])
    smotsa = load_sweep_data(sim_cache["cache"], sim_cache["root"], "smotsa")
    assert smotsa.ground_truth.mots_objects("0002", [f.frame for f in first])
