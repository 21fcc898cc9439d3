"""Random detection streams (empty frames, one object, crowds) keep the tracker's outputs valid."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hvps_lightning.structures.detections import FrameDetections
from hvps_lightning.structures.masks import decode_mask, encode_mask
from hvps_lightning.tracking.tracker import Tracker, TrackerConfig, track_sequence

pytestmark = [
    pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:more than 3 track ids:RuntimeWarning"),
]

HEIGHT, WIDTH, DIM = 16, 20, 6


@st.composite
def detection(draw: st.DrawFn) -> tuple:
    x1 = draw(st.integers(0, WIDTH - 1))
    y1 = draw(st.integers(0, HEIGHT - 1))
    x2 = draw(st.integers(x1, WIDTH))
    y2 = draw(st.integers(y1, HEIGHT))
    score = draw(st.floats(0.0, 1.0))
    label = draw(st.sampled_from([4, 4, 4, 6]))
    embedding = draw(st.lists(st.floats(-1, 1), min_size=DIM, max_size=DIM))
    return (x1, y1, x2, y2), score, label, embedding


@st.composite
def frame(draw: st.DrawFn, index: int) -> FrameDetections:
    count = draw(st.sampled_from([0, 0, 1, 2, 5, 12]))
    items = [draw(detection()) for _ in range(count)]
    masks, boxes = [], []
    for (x1, y1, x2, y2), *_ in items:
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        mask[y1:y2, x1:x2] = 1  # may be empty (zero-size box)
        masks.append(encode_mask(mask))
        boxes.append([x1, y1, x2, y2])
    shift = draw(st.sampled_from([None, (0.0, 0.0, 1.0), (3.0, -2.0, 1.0), (-5.0, 1.0, 1.1)]))
    motion = None if shift is None else np.array([[shift[2], 0, shift[0]], [0, shift[2], shift[1]]])
    return FrameDetections(
        frame=f"{index:06d}",
        boxes=np.asarray(boxes, np.float32).reshape(-1, 4),
        scores=np.asarray([i[1] for i in items], np.float32),
        labels=np.asarray([i[2] for i in items], np.int64),
        masks=masks,
        embeddings=np.asarray([i[3] for i in items], np.float32).reshape(-1, DIM),
        image_size=(HEIGHT, WIDTH),
        camera_motion=motion,
    )


@st.composite
def stream(draw: st.DrawFn) -> list[FrameDetections]:
    return [draw(frame(i)) for i in range(draw(st.integers(1, 8)))]


def _config(short_term_frames: int, longer_by: int, use_embeddings: bool, **values: object) -> TrackerConfig:
    # the re-ID window never shorter than the retrieval window, no re-ID without embeddings
    # (both are config errors)
    if not use_embeddings:
        values["long_term_enabled"] = False
    return TrackerConfig(
        short_term_frames=short_term_frames,
        long_term_frames=short_term_frames + longer_by,
        use_embeddings=use_embeddings,
        **values,
    )


configs = st.builds(
    _config,
    min_hits=st.integers(1, 3),
    short_term_enabled=st.booleans(),
    long_term_enabled=st.booleans(),
    short_term_frames=st.integers(1, 3),
    longer_by=st.integers(0, 4),
    use_embeddings=st.sampled_from([True, True, False]),
    association=st.sampled_from(["joint", "cascade"]),
    camera_motion=st.booleans(),
    tracklet_reid_frames=st.integers(0, 4),
    reid_ratio=st.sampled_from([0.7, 1.0, float("inf")]),
    reid_max_centre_distance=st.sampled_from([0.5, float("inf")]),
    appearance_update_max_overlap=st.sampled_from([0.0, 0.3, 1.0]),
    motion_model=st.sampled_from(["constant_velocity", "kalman"]),
    max_track_id=st.sampled_from([3, 999]),
    gallery_size=st.integers(1, 4),
    gallery_distance=st.sampled_from(["min", "mean"]),
    min_visible_fraction=st.sampled_from([0.0, 0.5]),
)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(stream(), configs)
def test_outputs_stay_valid_on_random_streams(frames: list[FrameDetections], config: TrackerConfig) -> None:
    tracks = track_sequence(frames, config)
    assert len(tracks) == len(frames)
    for detections, objects in zip(frames, tracks, strict=True):
        ids = [o.track_id for o in objects]
        assert len(ids) == len(set(ids)), ids
        assert all(1 <= i <= config.max_track_id for i in ids)
        covered = np.zeros((HEIGHT, WIDTH), int)
        for obj in objects:
            index = obj.detection_index
            assert 0 <= index < len(detections)
            assert detections.scores[index] >= config.score_threshold
            assert obj.label == detections.labels[index]
            np.testing.assert_array_equal(obj.box, detections.boxes[index])
            mask = decode_mask(obj.rle).astype(bool)
            assert mask.shape == (HEIGHT, WIDTH) and mask.any()
            assert not (mask & ~decode_mask(detections.masks[index]).astype(bool)).any()
            covered += mask
        assert covered.max(initial=0) <= 1
        assert len({o.detection_index for o in objects}) == len(objects)


@settings(max_examples=60, deadline=None)
@given(stream())
def test_online_updates_are_deterministic(frames: list[FrameDetections]) -> None:
    first, second = Tracker(), Tracker()
    for detections in frames:
        a = [(o.track_id, o.detection_index, o.rle["counts"]) for o in first.update(detections)]
        b = [(o.track_id, o.detection_index, o.rle["counts"]) for o in second.update(detections)]
        assert a == b


def _rect_detections(
    index: int, rects: list[tuple[int, int, int, int]], embeddings: list[int]
) -> FrameDetections:
    masks = []
    for x1, y1, x2, y2 in rects:
        mask = np.zeros((HEIGHT, WIDTH), np.uint8)
        mask[y1:y2, x1:x2] = 1
        masks.append(encode_mask(mask))
    return FrameDetections(
        frame=f"{index:06d}",
        boxes=np.asarray(rects, np.float32).reshape(-1, 4),
        scores=np.ones(len(rects), np.float32),
        labels=np.full(len(rects), 4, np.int64),
        masks=masks,
        embeddings=np.eye(DIM, dtype=np.float32)[embeddings],
        image_size=(HEIGHT, WIDTH),
    )


def test_a_reused_id_is_not_backfilled_into_frames_where_it_still_stands() -> None:
    # Found by the fuzz test above: 3 ids, 4 people in frame 0; the 4th waits tentative. In frame
    # 1 it is confirmed with the id of the lost track 1, and its backfilled frame-0 object used to
    # stand next to the old track 1 there.
    config = TrackerConfig(min_hits=1, max_track_id=3, short_term_enabled=False, long_term_enabled=False)
    frames = [
        _rect_detections(0, [(0, 0, 2, 2), (4, 0, 6, 2), (8, 0, 10, 2), (12, 0, 14, 2)], [0, 1, 2, 3]),
        _rect_detections(1, [(12, 0, 14, 2)], [3]),
    ]
    with pytest.warns(RuntimeWarning, match="more than 3 track ids"):
        tracks = track_sequence(frames, config)
    first = [o.track_id for o in tracks[0]]
    assert first == [1, 2, 3]  # the 4th person has no free id in frame 0 and is not backfilled
    assert [(o.track_id, o.detection_index) for o in tracks[1]] == [(1, 0)]
