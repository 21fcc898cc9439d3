from __future__ import annotations

import json
from pathlib import Path

import lightning as L
import numpy as np
import pytest
import torch

from hvps_lightning.errors import HVPSError
from hvps_lightning.formats.detection_cache import (
    cache_paths,
    list_cached_sequences,
    read_detection_cache,
    read_detection_cache_dir,
    write_detection_cache,
)
from hvps_lightning.lightning.collect import SequenceCollector, frame_sort_key
from hvps_lightning.lightning.writers import DetectionCacheWriter
from hvps_lightning.structures.detections import FrameDetections

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def assert_same_frames(a: list[FrameDetections], b: list[FrameDetections]) -> None:
    assert [f.frame for f in a] == [f.frame for f in b]
    for x, y in zip(a, b, strict=True):
        for name in ("boxes", "scores", "labels", "embeddings"):
            left, right = getattr(x, name), getattr(y, name)
            assert left.dtype == right.dtype and left.shape == right.shape, name
            assert left.tobytes() == right.tobytes(), name  # bit-exact
        assert x.masks == y.masks
        assert tuple(x.image_size) == tuple(y.image_size)


def test_round_trip_is_bit_exact(tmp_path: Path, easy_detections: list) -> None:
    frames = [*easy_detections[:6], FrameDetections.empty("000099", (72, 96))]
    metadata = {
        "dataset": "motchallenge_step",
        "hparams": {"lr": np.float32(0.5), "sizes": (1, 2)},
        "nan": float("nan"),
    }
    npz, js = write_detection_cache(tmp_path, "0002", frames, metadata)
    assert (npz, js) == cache_paths(tmp_path, "0002")
    loaded, meta = read_detection_cache(tmp_path, "0002")
    assert_same_frames(frames, loaded)
    assert meta == {"dataset": "motchallenge_step", "hparams": {"lr": 0.5, "sizes": [1, 2]}, "nan": None}
    assert list_cached_sequences(tmp_path) == ["0002"]
    assert set(read_detection_cache_dir(tmp_path)) == {"0002"}
    # only arrays in the npz: it loads without pickle
    with np.load(npz, allow_pickle=False) as data:
        assert sorted(data.files) == ["boxes", "embeddings", "frame_offsets", "labels", "scores"]
        assert data["frame_offsets"].tolist()[-1] == sum(len(f) for f in frames)


def test_empty_sequence_and_frames_without_detections(tmp_path: Path) -> None:
    write_detection_cache(tmp_path, "empty", [])
    assert read_detection_cache(tmp_path, "empty")[0] == []
    frames = [FrameDetections.empty(f"{i:06d}", (5, 7)) for i in range(3)]
    write_detection_cache(tmp_path, "blank", frames)
    loaded, _ = read_detection_cache(tmp_path, "blank")
    assert [len(f) for f in loaded] == [0, 0, 0] and loaded[0].embeddings.shape == (0, 128)


def test_invalid_inputs_are_refused(tmp_path: Path, easy_detections: list) -> None:
    bad = easy_detections[0]
    bad = FrameDetections(
        bad.frame, bad.boxes, bad.scores[:1], bad.labels, bad.masks, bad.embeddings, bad.image_size
    )
    with pytest.raises(HVPSError, match="sequence s: frame 000000: 5 boxes but scores=1"):
        write_detection_cache(tmp_path, "s", [bad])
    with pytest.raises(HVPSError, match="not a plain name"):
        write_detection_cache(tmp_path, "../escape", [])
    with pytest.raises(HVPSError, match="repeated frame names"):
        write_detection_cache(tmp_path, "s", [easy_detections[0], easy_detections[0]])
    assert list_cached_sequences(tmp_path) == []  # nothing half-written


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        (lambda npz, js: js.unlink(), "0002.json: cached sequence not found"),
        (lambda npz, js: npz.unlink(), "0002.npz: detection arrays not found"),
        (lambda npz, js: js.write_text("{not json"), "0002.json: not a readable detection cache json"),
        (lambda npz, js: js.write_text('{"format": "other"}'), "not a detection cache"),
        (lambda npz, js: npz.write_bytes(npz.read_bytes()[:100]), "0002.npz: does not match 0002.json"),
        (lambda npz, js: _rewrite_json(js, counts=[1, 2]), "frames, image_sizes and counts must be lists"),
        (lambda npz, js: _rewrite_json(js, masks=[]), "mask strings for"),
        (lambda npz, js: _rewrite_json(js, version=99), "detection cache version 99"),
    ],
)
def test_damaged_caches_name_the_file(tmp_path: Path, easy_detections: list, damage, message: str) -> None:
    npz, js = write_detection_cache(tmp_path, "0002", easy_detections[:3])
    damage(npz, js)
    with pytest.raises(HVPSError, match=message):
        read_detection_cache(tmp_path, "0002")


