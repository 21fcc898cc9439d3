"""The callback, the sweep objective and the CLI score one cache through one path: equal numbers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hvps_lightning.cli import main
from hvps_lightning.formats.detection_cache import read_detection_cache_dir
from hvps_lightning.lightning.tracker_callback import OfflineTrackerCallback
from hvps_lightning.sweeps.objective import evaluate_config, load_sweep_data
from hvps_lightning.tracking.config import TrackerConfig

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def test_callback_sweep_and_cli_give_identical_aq_and_stq(sim_cache: dict[str, Path], tmp_path: Path) -> None:
    root, cache, semantic = sim_cache["root"], sim_cache["cache"], sim_cache["semantic"]
    config = TrackerConfig(min_hits=2)
    config.to_yaml(tmp_path / "tracker.yaml")

    # the offline tracker callback, as at the end of a validation epoch (ground truth found
    # beside each frame's image)
    sequences = {name: frames for name, (frames, _) in read_detection_cache_dir(cache).items()}
    notes = {
        (name, f.frame): {"image_path": str(root / "images" / "train" / name / f"{f.frame}.png")}
        for name, frames in sequences.items()
        for f in frames
    }
    callback = OfflineTrackerCallback(tracker_config=config.to_dict(), semantic_dir=str(semantic))
    logged = callback.evaluate(None, None, sequences, notes)

    # the sweep objectives
    aq = evaluate_config(load_sweep_data(cache, root, "aq"), config)["aq"]
    stq = evaluate_config(load_sweep_data(cache, root, "stq", semantic=semantic), config)

    # hvps track --gt, then hvps evaluate step on the STEP PNGs it wrote
    out = tmp_path / "tracked"
    argv = ["track", "--detections", str(cache), "--semantic", str(semantic), "--gt", str(root),
            "--tracker-config", str(tmp_path / "tracker.yaml"), "--out", str(out),
            "--quiet"]  # fmt: skip
    assert main(argv) == 0
    scores = json.loads((out / "summary.json").read_text())["scores"]
    argv = ["evaluate", "step", "--gt", str(root / "panoptic_maps" / "train"), "--pred", str(out / "step"),
            "--dataset", "motchallenge_step", "--output", str(tmp_path / "step.json")]  # fmt: skip
    assert main(argv) == 0
    evaluated = json.loads((tmp_path / "step.json").read_text())

    assert 0 < aq < 1 and 0 < stq["stq"] < 1
    assert logged["val/aq"] == aq == scores["aq"]
    assert logged["val/stq"] == stq["stq"] == scores["stq"]
    assert logged["val/sq"] == stq["sq"] == scores["sq"]
    assert logged["val/aq_fused"] == stq["aq"] == scores["aq_fused"]
    assert evaluated["stq"] == pytest.approx(scores["stq"], abs=1e-12)
    assert evaluated["aq"] == pytest.approx(scores["aq_fused"], abs=1e-12)
    # the MOTS metrics of the callback are those of the sweep's MOTS objectives
    idf1 = evaluate_config(load_sweep_data(cache, root, "idf1"), config)["idf1"]
    assert logged["val/mots/pedestrian/IDF1"] == pytest.approx(idf1, abs=1e-12)
    assert scores["mots/pedestrian/IDF1"] == pytest.approx(idf1, abs=1e-12)
