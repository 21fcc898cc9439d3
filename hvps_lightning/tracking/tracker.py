"""IA-MOT style online tracker (Cai et al. 2020, as used by HVPS section 3.1): numpy and scipy only.

One :meth:`Tracker.update` per frame:

1. **Filter**: detections below ``score_threshold`` are dropped; embeddings are re-normalised.
2. **Camera motion** (``camera_motion``): when the frame carries the affine transform from the
   previous frame (:attr:`FrameDetections.camera_motion`), every track's position, size and
   velocity are moved with it, so motion predictions and re-ID positions follow a panning or
   zooming camera (:mod:`~hvps_lightning.tracking.camera_motion` estimates the transform).
3. **Association** (``association: joint``, the default): one Hungarian assignment
   (``scipy.optimize.linear_sum_assignment``) over every track alive -- live (matched in the
   previous frame), recently lost and long lost -- and every detection. A pair is allowed when
   the labels agree and one of three gates lets it through:

   * *live*: embedding distance to the track's EMA appearance ``<= max_embedding_distance``,
     IoU of the motion-predicted box ``>= min_iou``, centre distance ``<= max_centre_distance``;
   * *short-term retrieval* (``short_term_enabled``, confirmed tracks lost for at most
     ``short_term_frames``): the same with the ``short_term_*`` gates;
   * *long-term re-ID* (``long_term_enabled``, confirmed tracks lost for at most
     ``long_term_frames``, or live ones that no motion gate lets through): the ``gallery_distance``
     of the detection to the track's last ``gallery_size`` embeddings ``<= reid_max_distance``,
     and the detection lies where the person can be: within ``reid_max_centre_distance +
     reid_centre_distance_per_frame * gap`` box extents (the larger side of the track's or
     the detection's box) of the track's path (from where it was last seen to where its
     velocity would have taken it).

   Every pair costs ``(1 - w) * appearance distance + w * (1 - IoU) + age_cost * frames lost``
   (``w = iou_cost_weight``): a pair backed by motion beats a pair backed by appearance alone,
   and of two equal candidates the track seen last wins. No stage runs before another, so a
   lost track cannot take a detection that a better-matching live or lost track claims. A pair
   of a lost track must also pass the ratio test (``reid_ratio``): its appearance distance must
   be at most ``reid_ratio`` times that of every competing allowed pair (another track for the
   same detection, another detection for the same track) -- look-alikes are left unmatched
   rather than guessed, and tracklet re-ID (5.) can join them later on more evidence.

   ``association: cascade`` is the previous release's order: live tracks first, then
   short-term retrieval, then long-term re-ID by appearance alone (no position gate, no
   ratio test), each on what the previous stage left.
4. **Appearance update**: a match updates the track's EMA appearance (``embedding_momentum``)
   and its gallery only when it is confident: embedding distance to the EMA at most
   ``appearance_update_max_distance`` and no other detection overlapping the detection's box
   above IoU ``appearance_update_max_overlap`` (a crop holding two people describes neither).
   A wrong or doubtful match so cannot teach a track another person's appearance.
5. **Tracklet re-ID** (``tracklet_reid_frames`` N > 0, with ``long_term_enabled``): a track
   born in the last N frames (after its first frame) may be merged into a confirmed track that
   was lost before it was born, when the mean embedding of its detections is within
   ``reid_max_distance`` of the lost track's gallery, its position is plausible for the lost
   track (the re-ID position gate) and the pair passes the ratio test. The lost track takes over
   (its id continues from this frame on); the merged tracklet's earlier outputs are listed in
   :attr:`Tracker.merged`, and :func:`track_sequence` relabels them with the lost track's id
   (online, :meth:`Tracker.update` cannot change frames it has returned).
6. **Births**: remaining detections with a score of at least ``birth_score_threshold`` start
   tentative tracks. A tentative track is confirmed, and only then gets an id, after
   ``min_hits`` detections in consecutive frames; it dies on its first miss. Confirmed tracks
   die when lost for more than :attr:`TrackerConfig.max_age` frames (``long_term_frames``,
   or ``short_term_frames`` when re-ID is off).
7. **Output**: one :class:`TrackedObject` per confirmed track matched in this frame. Masks are
   made disjoint (a pixel claimed by several goes to the highest score) on the RLEs, without
   decoding them (:func:`~hvps_lightning.structures.masks.resolve_overlaps`).

``use_embeddings: false`` is the motion-only mode (detections from a detector without
embeddings): pairs are gated and ranked by IoU and centre distance alone, and re-ID is off.

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
    >>> from hvps_lightning.data.synthetic.detections import make_frame
    >>> mask = np.zeros((8, 8), np.uint8); mask[1:5, 1:4] = 1
    >>> tracker = Tracker(TrackerConfig(min_hits=1))
    >>> for name in ("000000", "000001"):
    ...     objects = tracker.update(make_frame(name, [mask], embeddings=np.ones((1, 4))))
    ...     print(name, [(o.track_id, o.box.tolist()) for o in objects])
    000000 [(1, [1.0, 1.0, 4.0, 5.0])]
    000001 [(1, [1.0, 1.0, 4.0, 5.0])]
"""