def _rewrite_json(path: Path, **changes: object) -> None:
    document = json.loads(path.read_text())
    document.update(changes)
    path.write_text(json.dumps(document))


def _reseal(npz: Path, js: Path, **changes: object) -> None:
    """Change the json and recompute the checksum, as a forger (or a buggy tool) would."""
    from hvps_lightning.formats.detection_cache import _checksum

    document = json.loads(js.read_text())
    document.update(changes)
    document["sha256"] = _checksum(npz.read_bytes(), document)
    js.write_text(json.dumps(document))


def test_pickled_arrays_and_wrong_shapes_are_refused(tmp_path: Path, easy_detections: list) -> None:
    npz, js = write_detection_cache(tmp_path, "0002", easy_detections[:2])
    with np.load(npz) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["boxes"] = np.array([object()] * 3, dtype=object)
    np.savez(npz, **arrays)
    _reseal(npz, js)
    with pytest.raises(HVPSError, match=r"0002\.npz: not a readable npz"):
        read_detection_cache(tmp_path, "0002")
    arrays["boxes"] = np.zeros((1, 4), np.float32)
    np.savez(npz, **arrays)
    _reseal(npz, js)
    with pytest.raises(HVPSError, match="boxes has shape"):
        read_detection_cache(tmp_path, "0002")


def test_missing_directory(tmp_path: Path) -> None:
    with pytest.raises(HVPSError, match="detection cache directory not found"):
        list_cached_sequences(tmp_path / "nope")
    with pytest.raises(HVPSError, match="no cached sequences"):
        read_detection_cache_dir(tmp_path)


def test_collector_orders_frames_and_drops_repeats(easy_detections: list) -> None:
    collector = SequenceCollector()
    collector.add([("b", easy_detections[2]), ("a", easy_detections[1])])
    collector.add([("b", easy_detections[0]), ("b", easy_detections[2])])  # a DDP-padded repeat
    collector.add(None)
    grouped = collector.gather()
    assert list(grouped) == ["a", "b"]
    assert [f.frame for f in grouped["b"]] == ["000000", "000002"]
    with pytest.raises(HVPSError, match="expected \\(sequence, FrameDetections\\) pairs"):
        collector.add([("a", {"boxes": []})])
    assert sorted(["10", "9", "x", "100"], key=frame_sort_key) == ["9", "10", "100", "x"]


class _Predictor(L.LightningModule):
    """Emits prepared detections in predict_step as MOTSModule does."""

    def __init__(self, frames: list[FrameDetections]) -> None:
        super().__init__()
        self.frames = frames
        self.layer = torch.nn.Linear(1, 1)
        self.save_hyperparameters({"dataset": "motchallenge_step", "lr": 0.1})

    def predict_step(self, batch: torch.Tensor, batch_idx: int) -> list[tuple[str, FrameDetections]]:
        return [("0002" if int(i) % 2 == 0 else "0009", self.frames[int(i)]) for i in batch.flatten()]


