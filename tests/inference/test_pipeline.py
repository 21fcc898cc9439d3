"""`Pipeline`: the output of `hvps predict` + `hvps track`, streaming in bounded memory; the Python API."""

from __future__ import annotations

import filecmp
from pathlib import Path

import numpy as np
import pytest
import torch
from inference_helpers import LOOSE_TRACKER

from hvps_lightning import Pipeline
from hvps_lightning.cli import main
from hvps_lightning.errors import HVPSError
from hvps_lightning.inference import InferenceModel
from hvps_lightning.inference.frames import open_frames
from hvps_lightning.tracking.config import TrackerConfig
from hvps_lightning.tracking.tracker import SequenceTracker


def _predict_and_track(checkpoints: dict[str, Path], root: Path, out: Path) -> Path:
    """The demo's path: both models' `predict` over the val sequence (caches), then `hvps track`."""
    import lightning as L

    from hvps_lightning.data.datamodule import HVPSDataModule
    from hvps_lightning.lightning.writers import DetectionCacheWriter, SemanticCacheWriter
    from hvps_lightning.models.mots.lightning_model import MOTSModule
    from hvps_lightning.models.semantic.lightning_model import SemanticModule

    cache = out / "cache"
    for task, data, writer in (
        (MOTSModule.load_from_checkpoint(checkpoints["mots"]), HVPSDataModule(root=str(root), batch_size=1),
         DetectionCacheWriter(cache / "detections")),
        (SemanticModule.load_from_checkpoint(checkpoints["semantic"]),
         HVPSDataModule(root=str(root), batch_size=4, clip_length=1, targets="semantic"),
         SemanticCacheWriter(cache / "semantic")),
    ):  # fmt: skip
        trainer = L.Trainer(accelerator="cpu", logger=False, callbacks=[writer], enable_progress_bar=False,
                            enable_model_summary=False)  # fmt: skip
        trainer.predict(task, datamodule=data, return_predictions=False)
    tracker = out / "tracker.yaml"
    TrackerConfig(**LOOSE_TRACKER).to_yaml(tracker)
    args = ["track", "--detections", str(cache / "detections"), "--semantic", str(cache / "semantic"),
            "--out", str(out / "tracked"), "--tracker-config", str(tracker),
            "--quiet"]  # fmt: skip
    assert main(args) == 0
    return out / "tracked"


@pytest.mark.slow
def test_infer_on_a_plain_folder_writes_what_predict_and_track_write(
    checkpoints: dict[str, Path], bundle: Path, synth_mot_step_root: Path, val_frames: Path, tmp_path: Path
) -> None:
    tracked = _predict_and_track(checkpoints, synth_mot_step_root, tmp_path / "reference")
    out = tmp_path / "infer"
    args = ["infer", "--model", str(bundle), "--input", str(val_frames), "--out", str(out),
            "--save", "step,mots", "--camera-motion", "off", "--quiet"]  # fmt: skip
    assert main(args) == 0
    pngs = sorted(p.name for p in (tracked / "step" / "0002").glob("*.png"))
    assert len(pngs) == 10 and pngs == sorted(p.name for p in (out / "step" / "0002").glob("*.png"))
    _, mismatch, errors = filecmp.cmpfiles(
        tracked / "step" / "0002", out / "step" / "0002", pngs, shallow=False
    )
    assert not mismatch and not errors
    reference_mots = (tracked / "mots" / "0002.txt").read_text()
    assert (
        reference_mots.count("\n") > 10
    )  # the loose tracker tracks the briefly trained network's detections
    assert (out / "mots" / "0002.txt").read_text() == reference_mots