from __future__ import annotations

import sys
import warnings
from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from hvps_lightning.errors import HVPSError
from hvps_lightning.structures.detections import FrameDetections, TrackedObject
from hvps_lightning.structures.masks import resolve_overlaps
from hvps_lightning.tracking.association import (
    ambiguous_pairs,
    assign,
    box_iou,
    box_size,
    gallery_distance,
    path_distance,
    to_cxcywh,
    to_xyxy,
)
from hvps_lightning.tracking.config import TrackerConfig

__all__ = ["Merge", "SequenceTracker", "TrackedObject", "Tracker", "TrackerConfig", "track_sequence"]


@dataclass(frozen=True, slots=True)
class Merge:
    """A tracklet merged into a lost track (tracklet re-ID): relabel its earlier outputs.

    Attributes:
        old_id: the id the tracklet was output with.
        new_id: the id of the track it continues.
        first_frame: the first frame (update index) the tracklet may have been output in.
        last_frame: the last frame it was output with ``old_id``.
    """

    old_id: int
    new_id: int
    first_frame: int
    last_frame: int


@dataclass
class _Pending:
    """Detections of a tentative track, kept until it is confirmed or dies."""

    objects: list[tuple[int, TrackedObject]] = field(default_factory=list)


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
        #: tracklets merged into lost tracks in the last update (their earlier outputs to relabel).
        self.merged: list[Merge] = []
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
            "_born": np.zeros(capacity, np.int64),
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
        self.merged = []
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
        if cfg.camera_motion and detections.camera_motion is not None:
            self._warp(np.asarray(detections.camera_motion, np.float64))

        slots = np.flatnonzero(self._alive)
        if len(kept) and len(slots):
            if cfg.association == "joint":
                rows, dets = self._associate_joint(slots, boxes, labels, embeddings, frame)
            else:
                rows, dets = self._associate_cascade(slots, boxes, labels, embeddings, frame)
        else:
            rows = dets = np.zeros(0, np.int64)
        det_unmatched = np.ones(len(kept), bool)
        det_unmatched[dets] = False
        trk_unmatched = np.ones(len(slots), bool)
        trk_unmatched[rows] = False
        matched_slots = slots[rows]
        confident = self._confident(matched_slots, dets, boxes, embeddings)
        self._observe(matched_slots, boxes[dets], embeddings[dets], frame, confident)

        # Births.
        newborn = np.flatnonzero(det_unmatched & (scores >= cfg.birth_score_threshold))
        born_slots = self._create(newborn.size, labels[newborn], boxes[newborn], embeddings[newborn], frame)
        all_slots = np.concatenate([matched_slots, born_slots])
        all_dets = np.concatenate([dets, newborn])

        if cfg.tracklet_reid_frames > 0 and cfg.long_term_enabled and cfg.use_embeddings:
            all_slots = self._merge_tracklets(all_slots, frame)

        # Deaths: tentative tracks on their first miss, confirmed ones past max_age.
        unmatched_slots = slots[trk_unmatched]
        unmatched_slots = unmatched_slots[
            self._alive[unmatched_slots] & (self._last_frame[unmatched_slots] < frame)
        ]
        too_old = frame - self._last_frame[unmatched_slots] > cfg.max_age
        dying = unmatched_slots[(self._track_id[unmatched_slots] == 0) | too_old]
        self._kill(dying)

        # Confirmation (ids are handed out here).
        ready = (self._track_id[all_slots] == 0) & (self._hits[all_slots] >= cfg.min_hits)
        newly_confirmed = all_slots[ready]
        for slot in newly_confirmed:
            self._confirm(int(slot))

        return self._emit(all_slots, all_dets, kept, boxes, scores, labels, detections.masks, frame)

    # Association ---------------------------------------------------------------------------
    def _associate_joint(
        self, slots: np.ndarray, boxes: np.ndarray, labels: np.ndarray, embeddings: np.ndarray, frame: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """One assignment over live, lost and long-lost tracks (step 3 of the module docstring)."""
        cfg = self.config
        missed = frame - self._last_frame[slots] - 1
        confirmed = self._track_id[slots] > 0
        live = missed == 0
        short = (
            confirmed & (missed >= 1) & (missed <= cfg.short_term_frames)
            if cfg.short_term_enabled
            else ~live & live
        )
        # Motion gates concern live tracks and those in the short-term window only: long-lost
        # tracks (most of them, with a long re-ID window) skip the dense motion matrices.
        near = np.flatnonzero(live | short)
        shape = (len(slots), len(boxes))
        iou = np.zeros(shape)
        appearance = np.full(shape, 2.0)  # the largest cosine distance; only allowed pairs count
        allowed = np.zeros(shape, bool)
        same_label = self._label[slots][:, None] == labels[None, :]
        weight = cfg.iou_cost_weight if cfg.use_embeddings else 1.0
        if near.size:
            state = self._state[slots[near]]
            predicted = state[:, :4] + state[:, 4:] * (missed[near] + 1)[:, None].astype(np.float64)
            near_iou = box_iou(to_xyxy(predicted), boxes)
            det_centre = (boxes[:, :2] + boxes[:, 2:]) / 2
            centre = (
                np.hypot(
                    predicted[:, None, 0] - det_centre[None, :, 0],
                    predicted[:, None, 1] - det_centre[None, :, 1],
                )
                / box_size(predicted)[:, None]
            )
            if cfg.use_embeddings:
                near_appearance = 1.0 - self._ema[slots[near]] @ embeddings.T
            else:
                near_appearance = np.zeros(near_iou.shape)
            near_live = live[near][:, None]
            min_iou = np.where(near_live, cfg.min_iou, cfg.short_term_min_iou)
            max_centre = np.where(near_live, cfg.max_centre_distance, cfg.short_term_max_centre_distance)
            max_distance = np.where(
                near_live, cfg.max_embedding_distance, cfg.short_term_max_embedding_distance
            )
            allowed[near] = (
                same_label[near]
                & (near_iou >= min_iou)
                & (centre <= max_centre)
                & (near_appearance <= max_distance)
            )
            iou[near] = near_iou
            appearance[near] = near_appearance
        if cfg.long_term_enabled:
            # Lost tracks, and live ones (tentative too) that no motion gate lets through: a box
            # that jumps (a person entering, or partly hidden) may still be found by appearance.
            reid = (confirmed & (missed >= 1) & (missed <= cfg.long_term_frames)) | (
                live & ~allowed.any(axis=1)
            )
            if reid.any():
                extent = (boxes[:, 2:] - boxes[:, :2]).max(axis=1)
                centres = (boxes[:, :2] + boxes[:, 2:]) / 2
                distance = self._reid_pairs(slots, reid, missed, centres, extent, same_label, embeddings)
                better = distance < np.where(allowed, appearance, np.inf)
                appearance = np.where(better, distance, appearance)
                allowed |= np.isfinite(distance)
        if not allowed.any():
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        lost = missed > 0
        if cfg.use_embeddings and lost.any() and np.isfinite(cfg.reid_ratio):
            # A lost track's pair competes with every allowed pair of its row and column, on the
            # appearance distance each came with (EMA for motion pairs, gallery for re-ID pairs).
            ambiguous = ambiguous_pairs(appearance, allowed, cfg.reid_ratio)
            allowed &= ~(lost[:, None] & ambiguous)
        cost = (1.0 - weight) * appearance + weight * (1.0 - iou) + cfg.age_cost * missed[:, None]
        return assign(cost, allowed)

    def _reid_pairs(
        self,
        slots: np.ndarray,
        rows: np.ndarray,
        missed: np.ndarray,
        det_centre: np.ndarray,
        extent: np.ndarray,
        same_label: np.ndarray,
        embeddings: np.ndarray,
    ) -> np.ndarray:
        """Gallery distance of the re-ID pairs that are plausible and within the gate (else inf)."""
        cfg = self.config
        out = np.full(same_label.shape, np.inf)
        where = np.flatnonzero(rows)
        plausible = same_label[where] & self._plausible(slots[where], missed[where] + 1, det_centre, extent)
        keep = plausible.any(axis=1)
        if not keep.any():
            return out
        where, plausible = where[keep], plausible[keep]
        chosen = slots[where]
        # One matrix product for the galleries of every candidate track (tracks x M, detections).
        size = cfg.gallery_size
        distance = 1.0 - (self._gallery[chosen].reshape(-1, embeddings.shape[1]) @ embeddings.T).reshape(
            len(chosen), size, -1
        )
        valid = (np.arange(size)[None, :] < self._gallery_len[chosen][:, None])[:, :, None]
        if cfg.gallery_distance == "min":
            reduced = np.where(valid, distance, np.inf).min(axis=1)
        else:
            reduced = np.where(valid, distance, 0.0).sum(axis=1) / np.maximum(valid.sum(axis=1), 1)
        ok = plausible & (reduced <= cfg.reid_max_distance)
        out[where] = np.where(ok, reduced, np.inf)
        return out

    def _plausible(
        self, slots: np.ndarray, steps: np.ndarray, points: np.ndarray, sizes: np.ndarray
    ) -> np.ndarray:
        """Whether each box centre ``points`` (K, 2) of extent ``sizes`` (K,) may be each track's.

        The question is whether the person of each track can be there after ``steps`` frames.

        Distances are measured in box extents (the larger side of the track's or the detection's
        box): a person emerging from behind an occluder, or entering the image, starts as a
        sliver whose own size says little about how far it may have moved.
        """
        cfg = self.config
        state = self._state[slots]
        travel = state[:, 4:6] * steps[:, None]
        extent = np.maximum(state[:, 2:4].max(axis=1)[:, None], sizes[None, :])
        distance = path_distance(state[:, :2], travel, points) / np.maximum(extent, 1.0)
        return distance <= cfg.reid_max_centre_distance + cfg.reid_centre_distance_per_frame * steps[:, None]

    def _associate_cascade(
        self, slots: np.ndarray, boxes: np.ndarray, labels: np.ndarray, embeddings: np.ndarray, frame: int
    ) -> tuple[np.ndarray, np.ndarray]:
        """The previous release's order: live tracks, then short-term retrieval, then re-ID."""
        cfg = self.config
        missed = frame - self._last_frame[slots] - 1
        confirmed = self._track_id[slots] > 0
        det_unmatched = np.ones(len(boxes), bool)
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
            rows, cols = assign(cost, allowed)
            if rows.size:
                trk_unmatched[tracks[rows]] = False
                det_unmatched[dets[cols]] = False
                matches.append((tracks[rows], dets[cols]))

        # Live tracks and those within the short-term window share one motion affinity.
        short = cfg.short_term_frames if cfg.short_term_enabled else 0
        near = (missed == 0) | (confirmed & (missed <= short))
        if near.any():
            iou, centre, embedding, same_label = self._motion_affinity(
                slots[near], boxes, labels, embeddings, frame
            )
            if not cfg.use_embeddings:
                embedding = np.zeros_like(embedding)
            weight = cfg.iou_cost_weight if cfg.use_embeddings else 1.0
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
                full_distance = np.zeros((int(lost.sum()), len(boxes)))
                full_allowed = np.zeros((int(lost.sum()), len(boxes)), bool)
                full_distance[:, dets], full_allowed[:, dets] = distance, allowed
                match(lost, full_distance, full_allowed)
        if not matches:
            return np.zeros(0, np.int64), np.zeros(0, np.int64)
        return np.concatenate([m[0] for m in matches]), np.concatenate([m[1] for m in matches])

    def _motion_affinity(
        self, slots: np.ndarray, boxes: np.ndarray, labels: np.ndarray, embeddings: np.ndarray, frame: int
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
        """IoU, relative centre distance, embedding distance and label agreement (tracks x detections)."""
        steps = (frame - self._last_frame[slots]).astype(np.float64)
        state = self._state[slots]
        centre_wh = state[:, :4] + state[:, 4:] * steps[:, None]
        iou = box_iou(to_xyxy(centre_wh), boxes)
        det_centre = (boxes[:, :2] + boxes[:, 2:]) / 2
        centre = (
            np.hypot(
                centre_wh[:, None, 0] - det_centre[None, :, 0], centre_wh[:, None, 1] - det_centre[None, :, 1]
            )
            / box_size(centre_wh)[:, None]
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

    # Tracklet re-ID ------------------------------------------------------------------------
    def _merge_tracklets(self, all_slots: np.ndarray, frame: int) -> np.ndarray:
        """Merge young tracklets into lost tracks (step 5 of the module docstring)."""
        cfg = self.config
        age = frame - self._born[all_slots]
        young = all_slots[(age >= 1) & (age < cfg.tracklet_reid_frames)]
        if young.size == 0:
            return all_slots
        lost = np.flatnonzero(
            self._alive
            & (self._track_id > 0)
            & (self._last_frame < frame)
            & (frame - self._last_frame - 1 <= cfg.long_term_frames)
        )
        if lost.size == 0:
            return all_slots
        lost = lost[self._last_frame[lost] < self._born[young].max()]
        if lost.size == 0:
            return all_slots
        # The tracklet's appearance: the mean of its stored embeddings.
        valid = np.arange(cfg.gallery_size)[None, :, None] < self._gallery_len[young][:, None, None]
        mean = np.where(valid, self._gallery[young], 0.0).sum(axis=1)
        mean /= np.maximum(np.linalg.norm(mean, axis=1, keepdims=True), 1e-12)
        allowed = (self._label[lost][:, None] == self._label[young][None, :]) & (
            self._last_frame[lost][:, None] < self._born[young][None, :]
        )
        allowed &= self._plausible(
            lost, frame - self._last_frame[lost], self._state[young, :2], self._state[young, 2:4].max(axis=1)
        )
        if not allowed.any():
            return all_slots
        track_pos, tracklet_pos = np.nonzero(allowed)
        distance = np.full(allowed.shape, np.inf)
        distance[track_pos, tracklet_pos] = gallery_distance(
            self._gallery[lost[track_pos]],
            self._gallery_len[lost[track_pos]],
            mean[tracklet_pos],
            cfg.gallery_distance,
        )
        allowed &= distance <= cfg.reid_max_distance
        allowed &= ~ambiguous_pairs(distance, allowed, cfg.reid_ratio)
        rows, cols = assign(distance, allowed)
        for row, col in zip(rows.tolist(), cols.tolist(), strict=True):
            self._merge(int(lost[row]), int(young[col]), frame)
            all_slots = np.where(all_slots == young[col], lost[row], all_slots)
        return all_slots

    def _merge(self, target: int, tracklet: int, frame: int) -> None:
        """The lost track ``target`` takes over the tracklet (state, appearance, detections)."""
        cfg = self.config
        target_id = int(self._track_id[target])
        tracklet_id = int(self._track_id[tracklet])
        if tracklet_id > 0:
            self.merged.append(Merge(tracklet_id, target_id, int(self._born[tracklet]), frame - 1))
            self._dead_ids.append(tracklet_id)
            self._id_last_used[tracklet_id] = frame - 1
        pending = self._pending.pop(int(self._uid[tracklet]), None)
        if pending is not None:  # its tentative frames come after the target's last one
            for pending_frame, obj in pending.objects:
                obj.track_id = target_id
                self.confirmed_backfill.append((pending_frame, obj))
        self._state[target] = self._state[tracklet]
        self._cov[target] = self._cov[tracklet]
        self._last_frame[target] = self._last_frame[tracklet]
        self._hits[target] += self._hits[tracklet]
        ema = self._ema[target] + self._ema[tracklet]
        self._ema[target] = ema / max(float(np.linalg.norm(ema)), 1e-12)
        for position in range(int(self._gallery_len[tracklet])):
            self._add_to_gallery(np.array([target]), self._gallery[tracklet, position][None])
        self._alive[tracklet] = False
        del cfg

    # Steps ---------------------------------------------------------------------------------
    def _warp(self, transform: np.ndarray) -> None:
        """Move every track with the camera: ``transform`` maps previous-frame pixels to this frame's."""
        if not self._alive.any():
            return
        linear, shift = transform[:, :2], transform[:, 2]
        scale = float(np.sqrt(abs(np.linalg.det(linear))))
        # Every slot, dead ones too: cheaper than gathering the live ones, and harmless.
        state = self._state
        state[:, 0:2] = state[:, 0:2] @ linear.T + shift
        state[:, 4:6] = state[:, 4:6] @ linear.T
        state[:, 2:4] *= scale
        state[:, 6:8] *= scale
        if self.config.motion_model == "kalman":
            jacobian = np.eye(8)
            jacobian[0:2, 0:2] = linear
            jacobian[4:6, 4:6] = linear
            jacobian[[2, 3, 6, 7], [2, 3, 6, 7]] = scale
            self._cov = jacobian @ self._cov @ jacobian.T

    def _confident(
        self, slots: np.ndarray, dets: np.ndarray, boxes: np.ndarray, embeddings: np.ndarray
    ) -> np.ndarray:
        """Which matches may update their track's appearance (step 4 of the module docstring)."""
        cfg = self.config
        confident = np.ones(slots.size, bool)
        if slots.size == 0:
            return confident
        if cfg.appearance_update_max_distance < 2.0:
            distance = 1.0 - np.einsum("nd,nd->n", self._ema[slots], embeddings[dets])
            confident &= distance <= cfg.appearance_update_max_distance
        if cfg.appearance_update_max_overlap < 1.0 and len(boxes) > 1:
            overlap = box_iou(boxes, boxes)
            np.fill_diagonal(overlap, 0.0)
            confident &= overlap.max(axis=1)[dets] <= cfg.appearance_update_max_overlap
        return confident

    def _add_to_gallery(self, slots: np.ndarray, embeddings: np.ndarray) -> None:
        size = self.config.gallery_size
        position = self._gallery_next[slots]
        self._gallery[slots, position] = embeddings
        self._gallery_next[slots] = (position + 1) % size
        self._gallery_len[slots] = np.minimum(self._gallery_len[slots] + 1, size)

    def _observe(
        self, slots: np.ndarray, boxes: np.ndarray, embeddings: np.ndarray, frame: int, confident: np.ndarray
    ) -> None:
        """Update motion of matched tracks, and appearance of the confident matches."""
        if slots.size == 0:
            return
        cfg = self.config
        if confident.any():
            sure = slots[confident]
            sure_embeddings = embeddings[confident]
            momentum = cfg.embedding_momentum
            ema = momentum * self._ema[sure] + (1.0 - momentum) * sure_embeddings
            self._ema[sure] = ema / np.maximum(np.linalg.norm(ema, axis=1, keepdims=True), 1e-12)
            self._add_to_gallery(sure, sure_embeddings)

        steps = (frame - self._last_frame[slots]).astype(np.float64)[:, None]
        observed = to_cxcywh(boxes)
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
        self._born[slots] = frame
        self._last_frame[slots] = frame
        self._ema[slots] = embeddings
        self._gallery[slots, 0] = embeddings
        self._gallery_len[slots] = 1
        self._gallery_next[slots] = 1 % self.config.gallery_size
        state = np.zeros((count, 8))
        state[:, :4] = to_cxcywh(boxes)
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


@dataclass
class _Buffered:
    """A frame the tracker has seen whose outputs may still change (backfill, tracklet relabels)."""

    online: list[TrackedObject]
    backfill: list[TrackedObject] = field(default_factory=list)


class SequenceTracker:
    """The tracker plus what :func:`track_sequence` adds afterwards, frame by frame with a fixed lag.

    :meth:`Tracker.update` cannot change the frames it has returned; two steps of the offline
    result do: tentative frames of a track filled in once it is confirmed
    (``backfill_tentative``) and a merged tracklet's earlier outputs relabelled with the lost
    track's id (tracklet re-ID). Both reach back a bounded number of frames
    (:meth:`required_lag`), so this class keeps the last ``lag`` frames open and hands out each
    frame once nothing can change it any more: the objects are exactly :func:`track_sequence`'s,
    with memory bounded by the lag whatever the sequence's length (``hvps infer`` streams videos
    through it). Only a track kept tentative because every id is taken in its frames
    (more than ``max_track_id`` tracks at once) could backfill further back; such frames are
    dropped with a ``RuntimeWarning``.

    Args:
        config: the tracker parameters (defaults if ``None``).
        lag: frames kept open (``None``: :meth:`required_lag`; a larger value only delays output).

    Example:
        >>> import numpy as np
        >>> from hvps_lightning.data.synthetic.detections import make_frame
        >>> mask = np.zeros((8, 8), np.uint8); mask[1:5, 1:4] = 1
        >>> tracker = SequenceTracker(TrackerConfig(min_hits=2, tracklet_reid_frames=0))
        >>> [len(tracker.push(make_frame(f"{i:06d}", [mask], embeddings=np.ones((1, 4))))) for i in range(3)]
        [0, 1, 1]
        >>> [[o.track_id for o in frame] for frame in tracker.flush()]
        [[1]]
    """

    def __init__(self, config: TrackerConfig | None = None, lag: int | None = None) -> None:
        self.tracker = Tracker(config)
        self.config = self.tracker.config
        needed = self.required_lag(self.config)
        if lag is not None and lag < needed:
            raise HVPSError(f"lag {lag}: this tracker configuration can change frames {needed} back")
        self.lag = needed if lag is None else int(lag)
        self.reset()

    @staticmethod
    def required_lag(config: TrackerConfig) -> int:
        """How many frames back an update can change: backfill and tracklet relabels reach no further.

        A tentative track is confirmed after ``min_hits`` consecutive detections; a tracklet is
        merged (with its tentative frames) while younger than ``tracklet_reid_frames``.
        """
        lag = config.min_hits - 1 if config.backfill_tentative else 0
        if config.tracklet_reid_frames > 0 and config.long_term_enabled and config.use_embeddings:
            lag = max(lag, config.tracklet_reid_frames - 1)
        return max(lag, 0)

    def reset(self) -> None:
        """Forget every track and every open frame: the next push starts a new sequence."""
        self.tracker.reset()
        self._open: deque[_Buffered] = deque()
        self._first = 0  # index in the sequence of the oldest open frame
        self._warned = False

    def push(self, detections: FrameDetections) -> list[list[TrackedObject]]:
        """Track one frame; return the frames now final (oldest first), each sorted by track id.

        Raises:
            HVPSError: for invalid detections (see :meth:`Tracker.update`).
        """
        tracker = self.tracker
        self._open.append(_Buffered(tracker.update(detections)))
        if self.config.backfill_tentative:
            for frame, obj in tracker.confirmed_backfill:
                if self._check_open(frame):
                    self._open[frame - self._first].backfill.append(obj)
        for merge in tracker.merged:
            # A merged tracklet's online outputs carry the lost track's id (the backfilled ones
            # got it when they were listed, as in track_sequence).
            for frame in range(merge.first_frame, merge.last_frame + 1):
                if self._check_open(frame):
                    for obj in self._open[frame - self._first].online:
                        if obj.track_id == merge.old_id:
                            obj.track_id = merge.new_id
        done = []
        while len(self._open) > self.lag:
            done.append(self._close())
        return done

    def flush(self) -> list[list[TrackedObject]]:
        """Return every open frame (the sequence ended), then :meth:`reset`."""
        done = [self._close() for _ in range(len(self._open))]
        self.reset()
        return done

    def _check_open(self, frame: int) -> bool:
        if frame >= self._first:
            return True
        if not self._warned:
            warnings.warn(
                f"tracker: a change to frame {frame}, already handed out (lag {self.lag}); it is dropped",
                RuntimeWarning,
                stacklevel=3,
            )
            self._warned = True
        return False

    def _close(self) -> list[TrackedObject]:
        buffered = self._open.popleft()
        self._first += 1
        current, extra = buffered.online, buffered.backfill
        if extra:
            rles = [o.rle for o in current] + [o.rle for o in extra]
            # Objects output online keep their masks: they outrank every backfilled one.
            priority = np.array([2.0 + o.score for o in current] + [o.score for o in extra])
            resolved, visible = resolve_overlaps(rles, priority)
            for position, obj in enumerate(extra, start=len(current)):
                if visible[position] > 0:
                    obj.rle = resolved[position]
                    current.append(obj)
        current.sort(key=lambda o: o.track_id)
        return current


def track_sequence(
    frames: Iterable[FrameDetections], config: TrackerConfig | None = None
) -> list[list[TrackedObject]]:
    """Track a whole sequence; return the objects of every frame, sorted by track id.

    With ``config.backfill_tentative`` the frames in which a track was still tentative are
    filled in once it is confirmed, their masks trimmed to pixels no other output holds.
    Tracklets merged into lost tracks (tracklet re-ID) carry the lost track's id in every frame.
    The work is :class:`SequenceTracker`'s, with every frame kept open to the end.

    Example:
        >>> track_sequence([], TrackerConfig())
        []
    """
    sequence = SequenceTracker(config, lag=sys.maxsize)
    for detections in frames:
        sequence.push(detections)
    return sequence.flush()
