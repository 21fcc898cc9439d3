"""Detections derived from ground truth, for tests, tracker sweeps and benchmarks.

A tracker can be exercised without a network: :func:`simulate_detections` turns ground-truth
objects (:class:`GTFrame`, from MOTS txt with :func:`gt_frames_from_mots` or drawn by
:func:`moving_objects_gt`) into :class:`~hvps_lightning.structures.detections.FrameDetections`
the way a detector errs: boxes jittered, detections dropped, masks eroded, scores drawn at
random, and an embedding per detection that is a per-identity prototype plus noise (so
appearances of different identities differ, and of one identity vary). Everything is seeded.

Example:
    >>> gt = moving_objects_gt(num_frames=3, num_objects=2, height=48, width=64, seed=0)
    >>> frames = simulate_detections(gt, seed=0, drop_rate=0.0)
    >>> [len(f) for f in frames], frames[0].embeddings.shape
    ([2, 2, 2], (2, 128))
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pycocotools import mask as mask_utils
from scipy import ndimage

from hvps_lightning.structures.detections import FrameDetections
from hvps_lightning.structures.masks import decode_mask, encode_mask, mask_boxes, to_coco

#: the person class of MOTChallenge-STEP, the default label of simulated objects.
PERSON_LABEL = 4


@dataclass
class GTFrame:
    """Ground-truth objects of one frame.

    Attributes:
        frame: frame name (file stem).
        image_size: (height, width).
        identities: (N,) int64 identity of each object (its track id in the sequence).
        labels: (N,) int64 semantic class ids.
        rles: N compressed RLEs (``counts`` as str), disjoint.
    """

    frame: str
    image_size: tuple[int, int]
    identities: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    labels: np.ndarray = field(default_factory=lambda: np.zeros(0, np.int64))
    rles: list[dict[str, Any]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.rles)


def make_frame(
    frame: str,
    masks: Sequence[np.ndarray | dict[str, Any]],
    *,
    boxes: np.ndarray | None = None,
    scores: Sequence[float] | np.ndarray | None = None,
    labels: Sequence[int] | np.ndarray | None = None,
    embeddings: np.ndarray | None = None,
    image_size: tuple[int, int] | None = None,
) -> FrameDetections:
    """Build a :class:`FrameDetections` from masks (arrays or RLEs); boxes default to the masks' boxes.

    Scores default to 0.9, labels to :data:`PERSON_LABEL`, embeddings to one-hot vectors of
    the detection index (8-d); embeddings are L2-normalised.
    """
    rles = [m if isinstance(m, dict) else encode_mask(m) for m in masks]
    count = len(rles)
    if image_size is None:
        image_size = (int(rles[0]["size"][0]), int(rles[0]["size"][1])) if rles else (0, 0)
    if embeddings is None:
        embeddings = np.eye(max(count, 1), 8, dtype=np.float32)[:count]
    embeddings = np.asarray(embeddings, np.float32)
    if embeddings.ndim != 2 or embeddings.shape[0] != count:
        embeddings = embeddings.reshape(count, -1) if count else np.zeros((0, 8), np.float32)
    norms = np.linalg.norm(embeddings, axis=1, keepdims=True)
    return FrameDetections(
        frame=frame,
        boxes=mask_boxes(rles) if boxes is None else np.asarray(boxes, np.float32).reshape(-1, 4),
        scores=np.full(count, 0.9, np.float32) if scores is None else np.asarray(scores, np.float32),
        labels=np.full(count, PERSON_LABEL, np.int64) if labels is None else np.asarray(labels, np.int64),
        masks=rles,
        embeddings=embeddings / np.maximum(norms, 1e-12),
        image_size=image_size,
    )


def _morph(rle: dict[str, Any], pixels: int) -> dict[str, Any]:
    """Erode (``pixels`` > 0) or dilate (< 0) a mask, working on its bounding box only."""
    mask = decode_mask(rle)
    x, y, w, h = (int(v) for v in mask_utils.toBbox(to_coco(rle)))
    if w == 0 or h == 0:
        return rle
    margin = abs(pixels) + 1
    y0, x0 = max(0, y - margin), max(0, x - margin)
    y1, x1 = min(mask.shape[0], y + h + margin), min(mask.shape[1], x + w + margin)
    morph = ndimage.binary_erosion if pixels > 0 else ndimage.binary_dilation
    out = np.zeros_like(mask)
    out[y0:y1, x0:x1] = morph(mask[y0:y1, x0:x1], iterations=abs(pixels))
    return encode_mask(out)


def identity_prototypes(identities: Iterable[int], dim: int = 128, seed: int = 0) -> dict[int, np.ndarray]:
    """Return a random unit vector per identity, the same for a given (seed, identity)."""
    out = {}
    for identity in identities:
        vector = np.random.default_rng([seed, int(identity)]).standard_normal(dim)
        out[int(identity)] = (vector / np.linalg.norm(vector)).astype(np.float32)
    return out


def simulate_detections(
    gt: Sequence[GTFrame],
    *,
    seed: int = 0,
    drop_rate: float = 0.1,
    box_jitter: float = 0.05,
    erode_pixels: int = 0,
    embedding_dim: int = 128,
    embedding_noise: float = 0.2,
    score_range: tuple[float, float] = (0.6, 1.0),
    false_positives_per_frame: float = 0.0,
    prototypes: Mapping[int, np.ndarray] | None = None,
    drop: Mapping[str, Iterable[int]] | None = None,
) -> list[FrameDetections]:
    """Turn ground truth into noisy detections, the way a detector errs.

    Args:
        gt: the ground-truth frames of one sequence.
        seed: seed of every random draw.
        drop_rate: probability that an object is not detected in a frame.
        box_jitter: std of the box corner noise, relative to the box width/height.
        erode_pixels: erode each mask by this many pixels, or dilate it if negative (then
            masks of neighbours overlap, as a detector's do); decodes the masks, 0 keeps them.
        embedding_dim: embedding size.
        embedding_noise: norm of the noise added to the identity prototype before
            normalisation (cosine distance of two detections of one identity is about its
            square; of two identities about 1).
        score_range: detection scores are uniform in this range.
        false_positives_per_frame: mean number (Poisson) of clutter detections per frame:
            random rectangles with random embeddings and low scores.
        prototypes: per-identity embedding prototypes (default: :func:`identity_prototypes`).
        drop: frame name -> identities not detected in that frame (scripted misses).

    Returns:
        One :class:`FrameDetections` per GT frame, in order (``extra["identities"]`` holds
        the GT identity of each detection, -1 for clutter).
    """
    rng = np.random.default_rng(seed)
    all_ids = {int(i) for f in gt for i in f.identities}
    if prototypes is None:
        prototypes = identity_prototypes(sorted(all_ids), embedding_dim, seed)
    scripted = {name: {int(i) for i in ids} for name, ids in (drop or {}).items()}
    frames = []
    for gt_frame in gt:
        height, width = gt_frame.image_size
        keep = rng.random(len(gt_frame)) >= drop_rate
        keep &= np.array([int(i) not in scripted.get(gt_frame.frame, ()) for i in gt_frame.identities], bool)
        index = np.flatnonzero(keep)
        rles = [gt_frame.rles[i] for i in index]
        if erode_pixels:
            rles = [_morph(r, erode_pixels) for r in rles]
        boxes = mask_boxes([gt_frame.rles[i] for i in index]).astype(np.float64)
        size = np.concatenate([boxes[:, 2:] - boxes[:, :2]] * 2, axis=1)
        boxes = boxes + rng.standard_normal(boxes.shape) * box_jitter * size
        low, high = np.minimum(boxes[:, :2], boxes[:, 2:]), np.maximum(boxes[:, :2], boxes[:, 2:])
        boxes = np.concatenate([low, high], axis=1)
        identities = gt_frame.identities[index].astype(np.int64)
        noise = rng.standard_normal((len(index), embedding_dim))
        noise *= embedding_noise / np.sqrt(embedding_dim)
        embeddings = np.array([prototypes[int(i)] for i in identities], np.float32).reshape(-1, embedding_dim)
        embeddings = embeddings + noise.astype(np.float32)
        scores = rng.uniform(*score_range, len(index))
        labels = gt_frame.labels[index].astype(np.int64)
        clutter = rng.poisson(false_positives_per_frame) if false_positives_per_frame > 0 else 0
        if clutter:
            extra_rles, extra_boxes = [], []
            for _ in range(clutter):
                h, w = rng.integers(2, max(3, height // 4)), rng.integers(2, max(3, width // 4))
                y, x = rng.integers(0, max(1, height - h)), rng.integers(0, max(1, width - w))
                mask = np.zeros((height, width), np.uint8)
                mask[y : y + h, x : x + w] = 1
                extra_rles.append(encode_mask(mask))
                extra_boxes.append([x, y, x + w, y + h])
            rles += extra_rles
            boxes = np.concatenate([boxes, np.asarray(extra_boxes, np.float64)])
            random_emb = rng.standard_normal((clutter, embedding_dim)).astype(np.float32)
            embeddings = np.concatenate([embeddings, random_emb])
            scores = np.concatenate([scores, rng.uniform(score_range[0] * 0.5, score_range[0], clutter)])
            clutter_label = labels[0] if len(labels) else PERSON_LABEL
            labels = np.concatenate([labels, np.full(clutter, clutter_label)])
            identities = np.concatenate([identities, np.full(clutter, -1)])
        detections = make_frame(
            gt_frame.frame,
            rles,
            boxes=boxes.astype(np.float32),
            scores=scores,
            labels=labels,
            embeddings=embeddings.reshape(len(rles), embedding_dim),
            image_size=(height, width),
        )
        detections.extra["identities"] = identities
        frames.append(detections)
    return frames


def moving_objects_gt(
    num_frames: int,
    num_objects: int,
    height: int = 120,
    width: int = 160,
    *,
    seed: int = 0,
    size_range: tuple[float, float] = (0.15, 0.35),
    speed: float = 0.02,
    label: int = PERSON_LABEL,
    hidden: Mapping[int, Iterable[int]] | None = None,
) -> list[GTFrame]:
    """Draw a sequence of upright elliptic "people" moving at constant velocity.

    Objects bounce off the image borders; nearer objects (drawn later) occlude farther ones,
    so the masks of a frame are disjoint like real ground truth. Identities are 1..N.

    Args:
        num_frames: number of frames (named ``%06d``).
        num_objects: number of objects.
        height: image height.
        width: image width.
        seed: seed of positions, sizes and velocities.
        size_range: object height as a fraction of the image height.
        speed: mean speed, as a fraction of the image width per frame.
        label: the semantic class of every object.
        hidden: identity -> frame indices in which it is absent (occluded or out of view).
    """
    rng = np.random.default_rng(seed)
    obj_h = rng.uniform(*size_range, num_objects) * height
    obj_w = obj_h * rng.uniform(0.35, 0.5, num_objects)
    centre = np.stack([rng.uniform(0, width, num_objects), rng.uniform(0, height, num_objects)], 1)
    angle = rng.uniform(0, 2 * np.pi, num_objects)
    pace = speed * width * rng.uniform(0.5, 1.5, (num_objects, 1))
    velocity = np.stack([np.cos(angle), 0.3 * np.sin(angle)], 1) * pace
    depth_order = rng.permutation(num_objects)
    hidden_sets = {int(k): {int(f) for f in v} for k, v in (hidden or {}).items()}
    frames = []
    for t in range(num_frames):
        owner = np.zeros((height, width), np.int64)
        extents: dict[int, tuple[slice, slice]] = {}
        for k in depth_order:
            if t in hidden_sets.get(int(k) + 1, ()):
                continue
            cx, cy = centre[k]
            half_w, half_h = obj_w[k] / 2, obj_h[k] / 2
            # Only the object's bounding box is drawn: large frames stay cheap.
            y0, y1 = max(0, int(cy - half_h)), min(height, int(np.ceil(cy + half_h)) + 1)
            x0, x1 = max(0, int(cx - half_w)), min(width, int(np.ceil(cx + half_w)) + 1)
            if y0 >= y1 or x0 >= x1:
                continue
            ys, xs = np.ogrid[y0:y1, x0:x1]
            inside = ((xs - cx) / half_w) ** 2 + ((ys - cy) / half_h) ** 2 <= 1.0
            owner[y0:y1, x0:x1][inside] = k + 1
            extents[k + 1] = (slice(y0, y1), slice(x0, x1))
        identities, rles = [], []
        for identity in range(1, num_objects + 1):
            if identity not in extents:
                continue
            rows, cols = extents[identity]
            crop = owner[rows, cols] == identity
            if crop.any():
                mask = np.zeros((height, width), np.uint8)
                mask[rows, cols] = crop
                identities.append(identity)
                rles.append(encode_mask(mask))
        frames.append(
            GTFrame(
                frame=f"{t:06d}",
                image_size=(height, width),
                identities=np.asarray(identities, np.int64),
                labels=np.full(len(identities), label, np.int64),
                rles=rles,
            )
        )
        centre += velocity
        for axis, limit in ((0, width), (1, height)):
            low, high = centre[:, axis] < 0, centre[:, axis] > limit
            velocity[low | high, axis] *= -1
            centre[:, axis] = np.clip(centre[:, axis], 0, limit)
    return frames


def gt_frames_from_mots(
    objects: Iterable[Any],
    labels: Mapping[int, int],
    frame_names: Sequence[str] | None = None,
) -> list[GTFrame]:
    """Group MOTS txt objects (``MOTSObject``) into :class:`GTFrame` s.

    Args:
        objects: objects of one sequence (ignore regions are skipped).
        labels: MOTS class id -> semantic class id (e.g. ``{2: 4}`` for MOTChallenge-STEP).
        frame_names: the frame names of the sequence, frame ``int(name)``; by default the
            frames from the first to the last object, named ``%06d``.

    Objects of MOTS classes not in ``labels`` are skipped; identity = ``obj_id % 1000``.
    """
    by_frame: dict[int, list[Any]] = {}
    size: tuple[int, int] | None = None
    for obj in objects:
        if obj.class_id not in labels:
            continue
        by_frame.setdefault(int(obj.frame), []).append(obj)
        size = (int(obj.rle["size"][0]), int(obj.rle["size"][1]))
    if frame_names is None:
        frame_names = [f"{i:06d}" for i in range(min(by_frame, default=0), max(by_frame, default=-1) + 1)]
    frames = []
    for name in frame_names:
        objs = sorted(by_frame.get(int(name), []), key=lambda o: o.obj_id)
        frame_size = (int(objs[0].rle["size"][0]), int(objs[0].rle["size"][1])) if objs else (size or (0, 0))
        frames.append(
            GTFrame(
                frame=name,
                image_size=frame_size,
                identities=np.asarray([o.obj_id % 1000 for o in objs], np.int64),
                labels=np.asarray([labels[o.class_id] for o in objs], np.int64),
                rles=[{"size": list(o.rle["size"]), "counts": o.rle["counts"]} for o in objs],
            )
        )
    return frames


def track_identities(
    detections: Sequence[FrameDetections], tracks: Sequence[Sequence[Any]]
) -> dict[int, list[tuple[int, int]]]:
    """Which track ids each simulated identity got: identity -> [(frame index, track id), ...].

    Uses ``extra["identities"]`` of :func:`simulate_detections` frames and each tracked
    object's ``detection_index``; clutter (identity -1) is left out.
    """
    out: dict[int, list[tuple[int, int]]] = {}
    for index, (frame, objects) in enumerate(zip(detections, tracks, strict=True)):
        identities = frame.extra["identities"]
        for obj in objects:
            identity = int(identities[obj.detection_index])
            if identity >= 0:
                out.setdefault(identity, []).append((index, int(obj.track_id)))
    return out
