"""IA-MOT style online tracker (Cai et al. 2020, as used by HVPS section 3.1): numpy and scipy only.

One :meth:`Tracker.update` per frame:

1. **Filter**: detections below ``score_threshold`` are dropped; embeddings are re-normalised.
2. **Live tracks** (matched in the previous frame, tentative or confirmed) are matched to the
   detections with the Hungarian algorithm (``scipy.optimize.linear_sum_assignment``) on
   ``(1 - w) * cosine distance(EMA embedding, detection) + w * (1 - IoU)``, ``w =
   iou_cost_weight``. A pair is allowed only when the labels agree, the embedding distance is
   at most ``max_embedding_distance``, the IoU of the motion-predicted and the detected box is
   at least ``min_iou`` and the centre distance, divided by ``sqrt(w * h)`` of the predicted
   box, is at most ``max_centre_distance``.
3. **Short-term retrieval** (``short_term_enabled``): detections left over are matched the same
   way, with the looser ``short_term_*`` gates, to confirmed tracks still unmatched that were
   lost for at most ``short_term_frames`` frames (or just missed in step 2), using their
   motion-predicted boxes for the current frame.
4. **Long-term re-ID** (``long_term_enabled``): what is still left is matched by appearance
   alone to tracks still unmatched that were lost for up to ``long_term_frames`` frames (or
   just failed the motion gates of steps 2-3, tentative ones included): the distance of a
   detection to a track is the ``gallery_distance`` (min or mean) of its cosine distances to
   the track's gallery of its last ``gallery_size`` embeddings, gated by ``reid_max_distance``.
   A match reconnects the old id.
5. **Births**: remaining detections with a score of at least ``birth_score_threshold`` start
   tentative tracks. A tentative track is confirmed, and only then gets an id, after
   ``min_hits`` detections in consecutive frames; it dies on its first miss. Confirmed tracks
   die when lost for more than :attr:`TrackerConfig.max_age` frames (``long_term_frames``,
   or ``short_term_frames`` when re-ID is off).
6. **Output**: one :class:`TrackedObject` per confirmed track matched in this frame. Masks are
   made disjoint (a pixel claimed by several goes to the highest score) on the RLEs, without
   decoding them (:func:`~hvps_lightning.structures.masks.resolve_overlaps`).

Tentative tracks are not output by :meth:`Tracker.update` (an online tracker cannot know
whether they will survive). Their detections are kept, and when a track is confirmed they
are listed in :attr:`Tracker.confirmed_backfill`; :func:`track_sequence`, which sees the
whole sequence, adds them to their frames when ``backfill_tentative`` is set (trimmed to the
pixels no output of that frame holds), so that the first ``min_hits - 1`` frames of every
track are not lost.

Track ids start at 1 and stay at most ``max_track_id`` (999, below the label divisor 1000 of
the panoptic ids). Ids are handed out at confirmation; dead tracks are never reconnected,
so when a sequence runs past ``max_track_id`` identities, the id of the track that died
longest ago is reused (a ``RuntimeWarning`` is raised once). If no id is free, the lost
track seen longest ago is ended early to free one; if every id is visible in the frame,
the new track stays tentative and unoutput until an id frees up. A track that gets a reused id
backfills only the frames after the last one its id's former track was output in, so an id
never stands twice in one frame.

Example:
    >>> import numpy as np
    >>> from hvps_lightning.tracking.simulate import make_frame
    >>> mask = np.zeros((8, 8), np.uint8); mask[1:5, 1:4] = 1
    >>> tracker = Tracker(TrackerConfig(min_hits=1))
    >>> for name in ("000000", "000001"):
    ...     objects = tracker.update(make_frame(name, [mask], embeddings=np.ones((1, 4))))
    ...     print(name, [(o.track_id, o.box.tolist()) for o in objects])
    000000 [(1, [1.0, 1.0, 4.0, 5.0])]
    000001 [(1, [1.0, 1.0, 4.0, 5.0])]
"""