def test_detection_cache_writer_stores_predict_outputs(tmp_path: Path, easy_detections: list) -> None:
    frames = [FrameDetections(f"{i:06d}", f.boxes, f.scores, f.labels, f.masks, f.embeddings, f.image_size)
              for i, f in enumerate(easy_detections[:6])]  # fmt: skip
    loader = torch.utils.data.DataLoader(torch.arange(6), batch_size=4)
    writer = DetectionCacheWriter(tmp_path / "cache", metadata={"note": "test"})
    trainer = L.Trainer(
        accelerator="cpu", devices=1, logger=False, callbacks=[writer], enable_progress_bar=False,
        enable_model_summary=False,
    )  # fmt: skip
    trainer.predict(_Predictor(frames), loader, return_predictions=False)
    assert list_cached_sequences(tmp_path / "cache") == ["0002", "0009"]
    loaded, meta = read_detection_cache(tmp_path / "cache", "0002")
    assert_same_frames([frames[0], frames[2], frames[4]], loaded)
    assert meta["dataset"] == "motchallenge_step" and meta["hparams"]["lr"] == 0.1
    assert meta["model_class"].endswith("_Predictor") and meta["note"] == "test"


def _with_motion(frames: list[FrameDetections], shifts: list[float]) -> list[FrameDetections]:
    out = []
    for frame, shift in zip(frames, shifts, strict=True):
        copy = FrameDetections(frame.frame, frame.boxes, frame.scores, frame.labels, frame.masks,
                               frame.embeddings, frame.image_size,
                               camera_motion=np.array([[1.0, 0, shift], [0, 1.0, 0]]))  # fmt: skip
        out.append(copy)
    return out


def test_camera_motion_is_stored_when_known_and_old_caches_still_load(
    tmp_path: Path, easy_detections: list
) -> None:
    frames = _with_motion(easy_detections[:4], [0.0, 2.5, -1.0, 3.0])
    npz, _ = write_detection_cache(tmp_path, "0002", frames)
    loaded, _ = read_detection_cache(tmp_path, "0002")
    assert [float(f.camera_motion[0, 2]) for f in loaded] == [0.0, 2.5, -1.0, 3.0]
    with np.load(npz, allow_pickle=False) as data:
        assert data["camera_motion"].shape == (4, 2, 3)
    # a cache written without transforms (as before) loads with camera_motion None
    write_detection_cache(tmp_path, "old", easy_detections[:3])
    assert [f.camera_motion for f in read_detection_cache(tmp_path, "old")[0]] == [None] * 3
    with pytest.raises(HVPSError, match="camera_motion is set for some frames only"):
        write_detection_cache(tmp_path, "mixed", [*frames[:2], easy_detections[2]])
    with pytest.raises(HVPSError, match="camera_motion must be a finite"):
        bad = _with_motion(easy_detections[:1], [np.nan])
        write_detection_cache(tmp_path, "nan", bad)


def test_damaged_camera_motion_names_the_file(tmp_path: Path, easy_detections: list) -> None:
    npz, js = write_detection_cache(tmp_path, "0002", _with_motion(easy_detections[:2], [0.0, 1.0]))
    with np.load(npz) as data:
        arrays = {k: data[k] for k in data.files}
    arrays["camera_motion"] = np.zeros((3, 2, 3))
    np.savez(npz, **arrays)
    _reseal(npz, js)
    with pytest.raises(HVPSError, match=r"0002\.npz: camera_motion has shape \(3, 2, 3\)"):
        read_detection_cache(tmp_path, "0002")


class _ImagePredictor(_Predictor):
    def predict_step(self, batch: dict, batch_idx: int) -> list[tuple[str, FrameDetections]]:
        return [
            (meta["sequence"], self.frames[int(i)])
            for i, meta in zip(batch["index"], batch["meta"], strict=True)
        ]


