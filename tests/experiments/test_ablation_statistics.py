"""`hvps ablate`'s analysis tells a real difference from noise: a planted effect is resolved, a copy is not.

The full pipeline of the ablation minus the training: detection caches of three "seeds" (the
same generated ground truth, detections simulated with three seeds), tracked by the full
tracker (the reference), by a deliberately worse tracker (the planted effect) and by an
identical copy of the full tracker, through the same functions `hvps ablate` calls
(`evaluate_cache`, `tracker_variant_results`, `analyse_runs`, `write_outputs`, `log_to_wandb`).
"""

from __future__ import annotations

import json

import pytest
from wandb_offline import find_offline_runs, read_offline_run

from hvps_lightning.cli.ablate import (
    METRICS,
    REFERENCE,
    _ablation_run,
    _row,
    analyse_runs,
    evaluate_cache,
    log_to_wandb,
    tracker_variant_results,
    variant_label,
    write_outputs,
)
from hvps_lightning.data.synthetic.detections import gt_frames_from_mots, simulate_detections
from hvps_lightning.data.synthetic.generate import generate_dataset
from hvps_lightning.formats import read_mots_txt
from hvps_lightning.formats.detection_cache import write_detection_cache

SEEDS = (0, 1, 2)
BLOCK_FRAMES = 5
#: a tracker without appearance, tight gates and no retrieval: fragments every occlusion
WORSE = {"use_embeddings": False, "min_iou": 0.5, "short_term_enabled": False, "long_term_enabled": False}
PLANTED = variant_label(True, True, "planted: worse tracker")
COPY = variant_label(True, True, "identical copy")


@pytest.fixture(scope="module")
def ablation(tmp_path_factory: pytest.TempPathFactory) -> tuple:
    tmp = tmp_path_factory.mktemp("ablation_stats")
    root = tmp / "motchallenge_step"
    generate_dataset("motchallenge_step", root, sequences=2, frames=30, height=96, width=160, seed=0,
                     progress=False)  # fmt: skip
    names = sorted(p.stem for p in (root / "panoptic_maps" / "train" / "0002").glob("*.png"))
    gt = gt_frames_from_mots(read_mots_txt(root / "instances_txt" / "train" / "0002.txt"), {2: 4}, names)
    caches = {}
    for seed in SEEDS:
        frames = simulate_detections(gt, seed=seed, drop_rate=0.15, embedding_noise=0.6,
                                     false_positives_per_frame=0.5)  # fmt: skip
        write_detection_cache(tmp / f"cache{seed}", "0002", frames, {"dataset": "motchallenge_step"})
        caches[seed] = tmp / f"cache{seed}"
    runs, rows = [], []
    for seed, cache in caches.items():
        result = evaluate_cache(cache, root, None, BLOCK_FRAMES)
        runs.append(_ablation_run(REFERENCE, seed, result))
        rows.append(_row(REFERENCE, True, True, "full tracker", seed, result))
    variants = {"planted: worse tracker": WORSE, "identical copy": {}}
    for label, seed, result in tracker_variant_results(caches, root, variants, tmp, BLOCK_FRAMES):
        runs.append(_ablation_run(variant_label(True, True, label), seed, result))
        rows.append(_row(variant_label(True, True, label), True, True, label, seed, result))
    analysis = analyse_runs(runs, bootstrap=1000)
    out = tmp / "out"
    out.mkdir()
    write_outputs(out, rows, analysis, steps=0, frames=30, seeds=list(SEEDS), block_frames=BLOCK_FRAMES)
    return analysis, out, rows


def test_the_planted_effect_is_resolved(ablation: tuple) -> None:
    analysis, _, _ = ablation
    planted = analysis.comparisons[PLANTED]
    for metric in ("aq", "IDF1", "HOTA", "sMOTSA"):
        comparison = planted[metric]
        assert comparison.resolved and comparison.direction == -1, (metric, comparison)
        assert comparison.seeds.excludes_zero and comparison.blocks is not None
        assert comparison.blocks.excludes_zero and comparison.blocks.n == 6  # 30 frames / 5
        assert comparison.seeds.p_value < 0.05
    assert planted["IDSW"].resolved and planted["IDSW"].direction == 1
    assert planted["stq"].blocks is None  # STQ* has no block statistics: compared by seeds alone


def test_an_identical_variant_is_not_resolved(ablation: tuple) -> None:
    analysis, _, _ = ablation
    for metric, comparison in analysis.comparisons[COPY].items():
        assert not comparison.resolved, metric
        assert comparison.seeds.estimate == 0.0 and comparison.seeds.p_value == 1.0
    assert not [r for r in analysis.resolved() if r[0] == COPY]


def test_outputs_show_intervals_and_the_resolved_differences(ablation: tuple) -> None:
    _, out, rows = ablation
    text = (out / "ablation.md").read_text()
    lines = {line.split(" | ")[0].strip("| "): line for line in text.splitlines() if line.startswith("| TA")}
    assert "[" in lines[REFERENCE]  # mean [interval]
    difference_rows = [line for line in text.splitlines() if line.startswith(f"| {PLANTED}")]
    assert len(difference_rows) == 2 and difference_rows[1].count("✓") == len(METRICS)
    copy_rows = [line for line in text.splitlines() if line.startswith(f"| {COPY}")]
    assert "✓" not in copy_rows[1]
    assert "Resolved: " in text and f"{PLANTED}: AQ lower" in text
    saved = json.loads((out / "ablation.json").read_text())
    assert saved["variants"][PLANTED]["versus_reference"]["aq"]["resolved"] is True
    assert saved["variants"][COPY]["versus_reference"]["aq"]["resolved"] is False
    assert saved["variants"][REFERENCE]["metrics"]["aq"]["n"] == 3
    assert (out / "ablation.png").stat().st_size > 5000
    assert len((out / "ablation.csv").read_text().splitlines()) == len(rows) + 1


def test_the_wandb_summary_run_holds_the_tables(ablation: tuple) -> None:
    analysis, out, rows = ablation
    log_to_wandb(out, rows, analysis, "ablation-test", "offline")
    runs = [read_offline_run(r) for r in find_offline_runs(out / "wandb")]
    assert {r.group for r in runs} == {"ablation-test"} and len(runs) == len(rows) + 1
    (summary,) = [r for r in runs if r.name == "ablation-summary"]
    logged = set().union(*(row.keys() for row in summary.history))
    assert {"ablation/runs", "ablation/intervals", "ablation/comparisons", "ablation/plot"} <= logged
    assert any(PLANTED in entry for entry in summary.summary["resolved"])
