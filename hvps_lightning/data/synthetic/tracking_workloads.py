"""Hard simulated street scenes: ground truth and detections as hard as a real detector's.

The easy simulator (:mod:`hvps_lightning.data.synthetic.detections`) gives every identity an
independent random embedding, so two people sit at cosine distance ~1.0 and any loose gate
looks harmless. Real re-ID features share directions (every crop is "a pedestrian"), people in
similar clothes look alike, and occlusion mixes the occluder into the crop. This module draws
whole scenes with those properties:

* **Walkers** on a ground plane (size grows towards the bottom of the image), entering and
  leaving at the borders, walking left or right so that paths cross, with a heading that
  drifts (non-linear walks), speed changes and stops.
* **Occluders**: static pillars in front of everyone, wide enough that a walker stays fully
  hidden for ``occluded_frames`` frames, and low walls hiding the legs (boxes jump). Walkers
  occlude each other by depth (nearer = lower in the image).
* **A panning (and slightly zooming) camera**; the true frame-to-frame affine transform is
  returned, and stored with each frame's detections (``FrameDetections.camera_motion``) with
  a small estimation error, as :mod:`~hvps_lightning.tracking.camera_motion` would give it.
* **Detections**: misses (random and more likely the less is visible), masks of the visible
  part of a jittered silhouette (so neighbours' masks overlap as a detector's do), scores that
  drop with visibility, and false positives next to real people with embeddings near theirs.
* **Embeddings** (``appearance="hard"``): identity vectors ``alpha * shared + beta * group +
  rest`` (a direction every person shares, look-alike groups), a slow per-identity drift (pose,
  light), per-detection noise, and the occluders' appearance mixed in by the covered fraction.
  Cosine distances of different people spread over ~0.3-1.0, of one person ~0.05-0.35.
  ``appearance="easy"`` keeps the old model (independent prototypes plus noise).

Masks are built as pycocotools polygons and RLE operations: no full-frame array is drawn, so
1,000 frames at 1080p with 30 people take seconds.

Example:
    >>> scene = simulate_scene(SceneSpec(num_frames=5, people=3, height=90, width=160), seed=0)
    >>> len(scene.gt), len(scene.detections), scene.camera_motion.shape
    (5, 5, (5, 2, 3))
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
from pycocotools import mask as mask_utils

from hvps_lightning.data.synthetic.detections import PERSON_LABEL, GTFrame, make_frame
from hvps_lightning.structures.detections import FrameDetections
from hvps_lightning.structures.masks import from_coco, rle_subtract

Appearance = Literal["hard", "easy"]


@dataclass(frozen=True)
class SceneSpec:
    """Parameters of a simulated scene (see the module docstring).

    Attributes:
        num_frames: frames of the sequence.
        people: walkers in view at a time (kept about constant by births at the borders).
        height: image height.
        width: image width.
        person_height: (far, near) walker height as a fraction of the image height.
        speed: (low, high) walking speed in walker heights per frame.
        turn_rate: std of the per-frame heading change (radians).
        stop_rate: probability per frame that a walker stops (for 10-60 frames).
        pillars: pillars (full-height occluders) in view at a time, on average.
        occluded_frames: (low, high) frames a walker of median speed stays hidden behind a pillar.
        walls: low walls (hide the lower 45% of the walkers behind them) in view, on average.
        pan: largest camera pan speed, as a fraction of the image width per frame.
        zoom: amplitude of the camera's slow zoom (relative scale change).
        camera_noise: std (pixels at 1080 rows) of the error of the stored camera transforms.
        miss_rate: probability that a fully visible walker is not detected.
        min_visible: walkers showing less than this fraction of themselves are not in the
            ground truth (and not detected).
        false_positives: mean false positives per frame (next to real people, look-alike).
        box_jitter: std of the detected silhouette's box corners, relative to its size.
        appearance: ``hard`` (shared direction, look-alikes, drift, occlusion) or ``easy``.
        look_alike_fraction: fraction of identities in look-alike groups (hard appearance).
        embedding_noise: norm of the per-detection embedding noise.
        embedding_dim: embedding size.
    """

    num_frames: int = 200
    people: int = 12
    height: int = 1080
    width: int = 1920
    person_height: tuple[float, float] = (0.14, 0.36)
    speed: tuple[float, float] = (0.01, 0.018)
    turn_rate: float = 0.04
    stop_rate: float = 0.002
    pillars: float = 0.0
    occluded_frames: tuple[int, int] = (10, 60)
    walls: float = 0.0
    pan: float = 0.0
    zoom: float = 0.0
    camera_noise: float = 0.3
    miss_rate: float = 0.03
    min_visible: float = 0.25
    false_positives: float = 0.3
    box_jitter: float = 0.03
    appearance: Appearance = "hard"
    look_alike_fraction: float = 0.4
    embedding_noise: float = 0.35
    embedding_dim: int = 128

    def replace(self, **changes: Any) -> SceneSpec:
        """Return a copy with some fields changed."""
        return dataclasses.replace(self, **changes)


#: the benchmark workloads (benchmarks/tracker_quality.py): a crowd of ~30 people crossing
#: under a slowly panning camera, and people hidden 10-60 frames behind pillars.
WORKLOADS: dict[str, SceneSpec] = {
    "crowd": SceneSpec(num_frames=1000, people=46, pan=0.002, zoom=0.01, pillars=0.0, walls=0.5),
    "occlusion": SceneSpec(
        num_frames=1000, people=40, pan=0.003, zoom=0.01, pillars=2.5, walls=1.0, false_positives=1.0
    ),
}


@dataclass
class Scene:
    """A simulated sequence.

    Attributes:
        gt: ground truth per frame (visible masks, disjoint; identities from 1).
        detections: detections per frame; ``extra["identities"]`` holds the identity of each
            (-1 for false positives), ``extra["visible"]`` its visible fraction, and
            ``camera_motion`` the (noisy) transform from the previous frame.
        camera_motion: (F, 2, 3) true affine transforms, previous image -> this image
            (identity for the first frame).
    """

    gt: list[GTFrame]
    detections: list[FrameDetections]
    camera_motion: np.ndarray = field(default_factory=lambda: np.zeros((0, 2, 3)))


def _ellipse(box: np.ndarray, points: int = 16) -> list[float]:
    """Polygon (flat x, y list) of the ellipse inscribed in an xyxy box."""
    angle = np.linspace(0, 2 * np.pi, points, endpoint=False)
    cx, cy = (box[0] + box[2]) / 2, (box[1] + box[3]) / 2
    rx, ry = (box[2] - box[0]) / 2, (box[3] - box[1]) / 2
    return np.stack([cx + rx * np.cos(angle), cy + ry * np.sin(angle)], 1).ravel().tolist()


def _polygon_rle(polygon: list[float], height: int, width: int) -> dict[str, Any]:
    clipped = np.asarray(polygon).reshape(-1, 2)
    clipped = np.stack([clipped[:, 0].clip(0, width), clipped[:, 1].clip(0, height)], 1).ravel().tolist()
    return mask_utils.frPyObjects([clipped], height, width)[0]


def _boxes_meet(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return (np.minimum(a[:, None, 2], b[None, :, 2]) > np.maximum(a[:, None, 0], b[None, :, 0])) & (
        np.minimum(a[:, None, 3], b[None, :, 3]) > np.maximum(a[:, None, 1], b[None, :, 1])
    )


def _covered_fraction(box: np.ndarray, others: np.ndarray) -> np.ndarray:
    """Fraction of ``box`` (4,) covered by each of ``others`` (K, 4)."""
    if others.size == 0:
        return np.zeros(0)
    w = np.clip(np.minimum(box[2], others[:, 2]) - np.maximum(box[0], others[:, 0]), 0, None)
    h = np.clip(np.minimum(box[3], others[:, 3]) - np.maximum(box[1], others[:, 1]), 0, None)
    return w * h / max((box[2] - box[0]) * (box[3] - box[1]), 1e-9)


class _Appearance:
    """Identity embeddings: hard (shared direction, look-alike groups, drift) or easy."""

    def __init__(self, spec: SceneSpec, rng: np.random.Generator) -> None:
        self.spec = spec
        self.rng = rng
        dim = spec.embedding_dim
        self.shared = self._unit(rng.standard_normal(dim))
        self.groups: list[np.ndarray] = []
        self.group_sizes: list[int] = []
        self.vectors: dict[int, np.ndarray] = {}
        self.drift: dict[int, tuple[np.ndarray, np.ndarray, float, float]] = {}

    @staticmethod
    def _unit(vector: np.ndarray) -> np.ndarray:
        return vector / np.linalg.norm(vector)

    def add(self, identity: int) -> None:
        spec, rng, dim = self.spec, self.rng, self.spec.embedding_dim
        own = self._unit(rng.standard_normal(dim))
        if spec.appearance == "easy":
            self.vectors[identity] = own
            return
        alpha = rng.uniform(0.2, 0.65)
        beta = 0.0
        group = np.zeros(dim)
        if rng.random() < spec.look_alike_fraction:
            open_groups = [k for k, size in enumerate(self.group_sizes) if size < 4]
            if open_groups and rng.random() < 0.7:
                k = int(rng.choice(open_groups))
            else:
                self.groups.append(self._unit(rng.standard_normal(dim)))
                self.group_sizes.append(0)
                k = len(self.groups) - 1
            self.group_sizes[k] += 1
            group = self.groups[k]
            beta = rng.uniform(0.55, 0.75)
        rest = np.sqrt(max(1.0 - alpha**2 - beta**2, 0.05))
        self.vectors[identity] = self._unit(alpha * self.shared + beta * group + rest * own)
        axes = (self._unit(rng.standard_normal(dim)), self._unit(rng.standard_normal(dim)))
        self.drift[identity] = (*axes, rng.uniform(0.005, 0.03), rng.uniform(0, 2 * np.pi))

    def at(self, identity: int, frame: int) -> np.ndarray:
        """The identity's appearance in a frame (hard: drifting slowly with pose and light)."""
        vector = self.vectors[identity]
        if self.spec.appearance == "easy":
            return vector
        first, second, rate, phase = self.drift[identity]
        angle = rate * frame + phase
        return self._unit(vector + 0.3 * (np.cos(angle) * first + np.sin(angle) * second))


