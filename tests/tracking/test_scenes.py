"""The hard scene simulator: as hard as real detections (look-alikes, occluders, pan, false positives)."""

from __future__ import annotations

import numpy as np
import pytest

from hvps_lightning.data.synthetic.tracking_workloads import WORKLOADS, SceneSpec, simulate_scene
from hvps_lightning.structures.masks import decode_mask

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

SMALL = {"height": 180, "width": 320, "num_frames": 160}


def _distances(scene: object) -> tuple[np.ndarray, np.ndarray]:
    """Cosine distances of detection pairs: same identity, different identities (false positives out)."""
    embeddings = np.concatenate([f.embeddings for f in scene.detections[::4]])
    identities = np.concatenate([f.extra["identities"] for f in scene.detections[::4]])
    real = identities > 0
    embeddings, identities = embeddings[real], identities[real]
    distance = 1.0 - embeddings @ embeddings.T
    same = identities[:, None] == identities[None, :]
    upper = np.triu(np.ones_like(same), 1)
    return distance[same & upper], distance[~same & upper]


@pytest.fixture(scope="module")
def occlusion_scene() -> object:
    return simulate_scene(WORKLOADS["occlusion"].replace(**SMALL), seed=3)


def test_scene_is_deterministic_and_valid(occlusion_scene: object) -> None:
    again = simulate_scene(WORKLOADS["occlusion"].replace(**SMALL), seed=3)
    assert [f.rles for f in again.gt] == [f.rles for f in occlusion_scene.gt]
    np.testing.assert_array_equal(again.detections[50].embeddings, occlusion_scene.detections[50].embeddings)
    assert occlusion_scene.camera_motion.shape == (SMALL["num_frames"], 2, 3)
    np.testing.assert_allclose(occlusion_scene.camera_motion[0], np.eye(2, 3))
    for gt, detections in zip(occlusion_scene.gt[::10], occlusion_scene.detections[::10], strict=True):
        detections.validate("scene")
        assert detections.camera_motion.shape == (2, 3)
        if len(gt):  # ground-truth masks are the visible parts: disjoint
            assert np.stack([decode_mask(r) for r in gt.rles]).astype(int).sum(axis=0).max() <= 1
        # a detected person is in the ground truth of its frame
        real = detections.extra["identities"][detections.extra["identities"] > 0]
        assert set(real.tolist()) <= set(gt.identities.tolist())


def test_embeddings_look_like_real_reid_features(occlusion_scene: object) -> None:
    same, other = _distances(occlusion_scene)
    # different people spread over ~0.3-1.0 (shared direction, look-alike groups) ...
    assert (
        np.percentile(other, 0.1) < 0.4 and 0.5 < np.median(other) < 0.9 and np.percentile(other, 99) > 0.95
    )
    # ... and one person varies (noise, drift, occluders mixed in), overlapping the look-alikes
    assert 0.05 < np.median(same) < 0.25 and same.max() > other.min()
    easy = simulate_scene(WORKLOADS["occlusion"].replace(**SMALL, appearance="easy"), seed=3)
    _, easy_other = _distances(easy)
    assert np.percentile(easy_other, 1) > 0.6  # the old model: strangers sit near distance 1


def test_occluders_hide_people_for_many_frames_and_paths_cross(occlusion_scene: object) -> None:
    present: dict[int, list[int]] = {}
    for index, frame in enumerate(occlusion_scene.gt):
        for identity in frame.identities.tolist():
            present.setdefault(identity, []).append(index)
    gaps = np.concatenate([np.diff(frames) - 1 for frames in present.values() if len(frames) > 1])
    assert (gaps >= 10).sum() >= 5  # hidden 10+ frames behind pillars
    # people walking left and right: some pass each other
    boxes = {}
    for index, detections in enumerate(occlusion_scene.detections):
        for identity, box in zip(detections.extra["identities"], detections.boxes, strict=True):
            if identity > 0:
                boxes.setdefault(int(identity), {})[index] = (box[0] + box[2]) / 2
    crossings = 0
    ids = sorted(boxes)
    for a in ids:
        for b in ids:
            common = sorted(set(boxes[a]) & set(boxes[b]))
            if a < b and len(common) > 1:
                sign = np.sign([boxes[a][f] - boxes[b][f] for f in common])
                crossings += int((np.diff(sign) != 0).any())
    assert crossings >= 3


def test_false_positives_sit_next_to_people_and_look_like_them(occlusion_scene: object) -> None:
    near = []
    for detections in occlusion_scene.detections:
        identities = detections.extra["identities"]
        for index in np.flatnonzero(identities < 0):
            real = identities > 0
            if real.any():
                near.append((1.0 - detections.embeddings[real] @ detections.embeddings[index]).min())
    assert len(near) >= 20
    assert np.median(near) < 0.5


def test_panning_camera_moves_the_image() -> None:
    spec = SceneSpec(num_frames=40, people=3, height=90, width=160, pan=0.01, camera_noise=0.0)
    scene = simulate_scene(spec, seed=0)
    shifts = scene.camera_motion[1:, 0, 2]
    assert np.abs(shifts).max() > 0.3
    np.testing.assert_allclose(scene.detections[5].camera_motion, scene.camera_motion[5])
