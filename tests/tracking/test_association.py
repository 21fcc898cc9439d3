"""Association mechanics, each on a scripted scene where the previous release went wrong."""

from __future__ import annotations

import numpy as np
import pytest

from hvps_lightning.data.synthetic.detections import make_frame
from hvps_lightning.errors import HVPSError
from hvps_lightning.structures.detections import FrameDetections
from hvps_lightning.tracking.association import ambiguous_pairs, path_distance
from hvps_lightning.tracking.tracker import Merge, Tracker, TrackerConfig, track_sequence

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")

HEIGHT, WIDTH, DIM = 60, 200, 8


def unit(*values: float) -> np.ndarray:
    vector = np.zeros(DIM)
    vector[: len(values)] = values
    return vector / np.linalg.norm(vector)


def frame(index: int, people: list[tuple[float, np.ndarray]], **kwargs: object) -> FrameDetections:
    """Upright 10x30 boxes at the given left x, with the given embeddings."""
    masks, boxes = [], []
    for x, _ in people:
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        mask[10:40, int(x) : int(x) + 10] = 1
        masks.append(mask)
        boxes.append([int(x), 10, int(x) + 10, 40])
    embeddings = np.array([e for _, e in people], np.float32).reshape(len(people), DIM)
    detections = make_frame(f"{index:06d}", masks, boxes=np.array(boxes, np.float32).reshape(-1, 4),
                            embeddings=embeddings, image_size=(HEIGHT, WIDTH))  # fmt: skip
    for key, value in kwargs.items():
        setattr(detections, key, value)
    return detections


def ids_of(tracks: list, index: int) -> list[int]:
    return [o.track_id for o in tracks[index]]


A, B = unit(1.0), unit(0.65, 0.76)  # look-alikes: cosine distance ~0.35


def test_retrieval_cannot_steal_a_detection_a_better_matching_lost_track_claims() -> None:
    # A (id 1) hides at frame 5 for 15 frames; its neighbour B (id 2) hides at frame 17. When A
    # comes back at frame 20, B is within the short-term window and A only within re-ID's.
    frames = []
    for t in range(24):
        people = []
        if t < 5 or t >= 20:
            people.append((50, A))
        if t < 17 or t >= 22:
            people.append((64, B))
        frames.append(frame(t, people))
    loose = {
        "short_term_max_embedding_distance": 0.7,
        "short_term_min_iou": 0.0,
        "short_term_max_centre_distance": 2.0,
    }
    joint = track_sequence(frames, TrackerConfig(**loose))
    cascade = track_sequence(frames, TrackerConfig(**loose, association="cascade"))
    assert ids_of(cascade, 20) == [2]  # retrieval ran first: B's track took A
    assert ids_of(joint, 20) == [1]
    assert ids_of(joint, 23) == [1, 2]


def test_reid_needs_a_plausible_position() -> None:
    # A hides for 10 frames and "comes back" 120 px away: a different person in A's clothes.
    frames = [frame(t, [(20, A)]) for t in range(5)]
    frames += [frame(t, []) for t in range(5, 15)]
    frames += [frame(t, [(140, A)]) for t in range(15, 18)]
    frames[5:15] = [FrameDetections.empty(f"{t:06d}", (HEIGHT, WIDTH), DIM) for t in range(5, 15)]
    assert ids_of(track_sequence(frames, TrackerConfig()), 16) == [2]
    anywhere = TrackerConfig(reid_max_centre_distance=float("inf"))
    assert ids_of(track_sequence(frames, anywhere), 16) == [1]
    # near where A was last seen (or where its path leads), it is A
    frames[15:] = [frame(t, [(32, A)]) for t in range(15, 18)]
    assert ids_of(track_sequence(frames, TrackerConfig()), 16) == [1]


def test_an_ambiguous_reappearance_is_left_unmatched() -> None:
    # Two look-alikes hide side by side; someone equally like both appears between them.
    twin = unit(1.0, 0.15)
    between = unit(1.0, 0.075)
    frames = [frame(t, [(40, A), (60, twin)]) for t in range(5)]
    frames += [FrameDetections.empty(f"{t:06d}", (HEIGHT, WIDTH), DIM) for t in range(5, 10)]
    frames += [frame(t, [(50, between)]) for t in range(10, 13)]
    assert ids_of(track_sequence(frames, TrackerConfig()), 11) == [3]
    assert ids_of(track_sequence(frames, TrackerConfig(reid_ratio=float("inf"))), 11) in ([1], [2])


