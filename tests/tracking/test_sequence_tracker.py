"""`SequenceTracker`: `track_sequence`'s result frame by frame, a bounded number of frames behind."""

from __future__ import annotations

import copy

import numpy as np
import pytest

from hvps_lightning.data.synthetic.detections import make_frame
from hvps_lightning.data.synthetic.tracking_workloads import WORKLOADS, simulate_scene
from hvps_lightning.errors import HVPSError
from hvps_lightning.structures.detections import TrackedObject
from hvps_lightning.tracking.tracker import SequenceTracker, Tracker, TrackerConfig, track_sequence


def _key(frames: list[list[TrackedObject]]) -> list[list[tuple]]:
    return [[(o.track_id, o.label, o.score, o.rle["counts"], o.detection_index) for o in f] for f in frames]


@pytest.fixture(scope="module")
def occlusion_scene() -> object:
    """People hidden behind pillars: tentative frames are backfilled and a tracklet is merged (re-ID)."""
    spec = WORKLOADS["occlusion"].replace(num_frames=100, people=16, height=180, width=320)
    return simulate_scene(spec, seed=1)


@pytest.mark.parametrize(
    "config",
    [
        TrackerConfig(),
        TrackerConfig(min_hits=3, tracklet_reid_frames=14),
        TrackerConfig(association="cascade"),
    ],
    ids=["default", "longer-lag", "cascade"],
)
def test_streamed_frames_equal_track_sequence(occlusion_scene: object, config: TrackerConfig) -> None:
    detections = occlusion_scene.detections  # type: ignore[attr-defined]
    online = Tracker(config)
    merges = backfilled = 0
    for frame in copy.deepcopy(detections):
        online.update(frame)
        merges += len(online.merged)
        backfilled += len(online.confirmed_backfill)
    if config.association == "joint" and config.min_hits == 2:
        assert merges >= 1 and backfilled > 0  # both offline steps are exercised
    expected = _key(track_sequence(copy.deepcopy(detections), config))
    streamed: list[list[TrackedObject]] = []
    tracker = SequenceTracker(config)
    behind = []
    for index, frame in enumerate(copy.deepcopy(detections)):
        streamed += tracker.push(frame)
        behind.append(index + 1 - len(streamed))
    streamed += tracker.flush()
    assert _key(streamed) == expected
    assert max(behind) == tracker.lag == max(config.min_hits - 1, config.tracklet_reid_frames - 1)


def test_the_lag_follows_the_configuration() -> None:
    assert SequenceTracker.required_lag(TrackerConfig(backfill_tentative=False, tracklet_reid_frames=0)) == 0
    assert SequenceTracker.required_lag(TrackerConfig(min_hits=4, tracklet_reid_frames=0)) == 3
    assert SequenceTracker.required_lag(TrackerConfig(long_term_enabled=False, min_hits=2)) == 1
    with pytest.raises(HVPSError, match="lag 0: this tracker configuration can change frames 9 back"):
        SequenceTracker(TrackerConfig(), lag=0)


def test_frames_come_out_once_nothing_can_change_them_and_flush_resets() -> None:
    mask = np.zeros((8, 8), np.uint8)
    mask[1:5, 1:4] = 1
    tracker = SequenceTracker(TrackerConfig(min_hits=2, tracklet_reid_frames=0))
    out = [tracker.push(make_frame(f"{i:06d}", [mask], embeddings=np.ones((1, 4)))) for i in range(3)]
    # frame 0 waits for frame 1, which confirms the track and backfills frame 0
    assert [len(o) for o in out] == [0, 1, 1]
    assert [o.track_id for o in out[1][0]] == [1]
    assert [[o.track_id for o in f] for f in tracker.flush()] == [[1]]
    again = tracker.push(make_frame("000000", [mask], embeddings=np.ones((1, 4))))
    assert again == [] and tracker.tracker.frame_index == 0  # a new sequence