def look_alike_prototypes(
    identities: list[int] | np.ndarray, dim: int = 128, seed: int = 0, look_alike_fraction: float = 0.4
) -> dict[int, np.ndarray]:
    """Hard identity embeddings (shared direction, look-alike groups) for the easy simulator.

    A drop-in for :func:`~hvps_lightning.data.synthetic.detections.identity_prototypes`: pass the
    result as ``prototypes`` to :func:`~hvps_lightning.data.synthetic.detections.simulate_detections`
    to give ground-truth-derived detections (e.g. of a generated dataset) realistic appearances.
    """
    spec = SceneSpec(embedding_dim=dim, look_alike_fraction=look_alike_fraction)
    appearance = _Appearance(spec, np.random.default_rng(seed))
    out = {}
    for identity in identities:
        appearance.add(int(identity))
        out[int(identity)] = appearance.vectors[int(identity)].astype(np.float32)
    return out


def _camera_path(spec: SceneSpec, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """World x of the image centre and the zoom scale per frame."""
    count = spec.num_frames
    velocity = np.zeros(count)
    v = 0.0
    for t in range(count):  # slowly varying pan speed (Ornstein-Uhlenbeck), bounded
        v += -0.02 * v + 0.15 * spec.pan * spec.width * rng.standard_normal()
        v = float(np.clip(v, -spec.pan * spec.width, spec.pan * spec.width))
        velocity[t] = v
    centre_x = spec.width / 2 + np.cumsum(velocity) - velocity[0]
    scale = 1.0 + spec.zoom * np.sin(np.arange(count) * 2 * np.pi / 400.0 + rng.uniform(0, 2 * np.pi))
    return centre_x, scale


def _affine(centre_x: np.ndarray, scale: np.ndarray, spec: SceneSpec, t: int) -> np.ndarray:
    """Transform of image coordinates from frame t - 1 to frame t (identity for t = 0)."""
    if t == 0:
        return np.array([[1.0, 0, 0], [0, 1.0, 0]])
    ratio = scale[t] / scale[t - 1]
    centre = np.array([spec.width / 2, spec.height / 2])
    shift = centre - ratio * centre + scale[t] * np.array([centre_x[t - 1] - centre_x[t], 0.0])
    return np.array([[ratio, 0.0, shift[0]], [0.0, ratio, shift[1]]])


def simulate_scene(spec: SceneSpec | str = "crowd", seed: int = 0) -> Scene:
    """Draw a scene and its detections (deterministic for a seed).

    Args:
        spec: the scene parameters, or the name of a :data:`WORKLOADS` entry.
        seed: seed of every random draw.
    """
    if isinstance(spec, str):
        spec = WORKLOADS[spec]
    rng = np.random.default_rng(seed)
    height, width = spec.height, spec.width
    appearance = _Appearance(spec, rng)
    centre_x, scale = _camera_path(spec, rng)
    horizon = 0.3 * height  # feet lie between the bottom of the image and a bit below the horizon
    ground = (horizon + 0.25 * height, height * 1.02)
    far, near = spec.person_height

    def person_height(foot_y: np.ndarray) -> np.ndarray:
        return height * (far + (near - far) * (foot_y - ground[0]) / (ground[1] - ground[0]))

    # Occluders in world coordinates, spread over the whole stretch the camera visits.
    world_low = float(centre_x.min()) - width
    world_high = float(centre_x.max()) + width
    span = world_high - world_low
    median_height = height * (far + near) / 2
    median_speed = median_height * sum(spec.speed) / 2
    pillars = []
    for _ in range(rng.poisson(spec.pillars * span / width)):
        hidden = rng.uniform(*spec.occluded_frames)
        pillar_width = 0.4 * median_height + hidden * median_speed
        x = rng.uniform(world_low, world_high)
        pillars.append((x, x + pillar_width))
    walls = []
    for _ in range(rng.poisson(spec.walls * span / width)):
        x = rng.uniform(world_low, world_high)
        walls.append((x, x + rng.uniform(0.1, 0.25) * width, rng.uniform(*ground)))

    # Walkers: world foot position, heading, speed (heights per frame), stop countdown.
    state: dict[int, dict[str, float]] = {}
    next_identity = 1

    def spawn(inside: bool, t: int) -> None:
        nonlocal next_identity
        foot_y = rng.uniform(*ground)
        half_view = width / (2 * scale[t])
        if inside:
            x = centre_x[t] + rng.uniform(-half_view, half_view)
            heading = 0.0 if rng.random() < 0.5 else np.pi
        else:
            side = -1.0 if rng.random() < 0.5 else 1.0
            x = centre_x[t] + side * (half_view + 0.1 * width)
            heading = np.pi if side > 0 else 0.0
        heading += rng.normal(0, 0.25)
        state[next_identity] = {
            "x": x,
            "y": foot_y,
            "heading": heading,
            "speed": rng.uniform(*spec.speed),
            "stop": 0.0,
        }
        appearance.add(next_identity)
        next_identity += 1

    for _ in range(spec.people):
        spawn(True, 0)

    gt_frames: list[GTFrame] = []
    detections: list[FrameDetections] = []
    transforms = np.zeros((spec.num_frames, 2, 3))
    dim = spec.embedding_dim
    camera_error = spec.camera_noise * height / 1080
    for t in range(spec.num_frames):
        transforms[t] = _affine(centre_x, scale, spec, t)
        s, cx = scale[t], centre_x[t]

        def to_image_x(world_x: np.ndarray, s: float = s, cx: float = cx) -> np.ndarray:
            return s * (world_x - cx) + width / 2

        def to_image_y(world_y: np.ndarray, s: float = s) -> np.ndarray:
            return s * (world_y - height / 2) + height / 2

        identities = np.array(sorted(state), np.int64)
        foot = np.array([[state[i]["x"], state[i]["y"]] for i in identities]).reshape(-1, 2)
        heights = person_height(foot[:, 1]) * s
        widths = 0.38 * heights
        feet_x, feet_y = to_image_x(foot[:, 0]), to_image_y(foot[:, 1])
        boxes = np.stack([feet_x - widths / 2, feet_y - heights, feet_x + widths / 2, feet_y], 1)
        in_view = (boxes[:, 2] > 0) & (boxes[:, 0] < width) & (boxes[:, 1] < height)
        view = np.flatnonzero(in_view)
        view = view[np.argsort(-feet_y[view], kind="stable")]  # nearest first
        occluder_boxes, occluder_rles = [], []
        for x0, x1 in pillars:
            box = np.array([to_image_x(x0), 0.0, to_image_x(x1), float(height)])
            if box[2] > 0 and box[0] < width:
                occluder_boxes.append(box)
        for x0, x1, foot_y in walls:
            top = to_image_y(foot_y) - 0.45 * person_height(np.array(foot_y)) * s
            box = np.array([to_image_x(x0), top, to_image_x(x1), float(height)])
            if box[2] > 0 and box[0] < width:
                occluder_boxes.append((box, foot_y))
        pillar_boxes = [b for b in occluder_boxes if not isinstance(b, tuple)]
        wall_boxes = [b for b in occluder_boxes if isinstance(b, tuple)]
        for box in pillar_boxes:
            corners = [box[0], box[1], box[2], box[1], box[2], box[3], box[0], box[3]]
            occluder_rles.append(_polygon_rle(corners, height, width))
        wall_rles = [
            _polygon_rle([b[0], b[1], b[2], b[1], b[2], b[3], b[0], b[3]], height, width)
            for b, _ in wall_boxes
        ]

        shapes = [_polygon_rle(_ellipse(boxes[k]), height, width) for k in view]
        full_area = np.pi / 4 * widths[view] * heights[view]
        view_boxes = boxes[view]
        meet = _boxes_meet(view_boxes, view_boxes)
        gt_ids, gt_rles = [], []
        det_rows: list[tuple[int, dict[str, Any], float, np.ndarray, float]] = []
        for rank, k in enumerate(view.tolist()):
            identity = int(identities[k])
            # what hides this walker: pillars, walls in front of it, nearer walkers
            hiding = [
                r
                for r, b in zip(occluder_rles, pillar_boxes, strict=True)
                if _boxes_meet(b[None], boxes[k][None])[0, 0]
            ]
            hiding_boxes = [b for b in pillar_boxes if _boxes_meet(b[None], boxes[k][None])[0, 0]]
            for r, (b, wall_y) in zip(wall_rles, wall_boxes, strict=True):
                if wall_y > foot[k, 1] and _boxes_meet(b[None], boxes[k][None])[0, 0]:
                    hiding.append(r)
                    hiding_boxes.append(b)
            nearer = [j for j in range(rank) if meet[rank, j]]
            hiding_people = [shapes[j] for j in nearer]
            blockers = hiding + hiding_people
            union = None
            if blockers:
                union = blockers[0] if len(blockers) == 1 else mask_utils.merge(blockers)
                visible_rle = from_coco(rle_subtract(from_coco(shapes[rank]), from_coco(union)))
            else:
                visible_rle = from_coco(shapes[rank])
            visible_area = float(mask_utils.area(visible_rle))
            visible = visible_area / max(full_area[rank], 1.0)
            if visible < spec.min_visible or visible_area < 4:
                continue
            gt_ids.append(identity)
            gt_rles.append(visible_rle)
            # Detection: more likely missed the less is visible.
            p_detect = (1 - spec.miss_rate) * float(np.clip((visible - spec.min_visible) / 0.15, 0, 1))
            if rng.random() >= p_detect:
                continue
            size = np.array([widths[k], heights[k]] * 2)
            jittered = boxes[k] + rng.standard_normal(4) * spec.box_jitter * size
            jittered = np.concatenate(
                [np.minimum(jittered[:2], jittered[2:]), np.maximum(jittered[:2], jittered[2:])]
            )
            shape = _polygon_rle(_ellipse(jittered), height, width)
            if union is not None:
                shape = rle_subtract(from_coco(shape), from_coco(union))
            if float(mask_utils.area(shape)) < 4:
                continue
            # Appearance: the identity, noise, and what covers it mixed in by the covered fraction.
            embedding = appearance.at(identity, t) + rng.standard_normal(
                dim
            ) * spec.embedding_noise / np.sqrt(dim)
            if spec.appearance == "hard":
                covered_people = _covered_fraction(boxes[k], boxes[view[nearer]]) if nearer else np.zeros(0)
                for j, fraction in zip(nearer, covered_people, strict=True):
                    embedding = embedding + 0.8 * fraction * appearance.at(int(identities[view[j]]), t)
                if hiding_boxes:
                    covered = _covered_fraction(boxes[k], np.array(hiding_boxes))
                    embedding = embedding + 0.5 * float(covered.sum()) * appearance.shared
            score = float(np.clip(0.55 + 0.4 * min(1.0, visible / 0.7) + rng.normal(0, 0.05), 0.3, 1.0))
            det_rows.append((identity, from_coco(shape), score, embedding, visible))
        # False positives: next to a visible walker, its size, an embedding near its own.
        visible_ids = [row[0] for row in det_rows]
        for _ in range(rng.poisson(spec.false_positives) if visible_ids else 0):
            identity = int(rng.choice(visible_ids))
            k = int(np.flatnonzero(identities == identity)[0])
            offset = rng.uniform(0.4, 0.9) * widths[k] * (1 if rng.random() < 0.5 else -1)
            factor = rng.uniform(0.6, 1.0)
            box = np.array([
                feet_x[k] + offset - factor * widths[k] / 2, feet_y[k] - factor * heights[k],
                feet_x[k] + offset + factor * widths[k] / 2, feet_y[k],
            ])  # fmt: skip
            shape = _polygon_rle(_ellipse(box), height, width)
            if float(mask_utils.area(shape)) < 4:
                continue
            embedding = appearance.at(identity, t) + rng.standard_normal(dim) * 0.7 / np.sqrt(dim)
            det_rows.append((-1, from_coco(shape), float(rng.uniform(0.35, 0.75)), embedding, 0.0))

        order = np.argsort([row[0] if row[0] > 0 else 10**9 for row in det_rows], kind="stable")
        det_rows = [det_rows[i] for i in order]
        frame_name = f"{t:06d}"
        frame = make_frame(
            frame_name,
            [row[1] for row in det_rows],
            scores=[row[2] for row in det_rows],
            embeddings=np.array([row[3] for row in det_rows], np.float32).reshape(len(det_rows), dim),
            image_size=(height, width),
        )
        frame.extra["identities"] = np.array([row[0] for row in det_rows], np.int64)
        frame.extra["visible"] = np.array([row[4] for row in det_rows])
        noisy = transforms[t].copy()
        if t:
            noisy[:, 2] += rng.normal(0, camera_error, 2)
        frame.camera_motion = noisy
        detections.append(frame)
        gt_order = np.argsort(gt_ids, kind="stable")
        gt_frames.append(
            GTFrame(
                frame=frame_name,
                image_size=(height, width),
                identities=np.asarray(gt_ids, np.int64)[gt_order],
                labels=np.full(len(gt_ids), PERSON_LABEL, np.int64),
                rles=[gt_rles[i] for i in gt_order],
            )
        )
        _walk(state, spec, rng, t, centre_x, scale, ground, spawn)
    return Scene(gt=gt_frames, detections=detections, camera_motion=transforms)


def _walk(
    state: dict[int, dict[str, float]],
    spec: SceneSpec,
    rng: np.random.Generator,
    t: int,
    centre_x: np.ndarray,
    scale: np.ndarray,
    ground: tuple[float, float],
    spawn: Any,
) -> None:
    """Move every walker one frame; remove those far out of view; keep the crowd's size."""
    height, width = spec.height, spec.width
    far, near = spec.person_height
    nxt = min(t + 1, spec.num_frames - 1)
    half_view = width / (2 * scale[nxt])
    for identity in list(state):
        walker = state[identity]
        walker["heading"] += rng.normal(0, spec.turn_rate)
        # mostly along the street: pull the heading back towards left or right
        forward = 0.0 if np.cos(walker["heading"]) >= 0 else np.pi
        walker["heading"] += 0.02 * np.angle(np.exp(1j * (forward - walker["heading"])))
        walker["speed"] = float(np.clip(walker["speed"] * np.exp(rng.normal(0, 0.02)), *spec.speed))
        if walker["stop"] > 0:
            walker["stop"] -= 1
        elif rng.random() < spec.stop_rate:
            walker["stop"] = float(rng.integers(10, 60))
        else:
            size = height * (far + (near - far) * (walker["y"] - ground[0]) / (ground[1] - ground[0]))
            step = walker["speed"] * size
            walker["x"] += step * np.cos(walker["heading"])
            walker["y"] += 0.5 * step * np.sin(walker["heading"])
            if not ground[0] <= walker["y"] <= ground[1]:
                walker["heading"] = -walker["heading"]
                walker["y"] = float(np.clip(walker["y"], *ground))
        if abs(walker["x"] - centre_x[nxt]) > half_view + 0.3 * width:
            del state[identity]
    while len(state) < spec.people:
        spawn(False, nxt)
