"""`hvps evaluate mots` on the real KITTI-MOTS and MOTS20 files, in their official layouts, against TrackEval.

The files (KITTI-MOTS val ground truth with its seqmap, TrackR-CNN's and a SAM-based tracker's
results, MOTS20-05 ground truth + seqinfo.ini and TrackR-CNN's result) are read where they lie,
``../shared/real_data`` (or ``$HVPS_REAL_DATA``), never copied; every test skips where they are
absent. TrackEval (a dev dependency) runs on the same files; every column of its result files
must match ours.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from trackeval_files import compare_result_files

from hvps_lightning.cli import main

pytestmark = pytest.mark.real_data

REAL_DATA = Path(os.environ.get("HVPS_REAL_DATA", Path(__file__).resolve().parents[3] / "shared/real_data"))


@pytest.fixture(scope="module")
def real_data() -> Path:
    if not (REAL_DATA / "README.md").is_file():
        pytest.skip(f"real dataset files not found at {REAL_DATA} (set HVPS_REAL_DATA to their folder)")
    return REAL_DATA


def run_trackeval(dataset: str, config: dict, out: Path) -> None:
    trackeval = pytest.importorskip("trackeval")
    config = {**config, "OUTPUT_FOLDER": str(out), "PRINT_CONFIG": False}
    data = getattr(trackeval.datasets, dataset)(config)
    evaluator = trackeval.Evaluator({"USE_PARALLEL": False, "PRINT_RESULTS": False, "PRINT_CONFIG": False,
                                     "OUTPUT_SUMMARY": True, "OUTPUT_DETAILED": True, "PLOT_CURVES": False,
                                     "TIME_PROGRESS": False, "OUTPUT_EMPTY_CLASSES": True})  # fmt: skip
    metrics = [trackeval.metrics.HOTA(), trackeval.metrics.CLEAR({"PRINT_CONFIG": False}),
               trackeval.metrics.Identity({"PRINT_CONFIG": False})]  # fmt: skip
    evaluator.evaluate([data], metrics)


def evaluate(args: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["evaluate", "mots", *args, "--quiet"])
    captured = capsys.readouterr()
    return code, captured.out, captured.err


@pytest.mark.parametrize("tracker", ["track_rcnn", "sam"])
def test_kitti_mots_val_both_classes_match_trackeval(
    real_data: Path, tracker: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root = real_data / "kitti_mots"
    # TrackEval's KittiMOTS GT folder: label_02/<seq>.txt + evaluate_mots.seqmap.val (frames from 0)
    code, out, err = evaluate(["--gt", str(root / "gt"), "--pred", str(root / "trackers" / tracker),
                               "--classes", "car", "pedestrian", "--output", str(tmp_path / "r.json"),
                               "--output-dir", str(tmp_path / "ours")], capsys)  # fmt: skip
    assert code == 0, err
    assert "car:" in out and "pedestrian:" in out and "kitti_mots layout" in out
    config = {"GT_FOLDER": str(root / "gt"), "TRACKERS_FOLDER": str(root / "trackers"),
              "TRACKERS_TO_EVAL": [tracker], "SPLIT_TO_EVAL": "val"}  # fmt: skip
    run_trackeval("KittiMOTS", config, tmp_path / "te")
    for class_name in ("car", "pedestrian"):
        compare_result_files(tmp_path / "ours", tmp_path / "te" / tracker, class_name)


def test_kitti_mots_matches_the_published_trackeval_outputs(
    real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The repository's own TrackEval summaries (HOTA and Count) of TrackR-CNN equal ours, digit for digit."""
    root = real_data / "kitti_mots"
    code, _, err = evaluate(["--gt", str(root / "gt"), "--pred", str(root / "trackers" / "track_rcnn"),
                             "--classes", "car", "pedestrian", "--output", str(tmp_path / "r.json"),
                             "--output-dir", str(tmp_path)], capsys)  # fmt: skip
    assert code == 0, err
    for class_name in ("car", "pedestrian"):
        published = root / "trackeval_outputs_from_source" / "track_rcnn" / f"{class_name}_summary.txt"
        lines = published.read_text()
        theirs = dict(zip(*(line.split() for line in lines.splitlines()), strict=True))
        ours_lines = (tmp_path / f"{class_name}_summary.txt").read_text().splitlines()
        ours = dict(zip(ours_lines[0].split(), ours_lines[1].split(), strict=True))
        assert {k: ours[k] for k in theirs} == theirs


def test_mots20_layout_with_seqinfo_matches_trackeval(
    real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    gt = real_data / "mots20" / "gt"  # MOTS20-05/{gt/gt.txt, seqinfo.ini}, frames 1-15
    trackers = real_data / "mots20" / "trackers"
    code, out, err = evaluate(["--gt", str(gt), "--pred", str(trackers / "track_rcnn"),
                               "--output", str(tmp_path / "r.json"), "--output-dir", str(tmp_path / "ours")],
                              capsys)  # fmt: skip
    assert code == 0, err
    assert "mots20 layout" in out
    run_trackeval("MOTSChallenge", {"GT_FOLDER": str(gt), "TRACKERS_FOLDER": str(trackers),
                                    "TRACKERS_TO_EVAL": ["track_rcnn"], "SKIP_SPLIT_FOL": True,
                                    "SEQ_INFO": {"MOTS20-05": 15}}, tmp_path / "te")  # fmt: skip
    compare_result_files(tmp_path / "ours", tmp_path / "te" / "track_rcnn", "pedestrian")


def test_a_seqmap_naming_an_absent_sequence_is_one_line(
    real_data: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    seqmap = tmp_path / "evaluate_mots.seqmap.val"
    seqmap.write_text("0002 empty 000000 000233\n0099 empty 000000 000010\n")
    root = real_data / "kitti_mots"
    args = ["--gt", str(root / "gt"), "--pred", str(root / "trackers" / "track_rcnn"),
            "--seqmap", str(seqmap), "--output", str(tmp_path / "r.json")]  # fmt: skip
    code, _, err = evaluate(args, capsys)
    assert code == 2
    assert err.count("\n") == 1 and "'0099'" in err and str(seqmap) in err
    assert not (tmp_path / "r.json").exists()