from __future__ import annotations

import warnings
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy.optimize import linear_sum_assignment

from hvps_lightning.errors import HVPSError
from hvps_lightning.structures.detections import FrameDetections, TrackedObject
from hvps_lightning.structures.masks import resolve_overlaps
from hvps_lightning.tracking.config import TrackerConfig

__all__ = ["TrackedObject", "Tracker", "TrackerConfig", "track_sequence"]

#: cost of a forbidden pair; larger than any allowed cost (costs lie in [0, 2]).
_FORBIDDEN = 1e6


@dataclass
class _Pending:
    """Detections of a tentative track, kept until it is confirmed or dies."""

    objects: list[tuple[int, TrackedObject]] = field(default_factory=list)


def _box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of every box of ``a`` (N, 4) with every box of ``b`` (K, 4), xyxy."""
    overlap = np.clip(
        np.minimum(a[:, None, 2:], b[None, :, 2:]) - np.maximum(a[:, None, :2], b[None, :, :2]), 0, None
    )
    inter = overlap[..., 0] * overlap[..., 1]
    size_a, size_b = a[:, 2:] - a[:, :2], b[:, 2:] - b[:, :2]
    union = (size_a[:, 0] * size_a[:, 1])[:, None] + (size_b[:, 0] * size_b[:, 1])[None, :] - inter
    return inter / np.maximum(union, 1e-12)  # union 0 means inter 0: IoU 0


def _to_cxcywh(boxes: np.ndarray) -> np.ndarray:
    return np.concatenate([(boxes[:, :2] + boxes[:, 2:]) / 2, boxes[:, 2:] - boxes[:, :2]], axis=1)


def _to_xyxy(cxcywh: np.ndarray) -> np.ndarray:
    half = np.maximum(cxcywh[:, 2:], 0) / 2
    return np.concatenate([cxcywh[:, :2] - half, cxcywh[:, :2] + half], axis=1)


def _assign(cost: np.ndarray, allowed: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Hungarian assignment restricted to allowed pairs; returns (rows, cols) of the matches."""
    if cost.size == 0 or not allowed.any():
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    rows, cols = linear_sum_assignment(np.where(allowed, cost, _FORBIDDEN))
    keep = allowed[rows, cols]
    return rows[keep], cols[keep]


