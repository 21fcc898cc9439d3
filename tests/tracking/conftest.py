"""Fixtures of the tracking tests: small drawn sequences and their simulated detections."""

from __future__ import annotations

import pytest

from hvps_lightning.data.synthetic.detections import GTFrame, moving_objects_gt, simulate_detections


@pytest.fixture(scope="session")
def easy_gt() -> list[GTFrame]:
    return moving_objects_gt(num_frames=30, num_objects=5, height=72, width=96, seed=3)


@pytest.fixture(scope="session")
def easy_detections(easy_gt: list[GTFrame]) -> list:
    return simulate_detections(easy_gt, seed=3, drop_rate=0.0, box_jitter=0.03, embedding_noise=0.2)