def test_tracklet_reid_merges_a_new_tracklet_and_relabels_its_frames() -> None:
    # A comes back after 10 frames looking 0.4 away from itself in each frame (a different side of
    # A in turn): one detection is too far for re-ID, the mean of two is close enough.
    c = np.sqrt(1 / 0.6**2 - 1)
    sides = [unit(1.0, c), unit(1.0, 0, c), unit(1.0, 0, 0, c)]
    frames = [frame(t, [(20, A)]) for t in range(5)]
    frames += [FrameDetections.empty(f"{t:06d}", (HEIGHT, WIDTH), DIM) for t in range(5, 15)]
    frames += [frame(t, [(22, sides[t % 3])]) for t in range(15, 20)]
    config = TrackerConfig(
        min_hits=1, max_embedding_distance=1.0, appearance_update_max_distance=1.0, reid_max_distance=0.3
    )
    tracker = Tracker(config)
    online = []
    merges: list[Merge] = []
    for detections in frames:
        online.append([o.track_id for o in tracker.update(detections)])
        merges += tracker.merged
    assert online[15] == [2] and online[16:] == [[1]] * 4  # online: the merge shows from frame 16 on
    assert merges == [Merge(old_id=2, new_id=1, first_frame=15, last_frame=15)]
    offline = track_sequence(frames, config)
    assert [ids_of(offline, t) for t in range(15, 20)] == [[1]] * 5  # offline: every frame
    no_merge = track_sequence(frames, config.replace(tracklet_reid_frames=0))
    assert ids_of(no_merge, 19) == [2]


def test_a_doubtful_match_does_not_teach_a_track_another_appearance() -> None:
    # A walks up to C; on the way its embedding is half C's (C in the crop). A then hides for 10
    # frames; with a one-embedding gallery only a gallery kept clean recognises A when it is back.
    c = unit(0, 0, 1.0)
    mixed = unit(1.0, 0, 1.2)  # 0.36 from A: within the live gate, beyond the update gate
    frames = [frame(t, [(20, A), (80, c)]) for t in range(5)]
    frames += [frame(t, [(20 + 18 * (t - 4), mixed), (80, c)]) for t in range(5, 8)]
    frames += [frame(t, [(80, c)]) for t in range(8, 18)]
    frames += [frame(t, [(74, A), (80, c)]) for t in range(18, 21)]
    base = TrackerConfig(
        gallery_size=1, max_embedding_distance=0.6, max_centre_distance=3.0, min_iou=0.0,
        reid_max_distance=0.3,
        short_term_frames=5, appearance_update_max_distance=0.3, appearance_update_max_overlap=0.2,
    )  # fmt: skip
    gated = track_sequence(frames, base)
    always = track_sequence(
        frames, base.replace(appearance_update_max_distance=2.0, appearance_update_max_overlap=1.0)
    )
    assert ids_of(gated, 7) == ids_of(always, 7) == [1, 2]  # A kept its track on the way
    assert ids_of(gated, 19) == [1, 2]
    assert ids_of(always, 19) == [2, 3]


def test_camera_motion_compensation_follows_a_shaking_camera() -> None:
    # A person stands still while the camera jumps 25 px left and right (4 box widths of motion).
    frames = []
    for t in range(12):
        shift = 25.0 if t % 2 else 0.0
        previous = 25.0 if (t - 1) % 2 else 0.0
        motion = np.array([[1.0, 0, shift - previous], [0, 1.0, 0]]) if t else np.eye(2, 3)
        frames.append(frame(t, [(60 + shift, A)], camera_motion=motion))
    motion_only = TrackerConfig(use_embeddings=False, long_term_enabled=False)
    compensated = track_sequence(frames, motion_only)
    assert {i for t in range(12) for i in ids_of(compensated, t)} == {1}
    ignored = track_sequence(frames, motion_only.replace(camera_motion=False))
    assert sum(len(objects) for objects in ignored) < 6  # every jump breaks the track


def test_motion_only_mode_ignores_embeddings() -> None:
    # Embeddings from another detector mean nothing here: the two people swap them every frame.
    c = unit(0, 0, 1.0)
    frames = [frame(t, [(10 + 2 * t, (A, c)[t % 2]), (120 - 2 * t, (c, A)[t % 2])]) for t in range(20)]
    motion = track_sequence(frames, TrackerConfig(use_embeddings=False, long_term_enabled=False))
    assert [ids_of(motion, t) for t in range(20)] == [[1, 2]] * 20
    fooled = track_sequence(frames, TrackerConfig())
    assert sum(len(objects) for objects in fooled) < 20
    with pytest.raises(HVPSError, match="long_term_enabled: re-ID needs embeddings"):
        TrackerConfig(use_embeddings=False)


def test_ratio_test_and_path_distance_helpers() -> None:
    distance = np.array([[0.1, 0.5], [0.12, 0.2]])
    allowed = np.ones((2, 2), bool)
    # (0, 0) vs its column competitor 0.12: 0.1 > 0.8 * 0.12 -> ambiguous; (1, 1) vs 0.12 in its row too
    assert ambiguous_pairs(distance, allowed, 0.8).tolist() == [[True, True], [True, True]]
    assert ambiguous_pairs(distance, allowed, 0.9).tolist() == [[False, True], [True, True]]
    assert not ambiguous_pairs(distance, allowed, float("inf")).any()
    start, travel = np.array([[0.0, 0.0]]), np.array([[10.0, 0.0]])
    points = np.array([[5.0, 2.0], [14.0, 3.0], [-3.0, 4.0]])
    np.testing.assert_allclose(path_distance(start, travel, points), [[2.0, 5.0, 5.0]])