class Tracker:
    """Online IA-MOT style tracker (see the module docstring for the algorithm).

    Track state is kept in slot arrays (struct of arrays) so that every step of an update
    is a handful of vectorised numpy operations, whatever the number of objects.

    Args:
        config: the tracker parameters (defaults if ``None``).
    """

    def __init__(self, config: TrackerConfig | None = None) -> None:
        self.config = config if config is not None else TrackerConfig()
        self.reset()

    # State ----------------------------------------------------------------------------------
    def reset(self) -> None:
        """Forget every track: the next update starts a new sequence."""
        self.frame_index = -1
        self._dim: int | None = None
        self._size: tuple[int, int] | None = None
        self._capacity = 0
        self._next_id = 1
        self._next_uid = 0
        self._dead_ids: deque[int] = deque()
        #: for an id freed by a death: the last frame its former track was output in
        self._id_last_used: dict[int, int] = {}
        self._warned_reuse = False
        self._pending: dict[int, _Pending] = {}
        #: (frame index, object) of tentative frames of the tracks confirmed in the last update.
        self.confirmed_backfill: list[tuple[int, TrackedObject]] = []
        self._allocate(0, 0)

    def _allocate(self, capacity: int, dim: int) -> None:
        old = self.__dict__.get("_alive")
        gallery_size = self.config.gallery_size
        new = {
            "_alive": np.zeros(capacity, bool),
            "_uid": np.zeros(capacity, np.int64),
            "_track_id": np.zeros(capacity, np.int64),
            "_label": np.zeros(capacity, np.int64),
            "_hits": np.zeros(capacity, np.int64),
            "_last_frame": np.zeros(capacity, np.int64),
            "_state": np.zeros((capacity, 8), np.float64),  # cx, cy, w, h and their velocities
            "_cov": np.zeros((capacity, 8, 8), np.float64),  # Kalman only
            "_ema": np.zeros((capacity, dim), np.float32),
            "_gallery": np.zeros((capacity, gallery_size, dim), np.float32),
            "_gallery_len": np.zeros(capacity, np.int64),
            "_gallery_next": np.zeros(capacity, np.int64),
        }
        if old is not None and self._capacity:
            n = self._capacity
            for name, array in new.items():
                array[:n] = getattr(self, name)
        for name, array in new.items():
            setattr(self, name, array)
        self._capacity = capacity

    @property
    def num_tracks(self) -> int:
        """Number of tracks alive (tentative, visible or lost)."""
        return int(self._alive.sum())

    # Validation ---------------------------------------------------------------------------
    def _check(self, detections: FrameDetections) -> None:
        detections.validate("tracker input")
        n = len(detections)
        if n == 0:
            return
        where = f"tracker input: frame {detections.frame}"
        dim = int(detections.embeddings.shape[1])
        if self._dim is not None and dim != self._dim:
            raise HVPSError(f"{where}: embeddings have {dim} dimensions, earlier frames had {self._dim}")
        try:
            sizes = {(int(m["size"][0]), int(m["size"][1])) for m in detections.masks}
            if not all(type(m["counts"]) in (str, bytes) for m in detections.masks):
                raise TypeError("counts")
        except (KeyError, TypeError, IndexError, ValueError):
            raise HVPSError(f"{where}: masks must be RLEs {{'size': [H, W], 'counts': str}}") from None
        if len(sizes) != 1:
            raise HVPSError(f"{where}: masks of different sizes {sorted(sizes)}")
        size = sizes.pop()
        if tuple(detections.image_size) not in ((0, 0), size):
            raise HVPSError(f"{where}: masks are {size[0]}x{size[1]}, image_size is {detections.image_size}")
        if self._size is not None and size != self._size:
            raise HVPSError(f"{where}: masks are {size[0]}x{size[1]}, earlier frames were {self._size}")

    # Update -------------------------------------------------------------------------------
    def update(self, detections: FrameDetections) -> list[TrackedObject]:
        """Track one frame; return the confirmed objects of this frame (see the module docstring).

        Raises:
            HVPSError: for invalid detections (mismatched lengths, boxes of negative size,
                non-finite values, malformed RLEs, or sizes that change within a sequence).
        """
        self._check(detections)
        cfg = self.config
        self.frame_index += 1
        self.confirmed_backfill = []
        frame = self.frame_index

        kept = np.flatnonzero(np.asarray(detections.scores) >= cfg.score_threshold)
        boxes = np.asarray(detections.boxes, np.float64)
        scores = np.asarray(detections.scores, np.float64)
        labels = np.asarray(detections.labels).astype(np.int64, copy=False)
        embeddings = np.asarray(detections.embeddings, np.float32)
        if len(kept) < len(detections):
            boxes, scores, labels, embeddings = boxes[kept], scores[kept], labels[kept], embeddings[kept]
        if len(kept):
            norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
            embeddings = embeddings / np.maximum(norms, 1e-12)
            if self._dim is None:
                self._dim = int(embeddings.shape[1])
                self._allocate(self._capacity, self._dim)
            if self._size is None:
                first = detections.masks[0]["size"]
                self._size = (int(first[0]), int(first[1]))

        slots = np.flatnonzero(self._alive)
        missed = frame - self._last_frame[slots] - 1
        confirmed = self._track_id[slots] > 0
        det_unmatched = np.ones(len(kept), bool)
        trk_unmatched = np.ones(len(slots), bool)
        matches: list[tuple[np.ndarray, np.ndarray]] = []  # (track positions in slots, detection indices)

        def match(candidates: np.ndarray, cost: np.ndarray, allowed: np.ndarray) -> None:
            # ``cost``/``allowed``: rows = the tracks flagged in ``candidates``, columns = detections.
            rows_free = trk_unmatched[candidates]
            if not rows_free.any() or not det_unmatched.any():
                return
            if not (rows_free.all() and det_unmatched.all()):
                cost = cost[rows_free][:, det_unmatched]
                allowed = allowed[rows_free][:, det_unmatched]
            tracks = np.flatnonzero(candidates)[rows_free]
            dets = np.flatnonzero(det_unmatched)
            rows, cols = _assign(cost, allowed)
            if rows.size:
                trk_unmatched[tracks[rows]] = False
                det_unmatched[dets[cols]] = False
                matches.append((tracks[rows], dets[cols]))

        if len(kept) and len(slots):
            # Live tracks and those within the short-term window share one motion affinity.
            short = cfg.short_term_frames if cfg.short_term_enabled else 0
            near = (missed == 0) | (confirmed & (missed <= short))
            if near.any():
                iou, centre, embedding, same_label = self._motion_affinity(
                    slots[near], boxes, labels, embeddings, frame
                )
                weight = cfg.iou_cost_weight
                cost = (1.0 - weight) * embedding + weight * (1.0 - iou)
                live = missed[near] == 0
                allowed = (
                    same_label
                    & (iou >= cfg.min_iou)
                    & (centre <= cfg.max_centre_distance)
                    & (embedding <= cfg.max_embedding_distance)
                )
                match(near & (missed == 0), cost[live], allowed[live])
                # Usually every detection found its track above: skip the rest then.
                retrieve = cfg.short_term_enabled and det_unmatched.any()
                if retrieve and (trk_unmatched & near & confirmed).any():
                    retrievable = confirmed[near]
                    allowed = (
                        same_label[retrievable]
                        & (iou[retrievable] >= cfg.short_term_min_iou)
                        & (centre[retrievable] <= cfg.short_term_max_centre_distance)
                        & (embedding[retrievable] <= cfg.short_term_max_embedding_distance)
                    )
                    match(near & confirmed, cost[retrievable], allowed)
            if cfg.long_term_enabled:
                # A live track left unmatched by the motion gates (a partly occluded person's box
                # jumps) is as lost as one missed for frames: appearance alone may reconnect it.
                # (Tentative tracks are never lost for longer: they die on their first miss.)
                lost = (missed <= cfg.long_term_frames) & trk_unmatched
                if lost.any() and det_unmatched.any():
                    dets = np.flatnonzero(det_unmatched)
                    distance, allowed = self._reid_affinity(slots[lost], labels[dets], embeddings[dets])
                    full_distance = np.zeros((int(lost.sum()), len(kept)))
                    full_allowed = np.zeros((int(lost.sum()), len(kept)), bool)
                    full_distance[:, dets], full_allowed[:, dets] = distance, allowed
                    match(lost, full_distance, full_allowed)

        if matches:
            matched_tracks = np.concatenate([m[0] for m in matches])
            matched_dets = np.concatenate([m[1] for m in matches])
        else:
            matched_tracks = matched_dets = np.zeros(0, np.int64)
        matched_slots = slots[matched_tracks]
        self._observe(matched_slots, boxes[matched_dets], embeddings[matched_dets], frame)

        # Births.
        newborn = np.flatnonzero(det_unmatched & (scores >= cfg.birth_score_threshold))
        born_slots = self._create(newborn.size, labels[newborn], boxes[newborn], embeddings[newborn], frame)
        all_slots = np.concatenate([matched_slots, born_slots])
        all_dets = np.concatenate([matched_dets, newborn])

        # Deaths: tentative tracks on their first miss, confirmed ones past max_age.
        unmatched_slots = slots[trk_unmatched]
        too_old = frame - self._last_frame[unmatched_slots] > cfg.max_age
        dying = unmatched_slots[(self._track_id[unmatched_slots] == 0) | too_old]
        self._kill(dying)

        # Confirmation (ids are handed out here).
        ready = (self._track_id[all_slots] == 0) & (self._hits[all_slots] >= cfg.min_hits)
        newly_confirmed = all_slots[ready]
        for slot in newly_confirmed:
            self._confirm(int(slot))

        return self._emit(all_slots, all_dets, kept, boxes, scores, labels, detections.masks, frame)

    # Steps ---------------------------------------------------------------------------------
    def _motion_affinity(
        self, slots: np.ndarray, boxes: np.ndarray, labels: np.ndarray, embeddings: np.ndarray, frame: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """IoU, relative centre distance, embedding distance and label agreement (tracks x detections)."""
        steps = (frame - self._last_frame[slots]).astype(np.float64)
        state = self._state[slots]
        centre_wh = state[:, :4] + state[:, 4:] * steps[:, None]
        predicted = _to_xyxy(centre_wh)
        iou = _box_iou(predicted, boxes)
        size = np.sqrt(np.maximum(centre_wh[:, 2] * centre_wh[:, 3], 1.0))
        det_centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        centre = (
            np.hypot(
                centre_wh[:, None, 0] - det_centre[None, :, 0], centre_wh[:, None, 1] - det_centre[None, :, 1]
            )
            / size[:, None]
        )
        embedding = 1.0 - self._ema[slots] @ embeddings.T
        same_label = self._label[slots][:, None] == labels[None, :]
        return iou, centre, embedding, same_label

    def _reid_affinity(
        self, slots: np.ndarray, labels: np.ndarray, embeddings: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """Gallery distance of lost tracks to detections, and which pairs re-ID allows."""
        cfg = self.config
        valid = np.arange(cfg.gallery_size)[None, :] < self._gallery_len[slots][:, None]  # (T, M)
        distance = 1.0 - self._gallery[slots] @ embeddings.T  # (T, M, K)
        if cfg.gallery_distance == "min":
            reduced = np.where(valid[:, :, None], distance, np.inf).min(axis=1)
        else:
            total = np.where(valid[:, :, None], distance, 0.0).sum(axis=1)
            reduced = total / np.maximum(valid.sum(axis=1), 1)[:, None]
        allowed = (self._label[slots][:, None] == labels[None, :]) & (reduced <= cfg.reid_max_distance)
        return reduced, allowed

    def _observe(self, slots: np.ndarray, boxes: np.ndarray, embeddings: np.ndarray, frame: int) -> None:
        """Update appearance and motion of matched tracks."""
        if slots.size == 0:
            return
        cfg = self.config
        momentum = cfg.embedding_momentum
        ema = momentum * self._ema[slots] + (1.0 - momentum) * embeddings
        self._ema[slots] = ema / np.maximum(np.linalg.norm(ema, axis=1, keepdims=True), 1e-12)
        position = self._gallery_next[slots]
        self._gallery[slots, position] = embeddings
        self._gallery_next[slots] = (position + 1) % cfg.gallery_size
        self._gallery_len[slots] = np.minimum(self._gallery_len[slots] + 1, cfg.gallery_size)

        steps = (frame - self._last_frame[slots]).astype(np.float64)[:, None]
        observed = _to_cxcywh(boxes)
        if cfg.motion_model == "kalman":
            self._kalman_update(slots, observed, steps[:, 0])
        else:
            state = self._state[slots]
            velocity = (observed - state[:, :4]) / steps
            smoothing = np.where(self._hits[slots] >= 2, cfg.velocity_momentum, 0.0)[:, None]
            state[:, 4:] = smoothing * state[:, 4:] + (1.0 - smoothing) * velocity
            state[:, :4] = observed
            self._state[slots] = state
        self._hits[slots] += 1
        self._last_frame[slots] = frame

    def _kalman_update(self, slots: np.ndarray, observed: np.ndarray, steps: np.ndarray) -> None:
        # Constant-velocity Kalman filter on (cx, cy, w, h), noise relative to the box height
        # (as in DeepSORT), predicted over the frames since the last update.
        cfg = self.config
        count = slots.size
        transition = np.tile(np.eye(8), (count, 1, 1))
        transition[:, np.arange(4), np.arange(4) + 4] = steps[:, None]
        mean = np.einsum("nij,nj->ni", transition, self._state[slots])
        height = np.maximum(self._state[slots, 3], 1.0)
        std_pos = cfg.kalman_position_noise * height
        std_vel = cfg.kalman_velocity_noise * height
        process = np.repeat(np.stack([std_pos**2, std_vel**2], axis=1), 4, axis=1)
        cov = transition @ self._cov[slots] @ transition.transpose(0, 2, 1)
        cov[:, np.arange(8), np.arange(8)] += process * steps[:, None]
        innovation_cov = cov[:, :4, :4].copy()
        innovation_cov[:, np.arange(4), np.arange(4)] += (std_pos**2)[:, None]
        gain = np.linalg.solve(innovation_cov, cov[:, :4, :]).transpose(0, 2, 1)  # (n, 8, 4)
        mean = mean + np.einsum("nij,nj->ni", gain, observed - mean[:, :4])
        cov = cov - gain @ cov[:, :4, :]
        self._state[slots] = mean
        self._cov[slots] = cov

    def _create(
        self, count: int, labels: np.ndarray, boxes: np.ndarray, embeddings: np.ndarray, frame: int
    ) -> np.ndarray:
        if count == 0:
            return np.zeros(0, np.int64)
        free = np.flatnonzero(~self._alive)
        if free.size < count:
            self._allocate(max(2 * self._capacity, self._capacity + count, 16), self._dim or 0)
            free = np.flatnonzero(~self._alive)
        slots = free[:count]
        self._alive[slots] = True
        self._uid[slots] = np.arange(self._next_uid, self._next_uid + count)
        self._next_uid += count
        self._track_id[slots] = 0
        self._label[slots] = labels
        self._hits[slots] = 1
        self._last_frame[slots] = frame
        self._ema[slots] = embeddings
        self._gallery[slots, 0] = embeddings
        self._gallery_len[slots] = 1
        self._gallery_next[slots] = 1 % self.config.gallery_size
        state = np.zeros((count, 8))
        state[:, :4] = _to_cxcywh(boxes)
        self._state[slots] = state
        if self.config.motion_model == "kalman":
            height = np.maximum(state[:, 3], 1.0)
            std = np.concatenate(
                [
                    np.repeat((2 * self.config.kalman_position_noise * height)[:, None], 4, 1),
                    np.repeat((10 * self.config.kalman_velocity_noise * height)[:, None], 4, 1),
                ],
                1,
            )
            self._cov[slots] = np.einsum("ni,ij->nij", std**2, np.eye(8))
        return slots

    def _kill(self, slots: np.ndarray) -> None:
        for slot in slots:
            track_id = int(self._track_id[slot])
            if track_id > 0:
                self._dead_ids.append(track_id)
                self._id_last_used[track_id] = int(self._last_frame[slot])
            self._pending.pop(int(self._uid[slot]), None)
        self._alive[slots] = False

    def _confirm(self, slot: int) -> None:
        track_id = self._new_id()
        if track_id is None:
            return
        self._track_id[slot] = track_id
        # A reused id may still stand in the frames this track was tentative in (its former
        # track was output there): backfill only the frames after the former track's last one.
        last_used = self._id_last_used.pop(track_id, -1)
        pending = self._pending.pop(int(self._uid[slot]), None)
        if pending is not None:
            for frame, obj in pending.objects:
                if frame > last_used:
                    obj.track_id = track_id
                    self.confirmed_backfill.append((frame, obj))

    def _new_id(self) -> int | None:
        cfg = self.config
        if self._next_id <= cfg.max_track_id:
            self._next_id += 1
            return self._next_id - 1
        if not self._warned_reuse:
            warnings.warn(
                f"more than {cfg.max_track_id} track ids in one sequence; reusing the ids of dead tracks",
                RuntimeWarning,
                stacklevel=4,
            )
            self._warned_reuse = True
        if not self._dead_ids:
            lost = np.flatnonzero(self._alive & (self._track_id > 0) & (self._last_frame < self.frame_index))
            if lost.size == 0:
                return None
            self._kill(lost[[int(np.argmin(self._last_frame[lost]))]])
        return self._dead_ids.popleft()

    def _emit(
        self,
        slots: np.ndarray,
        dets: np.ndarray,
        kept: np.ndarray,
        boxes: np.ndarray,
        scores: np.ndarray,
        labels: np.ndarray,
        masks: Sequence[dict[str, Any]],
        frame: int,
    ) -> list[TrackedObject]:
        # Plain lists: building ~30 objects per frame from numpy scalars would dominate.
        track_ids = self._track_id[slots].tolist()
        det_list = dets.tolist()
        index_list = kept.tolist()
        score_list = scores.tolist()
        label_list = labels.tolist()
        box_rows = boxes.astype(np.float32)

        def make(track_id: int, det: int, rle: dict[str, Any]) -> TrackedObject:
            index = index_list[det]
            return TrackedObject(track_id, label_list[det], score_list[det], box_rows[det], rle, index)

        output: list[tuple[int, int]] = []
        for slot, track_id, det in zip(slots.tolist(), track_ids, det_list, strict=True):
            if track_id > 0:
                output.append((track_id, det))
            else:  # tentative: kept (untrimmed) until the track is confirmed or dies
                pending = self._pending.setdefault(int(self._uid[slot]), _Pending())
                pending.objects.append((frame, make(0, det, masks[index_list[det]])))
        if not output:
            return []
        output.sort()
        rles = [masks[index_list[det]] for _, det in output]
        resolved, visible = resolve_overlaps(rles, np.array([score_list[det] for _, det in output]))
        keep = ((visible > 0) & (visible >= self.config.min_visible_fraction)).tolist()
        return [
            make(track_id, det, rle)
            for (track_id, det), rle, visible_enough in zip(output, resolved, keep, strict=True)
            if visible_enough
        ]


def track_sequence(
    frames: Iterable[FrameDetections], config: TrackerConfig | None = None
) -> list[list[TrackedObject]]:
    """Track a whole sequence; return the objects of every frame, sorted by track id.

    With ``config.backfill_tentative`` the frames in which a track was still tentative are
    filled in once it is confirmed, their masks trimmed to pixels no other output holds.

    Example:
        >>> track_sequence([], TrackerConfig())
        []
    """
    tracker = Tracker(config)
    cfg = tracker.config
    results: list[list[TrackedObject]] = []
    backfill: dict[int, list[TrackedObject]] = {}
    for detections in frames:
        results.append(tracker.update(detections))
        if cfg.backfill_tentative:
            for frame, obj in tracker.confirmed_backfill:
                backfill.setdefault(frame, []).append(obj)
    for frame, extra in backfill.items():
        current = results[frame]
        rles = [o.rle for o in current] + [o.rle for o in extra]
        # Objects output online keep their masks: they outrank every backfilled one.
        priority = np.array([2.0 + o.score for o in current] + [o.score for o in extra])
        resolved, visible = resolve_overlaps(rles, priority)
        for position, obj in enumerate(extra, start=len(current)):
            if visible[position] > 0:
                obj.rle = resolved[position]
                current.append(obj)
    for objects in results:
        objects.sort(key=lambda o: o.track_id)
    return results
