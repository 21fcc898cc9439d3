"""`hvps export`: TorchScript and ONNX files of both networks that give the eager networks' outputs."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from hvps_lightning.cli import main
from hvps_lightning.errors import HVPSError
from hvps_lightning.inference import InferenceModel
from hvps_lightning.inference.export import MOTSFrame, _sample_frames, export_model

SIZE = (96, 160)


def _model_with_detections(bundle: Path, val_frames: Path) -> tuple[InferenceModel, Path | None]:
    """The bundle's model with a score threshold above every score of a blank window, and a sample whose
    first window scores higher (the export traces it): detections there, none on the blank window."""
    model = InferenceModel.load(bundle)
    module = MOTSFrame(model.mots, 2).eval()
    with torch.no_grad():
        blank = module(torch.zeros(3, 3, *SIZE))[1]
        threshold = float(blank.max()) + 1e-3 if len(blank) else 0.05
        for sample in (None, val_frames):  # the default random frames, then the street frames
            first = _sample_frames(model, SIZE, sample, 1).repeat(3, 1, 1, 1)
            if (module(first)[1] > threshold).any():
                model.mots.roi_heads.score_thresh = threshold
                model.mots.init_args["box_score_thresh"] = threshold  # what a bundle of it stores
                return model, sample
    pytest.fail("no sample scores above the blank window")


def _new_clip(val_frames: Path, model: InferenceModel) -> torch.Tensor:
    frames = _sample_frames(model, SIZE, val_frames, 10)
    return frames[5:8]


@pytest.mark.slow
def test_torchscript_export_matches_the_eager_networks(
    bundle: Path, val_frames: Path, tmp_path: Path
) -> None:
    model, sample = _model_with_detections(bundle, val_frames)
    report = export_model(model, tmp_path / "ts", "torchscript", SIZE, sample=sample)
    check = report["check"]["mots_frame"]
    assert check["passed"] and 0 in check["detections_compared"] and max(check["detections_compared"]) > 0
    assert json.loads((tmp_path / "ts" / "export.json").read_text())["input"]["image_size"] == list(SIZE)
    # the files alone, on frames the check did not see
    clip = _new_clip(val_frames, model)
    mots = torch.jit.load(str(tmp_path / "ts" / "mots_frame.pt"))
    semantic = torch.jit.load(str(tmp_path / "ts" / "semantic.pt"))
    with torch.no_grad():
        exported, eager = mots(clip), MOTSFrame(model.mots, 2).eval()(clip)
        assert len(eager[0]) > 0
        for a, b in zip(exported, eager, strict=True):
            torch.testing.assert_close(a, b)
        torch.testing.assert_close(semantic(clip), model.semantic(clip))


def test_a_failed_check_leaves_no_file_and_bad_options_are_one_line(
    bundle: Path,
    val_frames: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    model = InferenceModel.load(bundle)
    with pytest.raises(HVPSError, match=r"export semantic \(torchscript\): exported logits differs"):
        export_model(model, tmp_path / "bad", "torchscript", SIZE, atol=-1.0)
    assert not list((tmp_path / "bad").iterdir())
    assert main(["export", "--model", str(bundle), "--format", "tflite", "--out", str(tmp_path / "x")]) == 2
    assert "--format tflite: expected one of onnx, torchscript" in capsys.readouterr().err
    # trained at the frames' own size: an exported graph needs one
    assert (
        main(["export", "--model", str(bundle), "--format", "torchscript", "--out", str(tmp_path / "x")]) == 2
    )
    assert "--image-size: required" in capsys.readouterr().err
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(HVPSError, match=r"--format onnx: needs (onnx, )?(onnxscript, )?onnxruntime"):
        export_model(model, tmp_path / "onnx", "onnx", SIZE)


@pytest.mark.slow
def test_onnx_export_matches_the_eager_networks_in_onnxruntime(
    bundle: Path, val_frames: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    onnxruntime = pytest.importorskip("onnxruntime")
    pytest.importorskip("onnxscript")
    model, sample = _model_with_detections(bundle, val_frames)
    bundle_with_threshold = model.save(tmp_path / "model.hvps")
    out = tmp_path / "onnx"
    args = ["export", "--model", str(bundle_with_threshold), "--format", "onnx", "--out", str(out),
            "--image-size", "96", "160"] + (["--sample", str(sample)] if sample else [])  # fmt: skip
    assert main(args) == 0
    assert capsys.readouterr().out.count("matches the eager network") == 2
    report = json.loads((out / "export.json").read_text())
    assert 0 in report["check"]["mots_frame"]["detections_compared"]
    clip = _new_clip(val_frames, model)
    mots = onnxruntime.InferenceSession(str(out / "mots_frame.onnx"), providers=["CPUExecutionProvider"])
    outputs = mots.run(None, {"clip": clip.numpy()})
    with torch.no_grad():
        eager = MOTSFrame(model.mots, 2).eval()(clip)
    assert len(eager[0]) > 0
    for name, a, b in zip(("boxes", "scores", "labels", "masks", "embeddings"), outputs, eager, strict=True):
        np.testing.assert_allclose(a, b.numpy(), atol=1e-3, rtol=1e-3, err_msg=name)
    semantic = onnxruntime.InferenceSession(str(out / "semantic.onnx"), providers=["CPUExecutionProvider"])
    batch = torch.cat([clip, clip[:1]])  # batch size and image size are dynamic
    logits = semantic.run(None, {"images": batch[:, :, :64, :128].numpy()})[0]
    with torch.no_grad():
        np.testing.assert_allclose(
            logits, model.semantic(batch[:, :, :64, :128]).numpy(), atol=1e-4, rtol=1e-3
        )
