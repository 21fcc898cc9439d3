"""``hvps evaluate step`` / ``mots``: happy paths and every error path (exit 2, file named)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch

from hvps_lightning.cli import main
from hvps_lightning.formats.mots_txt import MOTSObject, write_mots_txt
from hvps_lightning.formats.step_png import write_step_png
from hvps_lightning.metrics import STQ
from hvps_lightning.structures.masks import encode_mask

PERSON = 4  # motchallenge_step


def test_step_happy_path_with_a_preset(step_cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    pairs = step_cli.write_step_folders(tmp_path)
    code, output = step_cli.evaluate_step(tmp_path)
    assert code == 0
    assert "STQ" in capsys.readouterr().out
    result = json.loads(output.read_text())
    assert set(result) == {"stq", "aq", "sq", "iou_per_class", "per_sequence", "num_frames"}
    assert result["num_frames"] == 6 and set(result["per_sequence"]) == {"0002", "0009"}
    assert list(result["iou_per_class"]) == [
        "sidewalk", "building", "vegetation", "sky", "person", "rider", "bicycle",
    ]  # fmt: skip
    assert result["iou_per_class"]["rider"] is None  # NaN -> null
    metric = STQ(7, [PERSON], 255)
    for sequence, frames in pairs.items():
        for target, preds in frames:
            metric.update(torch.from_numpy(preds)[None], torch.from_numpy(target)[None], [sequence])
    expected = metric.compute()
    for key in ("stq", "aq", "sq"):
        assert result[key] == pytest.approx(expected[key], abs=1e-12)
        assert 0.0 < result[key] < 1.0
    for sequence in pairs:
        assert result["per_sequence"][sequence]["aq"] == pytest.approx(
            expected["per_sequence"][sequence]["aq"]
        )


def test_step_explicit_classes_equal_the_preset(step_cli, tmp_path: Path) -> None:
    step_cli.write_step_folders(tmp_path)
    _, preset = step_cli.evaluate_step(tmp_path)
    code, explicit = step_cli.evaluate_step(
        tmp_path, "--num-classes", "7", "--things", "4", "--ignore-label", "255"
    )
    assert code == 0
    a, b = json.loads(preset.read_text()), json.loads(explicit.read_text())
    assert (a["stq"], a["aq"], a["sq"]) == (b["stq"], b["aq"], b["sq"])
    assert list(b["iou_per_class"]) == [str(i) for i in range(7)]
    code, _ = step_cli.evaluate_step(tmp_path, "--num-classes", "7", "--things", "4", "5")
    assert code == 0


def test_step_missing_prediction_frame(step_cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    step_cli.write_step_folders(tmp_path)
    missing = tmp_path / "pred" / "0009" / "000001.png"
    missing.unlink()
    code, output = step_cli.evaluate_step(tmp_path)
    step_cli.assert_user_error(capsys, code, str(missing), "missing prediction")
    assert not output.exists()


def test_step_size_mismatch(step_cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    step_cli.write_step_folders(tmp_path)
    small = tmp_path / "pred" / "0002" / "000002.png"
    write_step_png(small, np.zeros((6, 20), np.int32), np.zeros((6, 20), np.int32))
    code, _ = step_cli.evaluate_step(tmp_path)
    step_cli.assert_user_error(capsys, code, str(small), "6x20", "12x20")


def test_step_unreadable_png(step_cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    step_cli.write_step_folders(tmp_path)
    broken = tmp_path / "gt" / "0009" / "000000.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n not really")
    code, _ = step_cli.evaluate_step(tmp_path)
    step_cli.assert_user_error(capsys, code, str(broken))


def test_step_labels_outside_the_classes(
    step_cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    step_cli.write_step_folders(tmp_path)
    bad = tmp_path / "pred" / "0002" / "000000.png"
    write_step_png(bad, np.full((12, 20), 9, np.int32), np.zeros((12, 20), np.int32))
    code, _ = step_cli.evaluate_step(tmp_path)
    step_cli.assert_user_error(capsys, code, str(bad), "semantic ids", "[9]")


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        (("--dataset", "motchallenge_step", "--num-classes", "7"), "--dataset cannot"),
        (("--num-classes", "7"), "--things"),
        (("--num-classes", "7", "--things", "7"), "--things"),
        (("--num-classes", "7", "--things", "4", "4"), "--things: [4, 4] lists a class more than once"),
    ],
)
def test_step_bad_class_arguments(
    step_cli, tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...], fragment: str
) -> None:
    step_cli.write_step_folders(tmp_path)
    code, _ = step_cli.evaluate_step(tmp_path, *extra)
    step_cli.assert_user_error(capsys, code, fragment)


def test_step_missing_or_empty_folders(step_cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _ = step_cli.evaluate_step(tmp_path)
    step_cli.assert_user_error(capsys, code, str(tmp_path / "gt"))
    (tmp_path / "gt" / "0002").mkdir(parents=True)
    (tmp_path / "pred").mkdir()
    code, _ = step_cli.evaluate_step(tmp_path)
    step_cli.assert_user_error(capsys, code, str(tmp_path / "gt"), "no <seq>/<frame>.png")


def box(y0: int, x0: int, y1: int, x1: int) -> np.ndarray:
    mask = np.zeros((10, 12), np.uint8)
    mask[y0:y1, x0:x1] = 1
    return mask


def write_mots_folders(root: Path) -> None:
    a, b = box(0, 0, 4, 4), box(5, 5, 9, 9)
    write_mots_txt(root / "gt" / "MOTS20-02.txt", [MOTSObject(t, 2001, 2, encode_mask(a)) for t in (1, 2, 3)])
    write_mots_txt(
        root / "pred" / "MOTS20-02.txt",
        [
            MOTSObject(1, 2007, 2, encode_mask(a)),
            MOTSObject(2, 2007, 2, encode_mask(a)),
            MOTSObject(3, 2008, 2, encode_mask(a)),
            MOTSObject(3, 2009, 2, encode_mask(b)),
        ],
    )
    write_mots_txt(root / "gt" / "MOTS20-05.txt", [])  # a valid empty sequence
    write_mots_txt(root / "pred" / "MOTS20-05.txt", [MOTSObject(1, 2001, 2, encode_mask(b))])
    write_mots_txt(root / "pred" / "MOTS20-99.txt", [])  # not in the ground truth: ignored


def evaluate_mots_cli(tmp_path: Path, *extra: str) -> tuple[int, Path]:
    output = tmp_path / "mots.json"
    args = ["evaluate", "mots", "--gt", str(tmp_path / "gt"), "--pred", str(tmp_path / "pred")]
    return main([*args, "--output", str(output), *extra]), output


def test_mots_happy_path(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_mots_folders(tmp_path)
    code, output = evaluate_mots_cli(tmp_path)
    assert code == 0 and "sMOTSA" in capsys.readouterr().out
    result = json.loads(output.read_text())
    assert set(result["per_sequence"]) == {"MOTS20-02", "MOTS20-05"}
    seq = result["per_sequence"]["MOTS20-02"]
    # 3 TPs (IoU 1), one switch in frame 3, one FP in frame 3
    assert (seq["TP"], seq["FP"], seq["FN"], seq["IDSW"]) == (3, 1, 0, 1)
    assert seq["MOTSA"] == pytest.approx((3 - 1 - 1) / 3) and seq["sMOTSA"] == pytest.approx((3 - 1 - 1) / 3)
    empty = result["per_sequence"]["MOTS20-05"]
    assert (empty["FP"], empty["MOTSA"], empty["sMOTSA"], empty["MOTSP"]) == (1, 0.0, 0.0, 0.0)
    combined = result["combined"]
    assert (combined["TP"], combined["FP"], combined["IDSW"]) == (3, 2, 1)
    assert combined["MOTSA"] == pytest.approx((3 - 2 - 1) / 3)
    code, _ = evaluate_mots_cli(tmp_path, "--classes", "1")
    assert code == 0


def test_mots_missing_prediction_file(step_cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_mots_folders(tmp_path)
    missing = tmp_path / "pred" / "MOTS20-05.txt"
    missing.unlink()
    code, output = evaluate_mots_cli(tmp_path)
    step_cli.assert_user_error(capsys, code, str(missing))
    assert not output.exists()


def test_mots_overlapping_predictions(step_cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_mots_folders(tmp_path)
    overlapping = tmp_path / "pred" / "MOTS20-02.txt"
    a = box(0, 0, 4, 4)
    write_mots_txt(
        overlapping, [MOTSObject(2, 2007, 2, encode_mask(a)), MOTSObject(2, 2008, 2, encode_mask(a))]
    )
    code, _ = evaluate_mots_cli(tmp_path)
    step_cli.assert_user_error(capsys, code, str(overlapping), "frame 2", "overlap")


def test_mots_malformed_file_and_missing_folder(
    step_cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _ = evaluate_mots_cli(tmp_path)
    step_cli.assert_user_error(capsys, code, str(tmp_path / "gt"))
    write_mots_folders(tmp_path)
    malformed = tmp_path / "pred" / "MOTS20-02.txt"
    malformed.write_text("1 2001 2 10\n")
    code, _ = evaluate_mots_cli(tmp_path)
    step_cli.assert_user_error(capsys, code, str(malformed), "line 1")


def test_evaluate_without_subcommand(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["evaluate"]) == 2
    err = capsys.readouterr().err.strip()
    assert err == (
        'hvps evaluate: error: expected "subcommand" to be one of {step,mots}, but it was not provided.'
    )


def test_step_sequences_selects_ground_truth_sequences(
    step_cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    step_cli.write_step_folders(tmp_path)
    _, full = step_cli.evaluate_step(tmp_path)
    expected = json.loads(full.read_text())["per_sequence"]["0002"]
    for png in (tmp_path / "pred" / "0009").glob("*.png"):  # only the val sequence was predicted
        png.unlink()
    code, output = step_cli.evaluate_step(tmp_path, "--dataset", "motchallenge_step", "--sequences", "0002")
    assert code == 0
    result = json.loads(output.read_text())
    assert set(result["per_sequence"]) == {"0002"} and result["num_frames"] == 3
    assert result["stq"] == pytest.approx(expected["stq"]) and result["aq"] == pytest.approx(expected["aq"])
    code, _ = step_cli.evaluate_step(tmp_path, "--dataset", "motchallenge_step", "--sequences", "0003")
    step_cli.assert_user_error(capsys, code, "--sequences", "0003")


def test_mots_sequences_selects_ground_truth_sequences(
    step_cli, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    write_mots_folders(tmp_path)
    (tmp_path / "pred" / "MOTS20-05.txt").unlink()
    code, output = evaluate_mots_cli(tmp_path, "--sequences", "MOTS20-02")
    assert code == 0
    result = json.loads(output.read_text())
    assert set(result["per_sequence"]) == {"MOTS20-02"}
    assert result["combined"]["IDSW"] == 1 and result["combined"]["FP"] == 1
    code, _ = evaluate_mots_cli(tmp_path, "--sequences", "MOTS20-77")
    step_cli.assert_user_error(capsys, code, "--sequences", "MOTS20-77")


def test_step_plot_draws_the_iou_per_class(step_cli, tmp_path: Path) -> None:
    step_cli.write_step_folders(tmp_path)
    plot = str(tmp_path / "iou.png")
    code, _ = step_cli.evaluate_step(tmp_path, "--dataset", "motchallenge_step", "--plot", plot)
    assert code == 0
    assert (tmp_path / "iou.png").stat().st_size > 5000


def _mots_layouts(tmp_path: Path) -> tuple[list[MOTSObject], list[MOTSObject]]:
    """One sequence with a car and a pedestrian in frames 0-3 (KITTI numbering) and a prediction."""
    car, person = np.zeros((8, 10), np.uint8), np.zeros((8, 10), np.uint8)
    car[:4, :4], person[5:, 6:] = 1, 1
    gt = [MOTSObject(f, 1001, 1, encode_mask(car)) for f in range(4)]
    gt += [MOTSObject(f, 2001, 2, encode_mask(person)) for f in range(4)]
    pred = [MOTSObject(f, 1005, 1, encode_mask(car)) for f in range(4)]
    pred += [MOTSObject(f, 2007 + f % 2, 2, encode_mask(person)) for f in range(4)]  # id switches
    write_mots_txt(tmp_path / "kitti" / "instances_txt" / "0002.txt", gt)
    write_mots_txt(tmp_path / "pred" / "data" / "0002.txt", pred)
    return gt, pred


def test_mots_kitti_layout_several_classes_and_output_dir(tmp_path: Path, capsys: Any) -> None:
    _mots_layouts(tmp_path)
    out = tmp_path / "out"
    code = main(["evaluate", "mots", "--gt", str(tmp_path / "kitti"), "--pred", str(tmp_path / "pred"),
                 "--classes", "car", "pedestrian", "--output", str(out / "r.json"), "--output-dir", str(out),
                 "--quiet"])  # fmt: skip
    assert code == 0, capsys.readouterr().err
    result = json.loads((out / "r.json").read_text())
    assert result["layout"] == "kitti_mots" and result["sequence_lengths"] == {"0002": 4}
    cars = result["classes"]["car"]["combined"]
    assert cars["IDSW"] == 0 and cars["IDF1"] == 1
    assert result["classes"]["pedestrian"]["combined"]["IDSW"] == 3
    assert result["combined"] == result["classes"]["car"]["combined"]  # the first class named
    for name in ("car", "pedestrian"):
        summary = (out / f"{name}_summary.txt").read_text().splitlines()
        assert summary[0].startswith("HOTA DetA AssA") and summary[0].endswith("Dets GT_Dets IDs GT_IDs")
        assert (out / f"{name}_detailed.csv").read_text().splitlines()[-1].startswith("COMBINED,")


def test_mots_seqmap_and_class_errors_are_one_line(step_cli, tmp_path: Path, capsys: Any) -> None:
    _mots_layouts(tmp_path)
    seqmap = tmp_path / "MOTS20-train.txt"
    seqmap.write_text("name\n0002\nMOTS20-11\n")
    args = ["evaluate", "mots", "--gt", str(tmp_path / "kitti"), "--pred", str(tmp_path / "pred"),
            "--output", str(tmp_path / "r.json")]  # fmt: skip
    step_cli.assert_user_error(capsys, main([*args, "--seqmap", str(seqmap)]), str(seqmap), "'MOTS20-11'")
    step_cli.assert_user_error(capsys, main([*args, "--classes", "bus"]), "--classes", "'bus'")
    # a frame beyond the seqmap's length
    seqmap.write_text("0002 empty 000000 000002\n")
    step_cli.assert_user_error(capsys, main([*args, "--seqmap", str(seqmap)]), "frame 3 is outside", "0..2")
    assert not (tmp_path / "r.json").exists()