def test_detection_cache_writer_can_store_camera_motion(tmp_path: Path, easy_detections: list) -> None:
    import cv2

    rng = np.random.default_rng(0)
    scene = cv2.GaussianBlur((rng.random((120, 260)) * 255).astype(np.uint8), (0, 0), 2)
    metas = []
    for i in range(4):  # the camera pans: the image content moves 3 px left per frame
        path = tmp_path / f"{i:06d}.png"
        cv2.imwrite(str(path), np.ascontiguousarray(scene[:, 3 * i : 3 * i + 200]))
        metas.append({"sequence": "0002", "frame": f"{i:06d}", "image_path": str(path)})
    frames = [FrameDetections(f"{i:06d}", f.boxes, f.scores, f.labels, f.masks, f.embeddings, f.image_size)
              for i, f in enumerate(easy_detections[:4])]  # fmt: skip
    loader = torch.utils.data.DataLoader(
        list(range(4)), batch_size=3, collate_fn=lambda ids: {"index": ids, "meta": [metas[i] for i in ids]}
    )
    writer = DetectionCacheWriter(tmp_path / "cache", camera_motion=True)
    trainer = L.Trainer(accelerator="cpu", devices=1, logger=False, callbacks=[writer],
                        enable_progress_bar=False, enable_model_summary=False)  # fmt: skip
    trainer.predict(_ImagePredictor(frames), loader, return_predictions=False)
    loaded, _ = read_detection_cache(tmp_path / "cache", "0002")
    shifts = [f.camera_motion[:, 2] for f in loaded]
    np.testing.assert_allclose(shifts[0], [0.0, 0.0])
    np.testing.assert_allclose(np.array(shifts[1:]), [[-3.0, 0.0]] * 3, atol=0.3)


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"frames": ["../../escape", "000001"]}, r"0002\.json: frame name '\.\./\.\./escape' is not a plain"),
        ({"frames": ["/etc/passwd", "000001"]}, "is not a plain name"),
        ({"frames": ["000001", "000001"]}, "frame '000001' appears more than once"),
        ({"image_sizes": [[10**9, 10**9], [64, 64]]}, r"size \[1000000000, 1000000000\] outside 1\.\.65535"),
        ({"image_sizes": [[0, 64], [64, 64]]}, "outside 1..65535"),
        ({"image_sizes": [["64", 64], [64, 64]]}, "image size must be \\[H, W\\] integers"),
        ({"counts": [1.5, 1]}, "counts must be non-negative integers"),
        ({"embedding_dim": -1}, "embedding_dim must be"),
    ],
)
def test_cache_json_is_validated_before_use(
    tmp_path: Path, easy_detections: list, changes: dict, message: str
) -> None:
    npz, js = write_detection_cache(tmp_path, "0002", easy_detections[:2])
    _reseal(npz, js, **changes)
    with pytest.raises(HVPSError, match=message):
        read_detection_cache(tmp_path, "0002")


@pytest.mark.parametrize("damage", ["truncate", "garbage", "resize"])
def test_masks_that_do_not_decode_to_their_frame_are_refused(
    tmp_path: Path, easy_detections: list, damage: str
) -> None:
    npz, js = write_detection_cache(tmp_path, "0002", easy_detections[:2])
    document = json.loads(js.read_text())
    masks = list(document["masks"])
    if damage == "truncate":
        masks[0] = masks[0][: len(masks[0]) // 2]
    elif damage == "garbage":
        masks[0] = "~~~~"
    else:  # an RLE of a mask of another size
        masks[0] = "04"
    _reseal(npz, js, masks=masks)
    with pytest.raises(HVPSError, match=r"0002\.json: frame \S+: mask 0: "):
        read_detection_cache(tmp_path, "0002")


def test_an_edited_json_breaks_the_checksum(tmp_path: Path, easy_detections: list) -> None:
    _, js = write_detection_cache(tmp_path, "0002", easy_detections[:2])
    _rewrite_json(js, frames=["000007", "000008"])  # plain names, right count: only the checksum tells
    with pytest.raises(HVPSError, match="checksum differs"):
        read_detection_cache(tmp_path, "0002")


def test_version_one_caches_still_load(tmp_path: Path, easy_detections: list) -> None:
    import hashlib

    npz, js = write_detection_cache(tmp_path, "0002", easy_detections[:2])
    document = json.loads(js.read_text())
    del document["sha256"]
    document.update(version=1, arrays_sha256=hashlib.sha256(npz.read_bytes()).hexdigest())
    js.write_text(json.dumps(document))
    frames, _ = read_detection_cache(tmp_path, "0002")
    assert_same_frames(frames, easy_detections[:2])
