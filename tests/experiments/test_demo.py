"""`hvps demo --fast`, end to end: every step runs and writes what the README promises."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hvps_lightning.cli import main
from hvps_lightning.cli.pipeline import fresh_output_dir
from hvps_lightning.formats import read_mots_txt, read_step_png


@pytest.mark.slow
def test_fast_demo_writes_results(tmp_path: Path) -> None:
    out, data = tmp_path / "demo", tmp_path / "data"
    args = ["demo", "--fast", "--out", str(out), "--data-root", str(data), "--wandb", "offline"]
    assert main(args) == 0

    results = json.loads((out / "results.json").read_text())
    for key in ("stq", "aq", "sq"):
        assert 0.0 <= results[key] <= 1.0
    assert {"sMOTSA", "MOTSA", "MOTSP", "IDF1", "HOTA", "IDSW"} <= set(results["mots"])
    assert results["timings"]["total"] > 0
    # the STQ the demo reports is the one `hvps evaluate step` wrote
    assert results["stq"] == json.loads((out / "eval_step.json").read_text())["stq"]

    pngs = sorted((out / "tracked" / "step" / "0002").glob("*.png"))
    assert len(pngs) == len(sorted((data / "motchallenge_step" / "images" / "train" / "0002").glob("*.png")))
    semantic, _ = read_step_png(pngs[0])
    assert semantic.shape == (192, 320)
    # the fast budget (a few dozen steps from random weights) is a smoke run: its detector may
    # find nobody, so the file must exist and parse, not hold people (the full demo measures that)
    tracked = read_mots_txt(out / "tracked" / "mots" / "0002.txt")
    assert all(obj.class_id == 2 and obj.rle["size"] == [192, 320] for obj in tracked)
    assert (out / "viz" / "0002.gif").stat().st_size > 0
    # the demo's models as one bundle, run by `hvps infer` on the frames: the same output
    assert (out / "model.hvps").is_file() and results["infer"]["same_stq_as_track"] is True
    assert [p.name for p in sorted((out / "infer" / "step" / "0002").glob("*.png"))] == [p.name for p in pngs]
    infer_mots = (out / "infer" / "mots" / "0002.txt").read_text()
    assert infer_mots == (out / "tracked" / "mots" / "0002.txt").read_text()
    commands = (out / "commands.sh").read_text().splitlines()
    assert sum(line.startswith("hvps fit") for line in commands) == 6  # 3 stages x 2 models
    assert list((out / "wandb").rglob("offline-run-*"))

    # a rerun would keep this run and write next to it
    assert fresh_output_dir(out) == tmp_path / "demo-2"