def test_results_come_in_order_with_panoptic_tracks_and_overlay(bundle: Path, val_frames: Path) -> None:
    pipe = Pipeline.from_bundle(bundle, device="cpu", batch_frames=3)
    results = list(pipe(val_frames))
    assert [r.name for r in results] == [f"{i:06d}" for i in range(1, 11)]
    assert [r.index for r in results] == list(range(10))
    first = results[4]
    assert first.panoptic.shape == (96, 160, 2) and first.panoptic.dtype == np.int32
    assert (first.panoptic[..., 0] == first.semantic).all() and (
        first.panoptic[..., 1] == first.instance
    ).all()
    tracked = [r for r in results if r.tracks]
    assert tracked, "the loose tracker outputs tracks"
    frame = tracked[-1]
    ids = [t.track_id for t in frame.tracks]
    assert ids == sorted(ids) and len(set(ids)) == len(ids)
    track = frame.tracks[0]
    assert track.rle["size"] == [96, 160] and track.box.shape == (4,) and 0 <= track.score <= 1
    # each track's pixels carry its id in the panoptic map (where no better-scored track covers them)
    assert set(np.unique(frame.instance)) - {0} <= set(ids)
    overlay = frame.overlay()
    assert (
        overlay.shape == (96, 160, 3)
        and overlay.dtype == np.uint8
        and not np.array_equal(overlay, frame.image)
    )
    assert frame.overlay("tracks").shape == (96, 160, 3)
    assert pipe.stats.frames_out == 10 and set(pipe.stats.seconds) >= {
        "mots",
        "semantic",
        "tracker",
        "fusion",
    }


def test_memory_stays_bounded_and_a_second_run_repeats_the_first(bundle: Path, val_frames: Path) -> None:
    pipe = Pipeline.from_bundle(bundle, device="cpu", batch_frames=2)
    frames = [f.image for f in open_frames(val_frames)] * 2  # 20 frames
    held: list[int] = []

    def watched() -> object:
        for image in frames:
            held.append(len(pipe._pending))
            yield image

    first = [(r.name, [(t.track_id, t.rle["counts"]) for t in r.tracks]) for r in pipe(watched())]
    assert len(first) == 20
    lag = SequenceTracker.required_lag(pipe.model.tracker)
    assert lag == 9 and max(held) <= 2 + lag + 1  # one semantic batch + the tracker's lag, not the video
    again = [(r.name, [(t.track_id, t.rle["counts"]) for t in r.tracks]) for r in pipe(frames)]
    assert again == first


def test_image_size_every_and_a_centred_window(bundle: Path, val_frames: Path) -> None:
    model = InferenceModel.load(bundle)
    model.target_index = 1  # a centred window: each frame's detections wait for the next frame
    pipe = Pipeline(model, device="cpu", image_size=(64, 96))
    results = list(pipe(val_frames, start=1, every=2))
    assert [r.index for r in results] == [1, 3, 5, 7, 9]
    assert all(r.panoptic.shape == (96, 160, 2) for r in results)  # outputs at the frames' size
    assert all(t.rle["size"] == [96, 160] for r in results for t in r.tracks)


def test_the_stuff_fusion_rule_and_camera_motion_run(bundle: Path, val_frames: Path) -> None:
    model = InferenceModel.load(bundle)
    model.fusion_rule = "stuff"
    results = list(Pipeline(model, device="cpu", camera_motion=True)(val_frames, end=4))
    assert len(results) == 4
    things = results[-1].semantic == 4
    assert (results[-1].instance[things] > 0).all()  # no crowd left: uncovered thing pixels became stuff
    assert all(r.detections.camera_motion is not None for r in results)


def test_from_checkpoints_and_bad_devices(checkpoints: dict[str, Path], val_frames: Path) -> None:
    pipe = Pipeline.from_checkpoints(
        checkpoints["mots"], checkpoints["semantic"], LOOSE_TRACKER, device="cpu"
    )
    assert len(list(pipe(val_frames, end=2))) == 2
    assert pipe.model.sources["mots"]["checkpoint"] == str(checkpoints["mots"])
    if not torch.cuda.is_available():
        with pytest.raises(HVPSError, match="--device cuda: no CUDA device"):
            Pipeline(pipe.model, device="cuda")
    with pytest.raises(HVPSError, match="--device tpu: expected auto, cpu or cuda"):
        Pipeline(pipe.model, device="tpu")
    with pytest.raises(HVPSError, match="--batch-frames 0"):
        Pipeline(pipe.model, device="cpu", batch_frames=0)
