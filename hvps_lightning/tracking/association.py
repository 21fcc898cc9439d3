"""Geometry and assignment helpers of the tracker's association: numpy and scipy only.

Boxes are ``x1, y1, x2, y2``; track states hold ``cx, cy, w, h`` (and their velocities).
Centre distances are in units of a box size ``sqrt(w * h)``; embedding distances are cosine
distances ``1 - cos`` of unit vectors.

Example:
    >>> import numpy as np
    >>> box_iou(np.array([[0.0, 0, 2, 2]]), np.array([[1.0, 0, 3, 2]])).round(3).tolist()
    [[0.333]]
    >>> path_distance(np.zeros((1, 2)), np.array([[10.0, 0]]), np.array([[5.0, 3], [-4, 0]])).tolist()
    [[3.0, 4.0]]
"""

from __future__ import annotations

import numpy as np
from scipy.optimize import linear_sum_assignment

#: cost of a forbidden pair; larger than any allowed cost.
FORBIDDEN = 1e6


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N, 4) with every box of ``b`` (K, 4), xyxy."""
    overlap = np.clip(
        np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None
    )
    inter = overlap[..., 0] * overlap[..., 1]
    size_a, size_b = a[:, 2:] - a[:, :2], b[:, 2:] - b[:, :2]
    union = (size_a[:, 0] * size_a[:, 1])[:, None] + (size_b[:, 0] * size_b[:, 1])[None, :] - inter
    return inter / np.maximum(union, 1e-12)  # union 0 means inter 0: IoU 0


def to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    """Xyxy -> centre x, centre y, width, height."""
    return np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], axis=1)


def to_xyxy(cxcywh: np.ndarray) -> np.ndarray:
    """Centre x, centre y, width, height -> xyxy (negative sizes clipped to 0)."""
    half = np.maximum(cxcywh[:, 2:], 0) / 2
    return np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], axis=1)


def box_size(cxcywh: np.ndarray) -> np.ndarray:
    """``sqrt(w * h)`` of each state (at least 1 pixel)."""
    return np.sqrt(np.maximum(cxcywh[:, 2] * cxcywh[:, 3], 1.0))


def assign(cost: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian assignment restricted to allowed pairs; returns (rows, cols) of the matches."""
    if cost.size == 0 or not allowed.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows, cols = linear_sum_assignment(np.where(allowed, cost, FORBIDDEN))
    keep = allowed[rows, cols]
    return rows[keep], cols[keep]


def path_distance(start: np.ndarray, travel: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Distance of every point (K, 2) to every segment ``start -> start + travel`` (T, 2): (T, K).

    A track lost for a while either stopped (at ``start``) or kept walking (to ``start +
    travel``, its velocity times the gap) or something in between: the segment covers both.
    """
    off_x = points[None, :, 0] - start[:, 0:1]  # (T, K)
    off_y = points[None, :, 1] - start[:, 1:2]
    travel_x, travel_y = travel[:, 0:1], travel[:, 1:2]
    length = np.maximum(travel_x**2 + travel_y**2, 1e-12)
    along = np.clip((off_x * travel_x + off_y * travel_y) / length, 0.0, 1.0)
    return np.hypot(off_x - along * travel_x, off_y - along * travel_y)


def ambiguous_pairs(distance: np.ndarray, allowed: np.ndarray, ratio: float) -> np.ndarray:
    """Pairs that fail the ratio test: ``d > ratio * d'`` for a competing allowed pair ``d'``.

    Competitors of a pair (t, k) are the other allowed pairs of its row (track t with another
    detection) and of its column (another track with detection k) -- Lowe's ratio test made
    symmetric: a match stands only when it is clearly better than every alternative.

    Args:
        distance: (T, K) appearance distances.
        allowed: (T, K) pairs that passed their gates.
        ratio: in (0, 1]; a non-finite ratio turns the test off.
    """
    if not np.isfinite(ratio) or distance.size == 0:
        return np.zeros(distance.shape, bool)
    d = np.where(allowed, distance, np.inf)
    out = np.zeros(d.shape, bool)
    for axis in (0, 1):
        if d.shape[axis] < 2:
            continue
        two = np.partition(d, 1, axis=axis)
        best = np.take(two, [0], axis=axis)
        second = np.take(two, [1], axis=axis)
        # The competitor of the best is the second best; of any other, the best.
        competitor = np.where(d <= best, second, best)
        out |= d > ratio * competitor
    return out & allowed


def gallery_distance(
    gallery: np.ndarray, lengths: np.ndarray, embeddings: np.ndarray, reduce: str
) -> np.ndarray:
    """Distance of paired galleries (P, M, D) (first ``lengths`` rows valid) to embeddings (P, D).

    ``reduce`` is ``min`` (the closest stored appearance) or ``mean``.
    """
    if gallery.shape[0] == 0:
        return np.zeros(0)
    distance = 1.0 - np.matmul(gallery, embeddings[:, :, None])[:, :, 0]  # (P, M)
    valid = np.arange(gallery.shape[1])[None, :] < lengths[:, None]
    if reduce == "min":
        return np.where(valid, distance, np.inf).min(axis=1)
    return np.where(valid, distance, 0.0).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
