"""Differential test against TrackEval itself (the official MOTSChallenge evaluation).

TrackEval is a dev dependency (``make install`` installs it): this test runs where it is
installed and is skipped elsewhere. It writes random sequences (ignore regions, exact-0.5 ties,
a sequence without ground truth, frames without predictions) in the MOTS20 layout, runs
TrackEval's MOTSChallenge evaluation with its result files, and compares every number, and
``hvps evaluate mots --output-dir`` against TrackEval's ``<class>_summary.txt`` and
``<class>_detailed.csv`` column by column.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from trackeval_files import compare_result_files

from hvps_lightning.cli import main
from hvps_lightning.evaluation.mots_folders import evaluate_mots_folders
from hvps_lightning.formats.mots_txt import MOTSObject, write_mots_txt
from hvps_lightning.structures.masks import encode_mask

trackeval = pytest.importorskip("trackeval")

H, W = 24, 30


def box(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    mask = np.zeros((H, W), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def random_sequence(rng: np.random.Generator, frames: int, with_gt: bool = True):
    """Objects in a 3 x 5 grid of 6 x 6 cells (boxes 6 x 4); rows 18-24 are an ignore region."""
    gt, pred = [], []
    for frame in range(1, frames + 1):
        if rng.random() < 0.5:
            gt.append(MOTSObject(frame, 10000, 10, encode_mask(box(18, 0, 24, 30))))
        if rng.random() < 0.5:  # a prediction in the free column x 28-30, 1-5 rows inside the region
            outside, inside = int(rng.integers(0, 5)), int(rng.integers(1, 6))
            pred.append(
                MOTSObject(frame, 2300 + frame % 3, 2, encode_mask(box(18 - outside, 28, 18 + inside, 30)))
            )
        for cell in rng.permutation(15)[: rng.integers(0, 9)]:
            y, x, cell = 6 * (cell // 5), 6 * (cell % 5), int(cell)
            if with_gt and rng.random() < 0.8:
                gt.append(MOTSObject(frame, 2000 + cell, 2, encode_mask(box(y, x, y + 6, x + 4))))
            kind = rng.random()
            if kind < 0.5:  # IoU 1, 5/6, 4/6 or 1/2; sometimes another id (a switch)
                shrink = int(rng.integers(0, 4))
                pred_id = 2100 + cell + 20 * int(rng.random() < 0.2)
                pred.append(MOTSObject(frame, pred_id, 2, encode_mask(box(y, x, y + 6 - shrink, x + 4))))
            elif kind < 0.65:  # an exact tie: the two halves of the cell's object
                pred.append(MOTSObject(frame, 2200 + cell, 2, encode_mask(box(y, x, y + 6, x + 2))))
                pred.append(MOTSObject(frame, 2230 + cell, 2, encode_mask(box(y, x + 2, y + 6, x + 4))))
            elif kind < 0.7:  # a car: not evaluated
                pred.append(MOTSObject(frame, 1100 + cell, 1, encode_mask(box(y, x, y + 6, x + 4))))
    return gt, pred


def run_trackeval(tmp_path: Path, gt: dict, pred: dict, lengths: dict) -> dict:
    gt_root, trackers = tmp_path / "gt", tmp_path / "trackers"
    for sequence, objects in gt.items():
        write_mots_txt(gt_root / sequence / "gt" / "gt.txt", objects)
        (gt_root / sequence / "seqinfo.ini").write_text(
            f"[Sequence]\nname={sequence}\nimDir=img1\nseqLength={lengths[sequence]}\nimWidth={W}\n"
            f"imHeight={H}\nimExt=.jpg\n"
        )
        write_mots_txt(tmp_path / "gt_flat" / f"{sequence}.txt", objects)
        write_mots_txt(trackers / "ours" / "data" / f"{sequence}.txt", pred[sequence])
    dataset = trackeval.datasets.MOTSChallenge(
        {
            "GT_FOLDER": str(gt_root),
            "TRACKERS_FOLDER": str(trackers),
            "OUTPUT_FOLDER": str(tmp_path / "trackeval_out"),
            "SKIP_SPLIT_FOL": True,
            "SEQ_INFO": lengths,
            "TRACKERS_TO_EVAL": ["ours"],
            "PRINT_CONFIG": False,
        }
    )
    evaluator = trackeval.Evaluator(
        {
            "USE_PARALLEL": False,
            "PRINT_RESULTS": False,
            "PRINT_CONFIG": False,
            "OUTPUT_SUMMARY": True,
            "OUTPUT_DETAILED": True,
            "PLOT_CURVES": False,
            "TIME_PROGRESS": False,
            "OUTPUT_EMPTY_CLASSES": True,
        }
    )
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR(), trackeval.metrics.Identity()]
    results, _ = evaluator.evaluate([dataset], metrics)
    return results["MOTSChallenge"]["ours"]


def as_ours(res: dict) -> dict:
    clear, identity, hota = res["CLEAR"], res["Identity"], res["HOTA"]
    return {
        "sMOTSA": clear["sMOTA"],
        "MOTSA": clear["MOTA"],
        "MOTSP": clear["MOTP"],
        "IDF1": identity["IDF1"],
        "TP": clear["CLR_TP"],
        "FP": clear["CLR_FP"],
        "FN": clear["CLR_FN"],
        "IDSW": clear["IDSW"],
        "HOTA": float(np.mean(hota["HOTA"])),
        "DetA": float(np.mean(hota["DetA"])),
        "AssA": float(np.mean(hota["AssA"])),
    }


@pytest.mark.parametrize("seed", range(4))
def test_matches_trackeval(tmp_path: Path, seed: int) -> None:
    rng = np.random.default_rng(seed)
    gt, pred, lengths = {}, {}, {}
    for number in range(3):
        sequence = f"MOTS20-{number:02d}"
        lengths[sequence] = int(rng.integers(5, 15))
        gt[sequence], pred[sequence] = random_sequence(rng, lengths[sequence], with_gt=number != 2)
    expected = run_trackeval(tmp_path, gt, pred, lengths)
    # evaluate the files TrackEval read: the order of objects in a frame breaks HOTA's ties
    ours = evaluate_mots_folders(tmp_path / "gt_flat", tmp_path / "trackers" / "ours" / "data")
    for sequence in gt:
        want = as_ours(expected[sequence]["pedestrian"])
        for key, value in want.items():
            assert ours["per_sequence"][sequence][key] == pytest.approx(value, abs=1e-9), (sequence, key)
    want = as_ours(expected["COMBINED_SEQ"]["pedestrian"])
    for key, value in want.items():
        assert ours["combined"][key] == pytest.approx(value, abs=1e-9), ("combined", key)


@pytest.mark.parametrize("seed", range(2))
def test_output_dir_matches_trackeval_result_files(
    tmp_path: Path, seed: int, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(100 + seed)
    gt, pred, lengths = {}, {}, {}
    for number in range(3):
        sequence = f"MOTS20-{number:02d}"
        lengths[sequence] = int(rng.integers(5, 15))
        gt[sequence], pred[sequence] = random_sequence(rng, lengths[sequence], with_gt=number != 2)
    # a trailing frame without any object: counted by seqLength (CLR_Frames), not by the files
    lengths["MOTS20-01"] += 2
    run_trackeval(tmp_path, gt, pred, lengths)
    out = tmp_path / "ours"
    code = main(["evaluate", "mots", "--gt", str(tmp_path / "gt"), "--pred",
                 str(tmp_path / "trackers" / "ours"), "--output", str(out / "results.json"),
                 "--output-dir", str(out), "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    assert "mots20 layout" in capsys.readouterr().out
    compare_result_files(out, tmp_path / "trackeval_out" / "ours", "pedestrian")
