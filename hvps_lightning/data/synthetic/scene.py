"""Procedural street videos for ``hvps synth``: the scene model and its renderer.

A sequence is a static street panorama (sky, facades with windows, vegetation, sidewalk,
road, poles, fences) seen through a camera that may pan, with foreground occluders (pillars,
kiosks, bushes, trees) and moving agents painted far-to-near (by foot y):

* people: articulated silhouettes (head, torso, two arms, two legs, shoes) that walk with a
  gait cycle, varying speed, depth drift (so their scale changes) and the odd stop or
  turn-around; each identity has its own skin, hair, trouser colour and shirt colours with a
  pattern (stripes, checks, diagonals, two-tone), so appearance identifies a person;
* riders on bicycles (where the preset has those classes) and cars (KITTI presets).

People enter and leave at the image borders, occlude each other, and some are sent across
a full occluder so that they vanish for several frames and come back with the same track
id: only appearance (re-ID) can reconnect them. The renderer returns, per frame, the image,
the semantic and instance maps (void rings around people for STEP), and one record per
visible segment. Everything is drawn with OpenCV on small patches and numpy, from one
``numpy.random.Generator`` per sequence, so a seed fixes every byte.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field

import cv2
import numpy as np

VOID = 255

# Sub-pixel precision of the OpenCV drawing calls (coordinates are multiplied by 2**SHIFT).
SHIFT = 4
_SCALE = 1 << SHIFT


@dataclass(frozen=True)
class ScenePreset:
    """How one preset draws its scenes and labels them.

    Attributes:
        name: preset name (``motchallenge_step``, ``kitti_step``, ``kitti_panoptic``).
        dataset: the dataset spec it writes (``hvps_lightning.structures.specs``).
        classes: scene role -> semantic class id of the dataset (255 = void).
        instance_kinds: agent kinds whose segments get instance ids (the dataset's things).
        has_road: a road band below the sidewalk (KITTI) or one walkable ground (MOTChallenge).
        car_range: (min, max) cars in view; (0, 0) for none.
        person_range: (min, max) people in view.
        rider_probability: chance per frame that a rider on a bicycle enters.
        void_ring: width in pixels (at 192 rows) of the void ring around people (0: none).
        frame_step: simulation steps between written frames (>1 gives independent-looking images).
        first_frame: number of the first frame file (MOTS20 counts from 1, KITTI from 0).
        default_sequences: sequences written when ``--sequences`` is not given.
        default_frames: frames per sequence when ``--frames`` is not given.
    """

    name: str
    dataset: str
    classes: Mapping[str, int]
    instance_kinds: frozenset[str]
    has_road: bool
    car_range: tuple[int, int]
    person_range: tuple[int, int]
    rider_probability: float
    void_ring: int
    frame_step: int
    first_frame: int
    default_sequences: int
    default_frames: int


_CITYSCAPES_ROLES = {
    "road": 0, "sidewalk": 1, "building": 2, "wall": 3, "fence": 4, "pole": 5, "sign": 7,
    "vegetation": 8, "terrain": 9, "sky": 10, "person": 11, "rider": 12, "car": 13, "bicycle": 18,
}  # fmt: skip

PRESETS: dict[str, ScenePreset] = {
    "motchallenge_step": ScenePreset(
        name="motchallenge_step",
        dataset="motchallenge_step",
        # MOTChallenge-STEP merges road->sidewalk and terrain->vegetation; poles, fences,
        # signs and cars are void there.
        classes={
            "road": 0,
            "sidewalk": 0,
            "building": 1,
            "wall": 1,
            "fence": VOID,
            "pole": VOID,
            "sign": VOID,
            "vegetation": 2,
            "terrain": 2,
            "sky": 3,
            "person": 4,
            "rider": 5,
            "car": VOID,
            "bicycle": 6,
        },
        instance_kinds=frozenset({"person"}),
        has_road=False,
        car_range=(0, 0),
        person_range=(4, 9),
        rider_probability=0.02,
        void_ring=1,
        frame_step=1,
        first_frame=1,
        default_sequences=2,
        default_frames=48,
    ),
    "kitti_step": ScenePreset(
        name="kitti_step",
        dataset="kitti_step",
        classes=_CITYSCAPES_ROLES,
        instance_kinds=frozenset({"person", "car"}),
        has_road=True,
        car_range=(1, 3),
        person_range=(2, 6),
        rider_probability=0.03,
        void_ring=1,
        frame_step=1,
        first_frame=0,
        default_sequences=3,
        default_frames=40,
    ),
    "kitti_panoptic": ScenePreset(
        name="kitti_panoptic",
        dataset="kitti_panoptic",
        classes=_CITYSCAPES_ROLES,
        instance_kinds=frozenset({"person", "car", "rider", "bicycle"}),
        has_road=True,
        car_range=(1, 4),
        person_range=(2, 7),
        rider_probability=0.08,
        void_ring=0,
        frame_step=5,
        first_frame=0,
        default_sequences=4,
        default_frames=24,
    ),
}

# ----------------------------------------------------------------------------- appearance
SHIRT_COLORS = np.array([
    (200, 30, 40), (30, 90, 200), (240, 200, 30), (40, 160, 70), (235, 120, 20), (140, 50, 170),
    (240, 240, 235), (30, 30, 35), (0, 170, 170), (230, 100, 160), (120, 70, 40), (120, 200, 240),
], dtype=np.float32)  # fmt: skip
PATTERNS = ("solid", "hstripes", "vstripes", "checks", "diagonal", "halves")
PANTS_COLORS = np.array([(35, 45, 95), (25, 25, 28), (120, 100, 65), (95, 95, 100), (70, 45, 30),
                         (175, 165, 140), (60, 80, 60)], dtype=np.float32)  # fmt: skip
SKIN_COLORS = np.array([(234, 192, 160), (205, 150, 110), (160, 110, 80), (110, 75, 55), (250, 215, 190)],
                       dtype=np.float32)  # fmt: skip
HAIR_COLORS = np.array([(30, 25, 20), (85, 55, 30), (165, 125, 60), (205, 195, 175), (70, 30, 20)],
                       dtype=np.float32)  # fmt: skip
CAR_COLORS = np.array([(180, 20, 25), (20, 40, 120), (200, 200, 205), (30, 30, 32), (100, 105, 110),
                       (230, 230, 225), (20, 90, 50), (210, 160, 30)], dtype=np.float32)  # fmt: skip
BIKE_COLORS = np.array([(200, 40, 40), (40, 40, 200), (30, 30, 30), (230, 230, 230), (40, 150, 60)],
                       dtype=np.float32)  # fmt: skip
FACADE_COLORS = np.array([(160, 80, 60), (200, 185, 150), (140, 140, 140), (215, 205, 185), (120, 90, 70),
                          (175, 160, 120), (110, 115, 125)], dtype=np.float32)  # fmt: skip

# Part ids drawn into agent patches (0 = empty). Parts >= BICYCLE_PART belong to the bicycle
# segment of a rider; car parts only occur in car patches.
P_PANTS, P_SHIRT, P_SLEEVE, P_SKIN, P_HAIR, P_SHOE, P_PANTS_BACK, P_SLEEVE_BACK, P_SKIN_BACK, P_HAT = range(
    1, 11
)
BICYCLE_PART = 11
P_FRAME, P_TYRE = 11, 12
P_BODY, P_GLASS, P_WHEEL, P_HUB, P_LIGHT_FRONT, P_LIGHT_REAR = range(20, 26)
_NUM_PARTS = 32
# Share of frames drawn blurred and noisier than the rest.
DEGRADED_FRAME_PROBABILITY = 0.1
# Car size relative to a person standing at the same depth: height, and length / height.
CAR_HEIGHT, CAR_LENGTH = 0.72, 2.4


@dataclass
class Appearance:
    """Clothing and colours of one identity (patterns make identities tell-apart)."""

    shirt: np.ndarray
    shirt_second: np.ndarray
    pattern: str
    stripe: float  # stripe period as a fraction of body height
    pants: np.ndarray
    skin: np.ndarray
    hair: np.ndarray
    hat: np.ndarray | None

    def part_colors(self) -> np.ndarray:
        """(parts, 3) float32 colour of each part id."""
        lut = np.zeros((_NUM_PARTS, 3), np.float32)
        lut[P_PANTS], lut[P_PANTS_BACK] = self.pants, self.pants * 0.72
        lut[P_SHIRT], lut[P_SLEEVE], lut[P_SLEEVE_BACK] = self.shirt, self.shirt * 0.92, self.shirt * 0.7
        lut[P_SKIN], lut[P_SKIN_BACK] = self.skin, self.skin * 0.8
        lut[P_HAIR] = self.hair
        lut[P_SHOE] = (35, 30, 30)
        lut[P_HAT] = self.hat if self.hat is not None else self.hair
        return lut


def _appearances(rng: np.random.Generator) -> Iterator[Appearance]:
    """Yield identities whose (shirt colour, pattern) pairs repeat only after all 72 are used."""
    while True:
        combos = [(c, p) for c in range(len(SHIRT_COLORS)) for p in range(len(PATTERNS))]
        for index in rng.permutation(len(combos)):
            colour, pattern = combos[index]
            second = (colour + 1 + int(rng.integers(len(SHIRT_COLORS) - 1))) % len(SHIRT_COLORS)
            jitter = rng.uniform(0.9, 1.1, 3).astype(np.float32)
            yield Appearance(
                shirt=np.clip(SHIRT_COLORS[colour] * jitter, 0, 255),
                shirt_second=SHIRT_COLORS[second],
                pattern=PATTERNS[pattern],
                stripe=float(rng.uniform(0.035, 0.06)),
                pants=PANTS_COLORS[int(rng.integers(len(PANTS_COLORS)))],
                skin=SKIN_COLORS[int(rng.integers(len(SKIN_COLORS)))],
                hair=HAIR_COLORS[int(rng.integers(len(HAIR_COLORS)))],
                hat=SHIRT_COLORS[int(rng.integers(len(SHIRT_COLORS)))] if rng.random() < 0.2 else None,
            )


# ----------------------------------------------------------------------------- drawing helpers
def _pt(x: float, y: float) -> tuple[int, int]:
    return round(x * _SCALE), round(y * _SCALE)


def _line(
    canvas: np.ndarray, a: tuple[float, float], b: tuple[float, float], part: int, thickness: float
) -> None:
    cv2.line(canvas, _pt(*a), _pt(*b), part, max(1, round(thickness)), cv2.LINE_8, SHIFT)


def _disc(canvas: np.ndarray, c: tuple[float, float], radius: float, part: int, thickness: int = -1) -> None:
    cv2.circle(canvas, _pt(*c), max(1, round(radius * _SCALE)), part, thickness, cv2.LINE_8, SHIFT)


def _poly(canvas: np.ndarray, points: list[tuple[float, float]], part: int) -> None:
    pts = np.array([_pt(x, y) for x, y in points], np.int32)
    cv2.fillPoly(canvas, [pts], part, cv2.LINE_8, SHIFT)


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Zero-mean, unit-ish smooth noise of shape (height, width) with features ``cell`` pixels wide."""
    small = rng.standard_normal((max(2, int(height / cell) + 2), max(2, int(width / cell) + 2))).astype(
        np.float32
    )
    return cv2.resize(small, (width, height), interpolation=cv2.INTER_CUBIC)


# ----------------------------------------------------------------------------- agents
@dataclass
class Agent:
    """A moving thing: ``person``, ``rider`` (with its bicycle) or ``car``.

    ``x`` is in world pixels (the panorama), ``foot_y`` in image rows; ``track_id`` is the
    id within the sequence (persons and cars have separate counters, as in STEP).
    """

    kind: str
    track_id: int
    x: float
    foot_y: float
    direction: int
    speed: float  # body heights (car lengths for cars) per frame
    appearance: Appearance | None = None
    color: np.ndarray | None = None
    bike_color: np.ndarray | None = None
    height_factor: float = 1.0
    gait: float = 0.0
    speed_period: float = 40.0
    speed_phase: float = 0.0
    depth_velocity: float = 0.0
    stop_frames: int = 0
    protected_frames: int = 0  # no stops / turns while > 0 (occluder crossings stay predictable)
    hidden_streak: int = 0
    hidden_max: int = 0


@dataclass
class Occluder:
    """A static foreground object (stuff) painted over every agent."""

    kind: str
    class_id: int
    x: float  # screen x of the left edge when the camera is at pan 0
    top: int
    rgb: np.ndarray  # (h, w, 3) float32
    mask: np.ndarray  # (h, w) bool
    parallax: float


@dataclass
class Segment:
    """One labelled segment of a rendered frame.

    Attributes:
        kind: ``person``, ``rider``, ``bicycle`` or ``car``.
        class_id: semantic class of the dataset.
        track_id: the agent's id within the sequence (same person -> same id).
        instance_id: the STEP instance id written (0 for stuff-like or crowd segments).
        area: visible pixels in the written map (after void rings).
        crowd: too small to be an instance; labelled crowd (instance 0, MOTS ignore region).
        mask: (H, W) bool of the visible pixels.
    """

    kind: str
    class_id: int
    track_id: int
    instance_id: int
    area: int
    crowd: bool
    mask: np.ndarray = field(repr=False)


@dataclass
class SynthFrame:
    """One rendered frame: image, label maps and segments."""

    index: int
    image: np.ndarray  # (H, W, 3) uint8 RGB
    semantic: np.ndarray  # (H, W) int32, void = 255
    instance: np.ndarray  # (H, W) int32
    segments: list[Segment]


# ----------------------------------------------------------------------------- the scene
class StreetScene:
    """One sequence: a panorama, occluders, a camera path and agents, stepped frame by frame.

    Args:
        preset: how to draw and label.
        height: image rows.
        width: image columns.
        frames: frames to render (the camera path is planned for them).
        rng: the sequence's random generator (the only source of randomness).
    """

    def __init__(self, preset: ScenePreset, height: int, width: int, frames: int, rng: np.random.Generator):
        self.preset, self.height, self.width, self.rng = preset, height, width, rng
        self.classes = preset.classes
        self.steps = max(1, frames * preset.frame_step)
        h, w = height, width
        self.horizon = h * rng.uniform(0.36, 0.43)
        self.ground_y = self.horizon + h * 0.04
        self.curb_y = h * rng.uniform(0.76, 0.82) if preset.has_road else float(h + 1)
        self.noise_sigma = float(rng.uniform(3.0, 6.0))
        self.crowd_area = max(10, int(h * w / 4000))
        self.ring = 0 if preset.void_ring == 0 else max(1, round(preset.void_ring * h / 192))
        self._plan_camera()
        self.world_rgb, self.world_sem = self._build_world()
        self.occluders = self._make_occluders()
        self.appearances = _appearances(rng)
        self.agents: list[Agent] = []
        self.next_person_id = 1
        self.next_car_id = 1
        self.next_rider_id = 1
        self.t = 0
        self.occlusion_events = 0
        self.lanes = self._make_lanes() if preset.has_road else []
        self._populate()

    # ------------------------------------------------------------------ geometry
    def body_height(self, foot_y: float) -> float:
        """Pixel height of a standing person whose feet are at row ``foot_y`` (perspective)."""
        return max(4.0, (foot_y - self.horizon) * 1.02)

    def _walk_band(self) -> tuple[float, float]:
        """Rows where people's feet may be."""
        top = self.ground_y + self.height * 0.05
        bottom = self.curb_y - self.height * 0.01 if self.preset.has_road else self.height * 1.06
        return top, bottom

    def _plan_camera(self) -> None:
        rng, w = self.rng, self.width
        self.pan_speed = 0.0 if rng.random() < 0.45 else float(rng.uniform(0.4, 1.6) * w / 320)
        wobble = float(rng.uniform(0, 3) * w / 320)
        span = self.pan_speed * self.steps + 2 * wobble
        self.max_pan = math.ceil(min(span, 0.8 * w)) + 2
        sign = 1 if rng.random() < 0.5 else -1
        start = 1.0 + wobble if sign > 0 else self.max_pan - 1.0 - wobble
        omega, phase = rng.uniform(0.05, 0.15), rng.uniform(0, 2 * math.pi)
        t = np.arange(self.steps + 1)
        path = start + sign * self.pan_speed * t + wobble * np.sin(omega * t + phase)
        self.camera = np.clip(np.round(path), 0, self.max_pan).astype(int)
        self.world_width = w + self.max_pan + 1

    def camera_x(self, t: int) -> int:
        """Left world column of the view at step ``t``."""
        return int(self.camera[min(t, len(self.camera) - 1)])

    # ------------------------------------------------------------------ background
    def _cls(self, role: str) -> int:
        return int(self.classes[role])

    def _build_world(self) -> tuple[np.ndarray, np.ndarray]:
        rng, h, ww = self.rng, self.height, self.world_width
        rgb = np.zeros((h, ww, 3), np.float32)
        sem = np.full((h, ww), self._cls("sky"), np.uint8)
        yy = np.arange(h, dtype=np.float32)[:, None]
        xx = np.arange(ww, dtype=np.float32)[None, :]
        ground = round(self.ground_y)

        # Sky: a vertical gradient with soft clouds.
        top_colour = np.array([95, 150, 215], np.float32) * rng.uniform(0.9, 1.1)
        low_colour = np.array([200, 220, 240], np.float32)
        mix = np.clip(yy / max(1.0, self.horizon), 0, 1)[..., None]
        rgb[:] = top_colour * (1 - mix) + low_colour * mix
        clouds = np.clip(smooth_noise(rng, h, ww, h / 5) - 0.4, 0, 1)[..., None]
        rgb += clouds * 60

        # Facades (with windows and a ground floor) and the odd park of trees.
        x = -int(rng.integers(0, max(1, self.width // 8)))
        while x < ww:
            fw = int(rng.uniform(0.18, 0.45) * self.width)
            x0, x1 = max(0, x), min(ww, x + fw)
            if x1 <= x0:
                x += fw
                continue
            if rng.random() < 0.18:
                self._draw_park(rgb, sem, x0, x1, ground)
            else:
                self._draw_facade(rgb, sem, x0, x1, ground, yy, xx)
            x += fw

        # Bushes along the facades' base.
        for _ in range(int(rng.integers(1, 4))):
            cx = rng.uniform(0, ww)
            ax, ay = rng.uniform(0.04, 0.1) * self.width, rng.uniform(0.03, 0.07) * h
            blob = ((xx - cx) / ax) ** 2 + ((yy - ground) / ay) ** 2 < 1
            blob &= yy < ground
            self._paint_vegetation(rgb, sem, blob)

        # Ground: sidewalk tiles in perspective, then (KITTI) terrain strips, curb and road.
        depth = np.maximum(yy - self.horizon, 1.0)
        tiles_v = np.abs(((xx - ww / 2) / depth * 1.2) % 1.0 - 0.5) > 0.47
        tiles_h = np.abs((h * 0.5 / depth) % 1.0 - 0.5) > 0.45
        walk = (yy >= ground) & np.ones_like(xx, bool)
        base = np.array([160, 158, 152], np.float32) * rng.uniform(0.85, 1.1)
        side_rgb = base + 10 * smooth_noise(rng, h, ww, 6)[..., None]
        side_rgb = side_rgb - 35 * (tiles_v | tiles_h)[..., None]
        rgb[walk] = side_rgb[walk]
        sem[walk] = self._cls("sidewalk")
        if self.preset.has_road:
            curb = round(self.curb_y)
            road = (yy >= curb) & np.ones_like(xx, bool)
            road_rgb = np.array([78, 78, 82], np.float32) * rng.uniform(0.85, 1.15)
            road_rgb = road_rgb + 8 * smooth_noise(rng, h, ww, 4)[..., None]
            lane_y = curb + 0.5 * (h - curb)
            dashes = (np.abs(yy - lane_y) < max(1.0, h * 0.008)) & (((xx / (0.12 * self.width)) % 1.0) < 0.55)
            road_rgb = np.where(dashes[..., None], np.float32(225), road_rgb)
            rgb[road] = road_rgb[road]
            sem[road] = self._cls("road")
            curb_band = (yy >= curb - max(1, h // 96)) & (yy < curb) & np.ones_like(xx, bool)
            rgb[curb_band] = (195, 195, 190)
            strip_x = 0.0
            while strip_x < ww:  # grass strips between sidewalk and curb
                length = rng.uniform(0.2, 0.6) * self.width
                if rng.random() < 0.5:
                    band = (yy >= curb - 0.05 * h) & (yy < curb - max(1, h // 96)) & (xx >= strip_x)
                    band &= xx < strip_x + length
                    grass = np.array([95, 150, 60], np.float32) + 18 * smooth_noise(rng, h, ww, 3)[..., None]
                    rgb[band] = grass[band]
                    sem[band] = self._cls("terrain")
                strip_x += length + rng.uniform(0.1, 0.4) * self.width
            self._draw_fences(rgb, sem, yy, xx, ground)

        # Poles (with signs where the dataset has them; void in MOTChallenge-STEP).
        for _ in range(int(rng.integers(0, 3))):
            px = float(rng.uniform(0, ww))
            base_y = (
                self.curb_y - 0.01 * h if self.preset.has_road else rng.uniform(ground + 0.05 * h, 0.8 * h)
            )
            top_y = self.horizon - rng.uniform(0.1, 0.25) * h
            pw = max(1.0, 0.012 * self.width)
            pole = (np.abs(xx - px) <= pw / 2) & (yy >= top_y) & (yy < base_y)
            rgb[pole] = (120, 120, 125)
            sem[pole] = self._cls("pole")
            if self._cls("sign") != VOID or rng.random() < 0.5:
                size = max(3.0, 0.035 * h)
                sign = (np.abs(xx - px) <= size) & (np.abs(yy - top_y - size) <= size)
                rgb[sign] = SHIRT_COLORS[[0, 1, 6][int(rng.integers(3))]]
                sem[sign] = self._cls("sign")
        return rgb, sem

    def _paint_vegetation(self, rgb: np.ndarray, sem: np.ndarray, region: np.ndarray) -> None:
        h, ww = sem.shape
        leaves = np.array([55, 110, 45], np.float32) * self.rng.uniform(0.8, 1.2)
        texture = leaves + 25 * smooth_noise(self.rng, h, ww, 2.5)[..., None]
        rgb[region] = texture[region]
        sem[region] = self._cls("vegetation")

    def _draw_park(self, rgb: np.ndarray, sem: np.ndarray, x0: int, x1: int, ground: int) -> None:
        rng, h = self.rng, self.height
        width = x1 - x0
        crown = (
            self.horizon - h * rng.uniform(0.12, 0.3) + h * 0.06 * smooth_noise(rng, 1, width, width / 4)[0]
        )
        yy = np.arange(h)[:, None]
        region = np.zeros_like(sem, bool)
        region[:, x0:x1] = (yy >= crown[None, :]) & (yy < ground)
        self._paint_vegetation(rgb, sem, region)

    def _draw_facade(
        self, rgb: np.ndarray, sem: np.ndarray, x0: int, x1: int, ground: int, yy: np.ndarray, xx: np.ndarray
    ) -> None:
        rng, h, w = self.rng, self.height, self.width
        top = int(rng.uniform(0.02 * h, max(0.03 * h, self.horizon - 0.1 * h)))
        colour = FACADE_COLORS[int(rng.integers(len(FACADE_COLORS)))] * rng.uniform(0.85, 1.15)
        ys, xs = slice(top, ground), slice(x0, x1)
        fy, fx = yy[ys], xx[:, xs]
        block = colour + 8 * smooth_noise(rng, ground - top, x1 - x0, 3)[..., None]
        sx, sy = rng.uniform(0.05, 0.08) * w, rng.uniform(0.08, 0.12) * h
        off_x, off_y = rng.uniform(0, sx), rng.uniform(0.3, 0.6) * sy
        upper = fy < ground - 0.1 * h
        win = (((fx - x0 - off_x) % sx) < 0.55 * sx) & (((fy - top - off_y) % sy) < 0.6 * sy) & upper
        win &= fy > top + 0.3 * sy
        glass = (
            np.array([55, 70, 90], np.float32)
            + 40 * np.clip((fy - top) / max(1, ground - top), 0, 1)[..., None]
        )
        block = np.where(win[..., None], glass, block)
        shop = (~upper) & (fy < ground - 0.02 * h) & ((((fx - x0) / (0.2 * w)) % 1.0) < 0.7)
        block = np.where(shop[..., None], np.float32(70), block)
        rgb[ys, xs] = block
        sem[ys, xs] = self._cls("building")

    def _draw_fences(
        self, rgb: np.ndarray, sem: np.ndarray, yy: np.ndarray, xx: np.ndarray, ground: int
    ) -> None:
        if self._cls("fence") == VOID:
            return
        rng, h, w = self.rng, self.height, self.width
        for _ in range(int(rng.integers(0, 3))):
            fx0 = rng.uniform(0, self.world_width)
            length = rng.uniform(0.15, 0.4) * w
            region = (xx >= fx0) & (xx < fx0 + length) & (yy >= ground - 0.07 * h) & (yy < ground + 0.01 * h)
            bars = ((xx / max(2.0, 0.015 * w)) % 1.0 < 0.4) | (
                np.abs(yy - (ground - 0.06 * h)) < max(1, h / 150)
            )
            fence = region & bars
            rgb[fence] = (150, 140, 125)
            sem[fence] = self._cls("fence")

    # ------------------------------------------------------------------ occluders
    def _make_occluders(self) -> list[Occluder]:
        rng, w = self.rng, self.width
        count = 1 if rng.random() < 0.5 else 2
        kinds = ["pillar" if rng.random() < 0.6 else "kiosk"]
        if count == 2:
            kinds.append(["bush", "tree", "pillar"][int(rng.integers(3))])
        centres = [rng.uniform(0.25, 0.45) * w, rng.uniform(0.65, 0.8) * w]
        if rng.random() < 0.5:
            centres.reverse()
        mid_camera = self.camera_x(self.steps // 2)
        occluders = []
        for kind, centre in zip(kinds, centres, strict=False):
            parallax = float(rng.uniform(1.1, 1.35))
            occluder = self._draw_occluder(kind)
            half = occluder.mask.shape[1] / 2
            occluder.parallax = parallax
            occluder.x = centre - half + parallax * mid_camera
            occluders.append(occluder)
        return occluders

    def _draw_occluder(self, kind: str) -> Occluder:
        rng, h, w = self.rng, self.height, self.width
        if kind == "pillar":
            ow, top = int(rng.uniform(0.09, 0.14) * w), int(rng.uniform(0.0, 0.08) * h)
            role = "wall"
            base = np.array([185, 175, 160], np.float32) * rng.uniform(0.8, 1.1)
        elif kind == "kiosk":
            ow, top = int(rng.uniform(0.16, 0.24) * w), int(rng.uniform(0.28, 0.4) * h)
            role = "building"
            base = np.array([60, 110, 70], np.float32) * rng.uniform(0.8, 1.2)
        elif kind == "bush":
            ow, top = int(rng.uniform(0.18, 0.28) * w), int(rng.uniform(0.6, 0.7) * h)
            role = "vegetation"
            base = np.array([50, 105, 40], np.float32)
        else:  # tree: a trunk reaching the bottom, a crown at the top
            ow, top = int(rng.uniform(0.16, 0.24) * w), 0
            role = "vegetation"
            base = np.array([50, 105, 40], np.float32)
        ow = max(4, ow)
        oh = h - top
        yy = np.arange(oh, dtype=np.float32)[:, None]
        xx = np.arange(ow, dtype=np.float32)[None, :]
        texture = base + 10 * smooth_noise(rng, oh, ow, 3)[..., None]
        if kind == "pillar":
            shade = 1.0 - 0.35 * np.abs(xx / ow - 0.4)
            rgb = texture * shade[..., None]
            mask = np.ones((oh, ow), bool)
        elif kind == "kiosk":
            band = (yy > 0.1 * oh) & (yy < 0.35 * oh) & (xx > 0.08 * ow) & (xx < 0.92 * ow)
            rgb = np.where(band[..., None], np.array([230, 220, 150], np.float32), texture)
            mask = np.ones((oh, ow), bool)
        elif kind == "bush":
            edge = 0.25 * oh * (1 + 0.3 * smooth_noise(rng, 1, ow, ow / 5)[0])
            mask = yy >= edge * (1 - np.sin(np.pi * (xx + 0.5) / ow) * 0.9)
            rgb = texture + 20 * smooth_noise(rng, oh, ow, 2)[..., None]
        else:
            crown_h = rng.uniform(0.3, 0.4) * h
            crown = ((xx - ow / 2) / (ow / 2)) ** 2 + ((yy - crown_h / 2) / (crown_h / 2)) ** 2 < 1
            trunk = (np.abs(xx - ow / 2) < max(2, 0.22 * ow)) & (yy >= crown_h * 0.7)
            mask = crown | trunk
            bark = np.array([95, 70, 50], np.float32) + 8 * smooth_noise(rng, oh, ow, 2)[..., None]
            rgb = np.where(
                trunk[..., None] & ~crown[..., None],
                bark,
                texture + 20 * smooth_noise(rng, oh, ow, 2)[..., None],
            )
            kind = "tree"
        return Occluder(kind, self._cls(role), 0.0, top, rgb.astype(np.float32), mask, 1.0)

    def occluder_screen_x(self, occluder: Occluder, t: int) -> int:
        """Left screen column of an occluder at step ``t`` (foreground: faster than the panorama)."""
        return round(occluder.x - occluder.parallax * self.camera_x(t))

    # ------------------------------------------------------------------ agents
    def _new_person(self, x: float, foot_y: float, direction: int, speed: float | None = None) -> Agent:
        rng = self.rng
        agent = Agent(
            kind="person",
            track_id=self.next_person_id,
            x=x,
            foot_y=foot_y,
            direction=direction,
            speed=float(
                speed if speed is not None else rng.uniform(0.025, 0.075) * self.preset.frame_step**0.5
            ),
            appearance=next(self.appearances),
            height_factor=float(rng.uniform(0.88, 1.08)),
            gait=float(rng.uniform(0, 2 * math.pi)),
            speed_period=float(rng.uniform(20, 60)),
            speed_phase=float(rng.uniform(0, 2 * math.pi)),
            depth_velocity=float(rng.normal(0, 0.0012) * self.height),
        )
        self.next_person_id += 1
        return agent

    def _entry_x(self, direction: int, extent: float, t: int) -> float:
        """World x just outside the view on the side an agent moving in ``direction`` enters from."""
        left = self.camera_x(t)
        return left - extent if direction > 0 else left + self.width + extent

    def _random_foot_y(self) -> float:
        top, bottom = self._walk_band()
        # Favour the middle distance: people 25-60 % of the image tall, a few near the camera.
        return float(top + (bottom - top) * self.rng.beta(1.6, 1.3))

    def _populate(self) -> None:
        rng = self.rng
        low, high = self.preset.person_range
        for _ in range(int(rng.integers(low, high + 1))):
            x = self.camera_x(0) + rng.uniform(0.02, 0.98) * self.width
            self.agents.append(self._new_person(x, self._random_foot_y(), 1 if rng.random() < 0.5 else -1))
        # Send one person across each full occluder so that it vanishes for several frames.
        for occluder in self.occluders:
            if occluder.kind not in ("pillar", "kiosk") or self.next_person_id > 999:
                continue
            self._send_behind(occluder)
        for _ in range(int(rng.integers(self.preset.car_range[0], self.preset.car_range[1] + 1))):
            car = self._new_car(in_view=True)
            if car is not None:
                self.agents.append(car)

    def _send_behind(self, occluder: Occluder) -> None:
        rng = self.rng
        occ_w = occluder.mask.shape[1]
        top, bottom = self._walk_band()
        # A body narrow enough to vanish completely: width ~0.45 h incl. swinging limbs.
        max_h = min(0.9 * occ_w / 0.45, self.body_height(bottom))
        min_h = self.body_height(top)
        if max_h <= min_h:
            return
        body_h = float(rng.uniform(min_h, max_h))
        foot_y = self.horizon + body_h / 1.02
        hidden = float(rng.uniform(4, 9)) * self.preset.frame_step
        person_w = 0.45 * body_h
        speed_px = max(0.5, (occ_w - person_w) / hidden)
        direction = 1 if rng.random() < 0.5 else -1
        lead = float(rng.uniform(1, 3)) * speed_px  # frames until it starts to disappear
        screen_left = self.occluder_screen_x(occluder, 0)
        screen_x = (
            screen_left - person_w / 2 - lead if direction > 0 else screen_left + occ_w + person_w / 2 + lead
        )
        agent = self._new_person(self.camera_x(0) + screen_x, foot_y, direction, speed=speed_px / body_h)
        agent.protected_frames = int(hidden * 3)
        agent.depth_velocity = 0.0
        agent.speed_period = 1e9  # constant speed while crossing
        self.agents.append(agent)

    def _make_lanes(self) -> list[tuple[float, int, float]]:
        """Road lanes as (foot row, direction, speed): a parking strip along the curb, then two lanes.

        Cars of a lane share its speed, so they never drive through each other.
        """
        h, rng = self.height, self.rng
        step = self.preset.frame_step**0.5
        return [
            (self.curb_y + 0.035 * h, 1, 0.0),
            (self.curb_y + 0.1 * h, -1, float(rng.uniform(0.03, 0.07) * step)),
            (0.99 * h, 1, float(rng.uniform(0.03, 0.07) * step)),
        ]

    def _new_car(self, in_view: bool) -> Agent | None:
        """A car in a free spot of a random lane (parked cars only in view), or None if there is none."""
        rng = self.rng
        lane = int(rng.integers(3))
        foot_y, direction, speed = self.lanes[lane]
        if speed == 0.0:
            in_view = True
            direction = 1 if rng.random() < 0.5 else -1
        length = CAR_LENGTH * CAR_HEIGHT * self.body_height(foot_y)
        for _ in range(5):
            if in_view:
                x = self.camera_x(self.t) + rng.uniform(-0.2, 1.0) * self.width
            else:
                x = self._entry_x(direction, length, self.t) - (length if direction > 0 else 0)
            # The car spans [x, x + length] moving right and [x - length, x] moving left.
            span = (x, x + length) if direction > 0 else (x - length, x)
            if all(
                span[1] + 0.3 * length < other_lo or span[0] - 0.3 * length > other_hi
                for other_lo, other_hi in self._car_spans(foot_y)
            ):
                break
        else:
            return None
        agent = Agent(
            kind="car",
            track_id=self.next_car_id,
            x=float(x),
            foot_y=foot_y,
            direction=direction,
            speed=speed,
            color=CAR_COLORS[int(rng.integers(len(CAR_COLORS)))],
        )
        self.next_car_id += 1
        return agent

    def _car_spans(self, foot_y: float) -> list[tuple[float, float]]:
        spans = []
        for other in self.agents:
            if other.kind == "car" and other.foot_y == foot_y:
                length = CAR_LENGTH * CAR_HEIGHT * self.body_height(foot_y)
                spans.append(
                    (other.x, other.x + length) if other.direction > 0 else (other.x - length, other.x)
                )
        return spans

    def _new_rider(self) -> Agent:
        rng = self.rng
        direction = 1 if rng.random() < 0.5 else -1
        if self.preset.has_road:
            foot_y = float(rng.uniform(self.curb_y + 0.04 * self.height, self.curb_y + 0.12 * self.height))
        else:
            foot_y = self._random_foot_y()
        body_h = self.body_height(foot_y)
        agent = Agent(
            kind="rider",
            track_id=self.next_rider_id,
            x=self._entry_x(direction, body_h, self.t),
            foot_y=foot_y,
            direction=direction,
            speed=float(rng.uniform(0.09, 0.16)),
            appearance=next(self.appearances),
            bike_color=BIKE_COLORS[int(rng.integers(len(BIKE_COLORS)))],
            gait=float(rng.uniform(0, 2 * math.pi)),
        )
        self.next_rider_id += 1
        return agent

    def _agent_extent(self, agent: Agent) -> float:
        body_h = self.body_height(agent.foot_y)
        return {"car": CAR_LENGTH * CAR_HEIGHT * body_h, "rider": 0.8 * body_h}.get(agent.kind, 0.5 * body_h)

    def step(self) -> None:
        """Advance the simulation by one step (move, spawn, retire)."""
        rng, t = self.rng, self.t + 1
        top, bottom = self._walk_band()
        for agent in self.agents:
            body_h = self.body_height(agent.foot_y) * agent.height_factor
            if agent.kind == "person":
                if agent.protected_frames > 0:
                    agent.protected_frames -= 1
                elif agent.stop_frames > 0:
                    agent.stop_frames -= 1
                    continue
                elif rng.random() < 0.008:
                    agent.stop_frames = int(rng.integers(4, 14))
                elif rng.random() < 0.004:
                    agent.direction = -agent.direction
                factor = 1 + 0.35 * math.sin(2 * math.pi * t / agent.speed_period + agent.speed_phase)
                speed_px = agent.speed * factor * body_h
                agent.x += agent.direction * speed_px
                agent.gait += 2 * math.pi * speed_px / (1.3 * body_h)
                agent.foot_y += agent.depth_velocity
                if not top <= agent.foot_y <= bottom:
                    agent.depth_velocity = -agent.depth_velocity
                    agent.foot_y = min(max(agent.foot_y, top), bottom)
            elif agent.kind == "rider":
                speed_px = agent.speed * body_h
                agent.x += agent.direction * speed_px
                agent.gait += speed_px / (0.17 * body_h)  # wheel turns
            else:
                agent.x += agent.direction * agent.speed * 2.2 * body_h
        # Retire agents that have left the view for good.
        left = self.camera_x(t)
        kept = []
        for agent in self.agents:
            extent = self._agent_extent(agent) + 4
            gone_left = agent.x < left - extent and agent.direction < 0
            gone_right = agent.x > left + self.width + extent and agent.direction > 0
            parked_out = (
                agent.kind == "car"
                and agent.speed == 0
                and (agent.x < left - extent or agent.x > left + self.width + extent)
            )
            if not (gone_left or gone_right or parked_out):
                kept.append(agent)
        self.agents = kept
        # Spawn at the borders to keep the numbers in range.
        persons = sum(a.kind == "person" for a in self.agents)
        low, high = self.preset.person_range
        if self.next_person_id <= 999 and (persons < low or (persons < high and rng.random() < 0.08)):
            direction = 1 if rng.random() < 0.5 else -1
            foot_y = self._random_foot_y()
            extent = 0.5 * self.body_height(foot_y)
            self.agents.append(self._new_person(self._entry_x(direction, extent, t), foot_y, direction))
        cars = sum(a.kind == "car" for a in self.agents)
        car_low, car_high = self.preset.car_range
        if (
            self.next_car_id <= 999
            and car_high
            and (cars < car_low or (cars < car_high and rng.random() < 0.05))
        ):
            self.t = t
            car = self._new_car(in_view=False)
            if car is not None:
                self.agents.append(car)
        if (
            self.preset.rider_probability
            and self.next_rider_id <= 999
            and rng.random() < self.preset.rider_probability
        ):
            self.t = t
            self.agents.append(self._new_rider())
        self.t = t

    # ------------------------------------------------------------------ rendering
    def _person_patch(self, agent: Agent, body_h: float) -> tuple[np.ndarray, float, float]:
        """Draw a walking person; return (parts, x of the feet in the patch, row of the feet)."""
        d = agent.direction
        walking = agent.stop_frames == 0
        swing = 0.42 * math.sin(agent.gait) if walking else 0.04
        pw, ph = math.ceil(0.9 * body_h) + 6, math.ceil(1.05 * body_h) + 6
        cx, base = pw / 2, ph - 3.0
        parts = np.zeros((ph, pw), np.uint8)

        def at(bx: float, by: float) -> tuple[float, float]:
            return cx + bx * body_h * d, base - by * body_h

        thigh, shin = 0.25, 0.25

        def leg(angle: float) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
            knee_angle = angle - 0.9 * max(0.0, -angle)
            hip = (0.0, 0.5)
            knee = (hip[0] + thigh * math.sin(angle), hip[1] - thigh * math.cos(angle))
            foot = (knee[0] + shin * math.sin(knee_angle), knee[1] - shin * math.cos(knee_angle))
            return hip, knee, foot

        legs = [leg(-swing), leg(swing)]  # back, front
        lift = min(foot[1] for _, _, foot in legs)  # keep the lowest foot on the ground

        def lat(p: tuple[float, float]) -> tuple[float, float]:
            return at(p[0], p[1] - lift)

        arm_len, fore_len = 0.16, 0.15

        def arm(angle: float) -> tuple[tuple[float, float], tuple[float, float], tuple[float, float]]:
            shoulder = (0.0, 0.8)
            elbow = (shoulder[0] + arm_len * math.sin(angle), shoulder[1] - arm_len * math.cos(angle))
            hand_angle = angle + 0.35
            hand = (elbow[0] + fore_len * math.sin(hand_angle), elbow[1] - fore_len * math.cos(hand_angle))
            return shoulder, elbow, hand

        arms = [arm(0.8 * swing), arm(-0.8 * swing)]  # back arm swings against the back leg
        limb = 0.075 * body_h
        # Back limbs first (darker), then torso, front leg, front arm, head.
        (shoulder, elbow, hand), (hip, knee, foot) = arms[0], legs[0]
        _line(parts, lat(hip), lat(knee), P_PANTS_BACK, limb)
        _line(parts, lat(knee), lat(foot), P_PANTS_BACK, 0.85 * limb)
        _line(parts, lat(foot), lat((foot[0] + 0.06, foot[1])), P_SHOE, 0.6 * limb)
        _line(parts, lat(shoulder), lat(elbow), P_SLEEVE_BACK, 0.7 * limb)
        _line(parts, lat(elbow), lat(hand), P_SKIN_BACK, 0.55 * limb)
        torso = [(0.09, 0.83), (-0.08, 0.83), (-0.075, 0.47), (0.08, 0.47)]
        _poly(parts, [lat(p) for p in torso], P_SHIRT)
        hip, knee, foot = legs[1]
        _line(parts, lat(hip), lat(knee), P_PANTS, limb)
        _line(parts, lat(knee), lat(foot), P_PANTS, 0.85 * limb)
        _line(parts, lat(foot), lat((foot[0] + 0.06, foot[1])), P_SHOE, 0.6 * limb)
        _disc(parts, lat((0.015, 0.86)), 0.035 * body_h, P_SKIN)  # neck
        head = lat((0.02, 0.915))
        _disc(parts, head, 0.062 * body_h, P_SKIN)
        appearance = agent.appearance
        assert appearance is not None
        if appearance.hat is not None:
            cv2.ellipse(
                parts,
                _pt(*head),
                _pt(0.07 * body_h, 0.045 * body_h),
                0,
                180,
                360,
                P_HAT,
                -1,
                cv2.LINE_8,
                SHIFT,
            )
        else:
            cv2.ellipse(
                parts,
                _pt(*head),
                _pt(0.064 * body_h, 0.06 * body_h),
                0,
                170,
                370,
                P_HAIR,
                -1,
                cv2.LINE_8,
                SHIFT,
            )
        shoulder, elbow, hand = arms[1]
        _line(parts, lat(shoulder), lat(elbow), P_SLEEVE, 0.7 * limb)
        _line(parts, lat(elbow), lat(hand), P_SKIN, 0.55 * limb)
        return parts, cx, base

    def _rider_patch(self, agent: Agent, body_h: float) -> tuple[np.ndarray, float, float]:
        d = agent.direction
        pw, ph = math.ceil(1.1 * body_h) + 6, math.ceil(1.0 * body_h) + 6
        cx, base = pw / 2, ph - 3.0
        parts = np.zeros((ph, pw), np.uint8)

        def at(bx: float, by: float) -> tuple[float, float]:
            return cx + bx * body_h * d, base - by * body_h

        r = 0.17
        rear, front, crank = (-0.3, r), (0.3, r), (-0.02, r + 0.01)
        seat, bar = (-0.1, 0.5), (0.22, 0.55)
        tyre = max(1.0, 0.03 * body_h)
        for hub in (rear, front):
            _disc(parts, at(*hub), r * body_h, P_TYRE, max(1, round(tyre)))
        frame = 0.03 * body_h
        for a, b in (
            (rear, crank),
            (crank, seat),
            (seat, rear),
            (crank, (0.2, 0.47)),
            ((0.2, 0.47), seat),
            ((0.2, 0.47), front),
            ((0.2, 0.47), bar),
        ):
            _line(parts, at(*a), at(*b), P_FRAME, frame)
        limb = 0.075 * body_h
        hip, shoulder, head = (-0.1, 0.53), (0.06, 0.8), (0.11, 0.9)
        for sign, pants in ((1.0, P_PANTS_BACK), (-1.0, P_PANTS)):
            angle = agent.gait + (0 if sign > 0 else math.pi)
            pedal = (crank[0] + 0.08 * math.cos(angle), crank[1] + 0.08 * math.sin(angle))
            knee = ((hip[0] + pedal[0]) / 2 + 0.12, (hip[1] + pedal[1]) / 2 + 0.06)
            _line(parts, at(*hip), at(*knee), pants, limb)
            _line(parts, at(*knee), at(*pedal), pants, 0.85 * limb)
            if sign > 0:
                _poly(parts, [at(0.13, 0.84), at(-0.02, 0.82), at(-0.16, 0.5), at(-0.01, 0.5)], P_SHIRT)
        _line(parts, at(*shoulder), at(*bar), P_SLEEVE, 0.6 * limb)
        _disc(parts, at(*bar), 0.025 * body_h, P_SKIN)
        _disc(parts, at(*head), 0.062 * body_h, P_SKIN)
        cv2.ellipse(
            parts,
            _pt(*at(*head)),
            _pt(0.066 * body_h, 0.06 * body_h),
            0,
            170,
            370,
            P_HAT,
            -1,
            cv2.LINE_8,
            SHIFT,
        )  # helmet
        return parts, cx, base

    def _car_patch(self, agent: Agent, body_h: float) -> tuple[np.ndarray, float, float]:
        car_h = CAR_HEIGHT * body_h
        length = CAR_LENGTH * car_h
        pw, ph = math.ceil(length) + 6, math.ceil(car_h) + 6
        x0, base = 3.0, ph - 3.0
        parts = np.zeros((ph, pw), np.uint8)
        flip = agent.direction < 0

        def at(u: float, v: float) -> tuple[float, float]:
            return x0 + (1 - u if flip else u) * length, base - v * car_h

        _poly(parts, [at(0, 0.15), at(1, 0.15), at(1, 0.45), at(0.95, 0.56), at(0, 0.58)], P_BODY)
        _poly(parts, [at(0.12, 0.55), at(0.85, 0.55), at(0.7, 0.97), at(0.25, 0.97)], P_BODY)
        _poly(parts, [at(0.2, 0.6), at(0.46, 0.6), at(0.46, 0.9), at(0.28, 0.9)], P_GLASS)
        _poly(parts, [at(0.5, 0.6), at(0.78, 0.6), at(0.68, 0.9), at(0.5, 0.9)], P_GLASS)
        _poly(parts, [at(0.97, 0.38), at(1, 0.38), at(1, 0.46), at(0.97, 0.46)], P_LIGHT_FRONT)
        _poly(parts, [at(0, 0.4), at(0.025, 0.4), at(0.025, 0.5), at(0, 0.5)], P_LIGHT_REAR)
        for u in (0.2, 0.8):
            _disc(parts, at(u, 0.17), 0.17 * car_h, P_WHEEL)
            _disc(parts, at(u, 0.17), 0.07 * car_h, P_HUB)
        return parts, x0 + (length if flip else 0.0), base

    def _colour_patch(self, agent: Agent, parts: np.ndarray, body_h: float) -> np.ndarray:
        """Colours of a patch: per-part colours, clothing patterns and a little shading."""
        lut = np.zeros((_NUM_PARTS, 3), np.float32)
        if agent.appearance is not None:
            lut = agent.appearance.part_colors()
        if agent.kind == "car":
            assert agent.color is not None
            lut[P_BODY], lut[P_GLASS] = agent.color, (45, 60, 75)
            lut[P_WHEEL], lut[P_HUB] = (25, 25, 25), (160, 160, 160)
            lut[P_LIGHT_FRONT], lut[P_LIGHT_REAR] = (240, 230, 180), (200, 20, 20)
        if agent.kind == "rider":
            assert agent.bike_color is not None
            lut[P_FRAME], lut[P_TYRE] = agent.bike_color, (25, 25, 25)
        colours = lut[parts]
        appearance = agent.appearance
        if appearance is not None and appearance.pattern != "solid":
            ph, pw = parts.shape
            yy, xx = np.mgrid[0:ph, 0:pw]
            period = max(2, round(appearance.stripe * body_h))
            pattern = appearance.pattern
            if pattern == "hstripes":
                second = (yy // period) % 2 == 1
            elif pattern == "vstripes":
                second = (xx // period) % 2 == 1
            elif pattern == "checks":
                second = (yy // period + xx // period) % 2 == 1
            elif pattern == "diagonal":
                second = ((xx + yy) // period) % 2 == 1
            else:  # halves: a two-tone top
                second = yy > ph - 3 - 0.66 * body_h
            shirt = (parts == P_SHIRT) | (parts == P_SLEEVE) | (parts == P_SLEEVE_BACK)
            mix = second & shirt
            shade = np.where(parts == P_SLEEVE_BACK, 0.7, np.where(parts == P_SLEEVE, 0.92, 1.0))
            colours[mix] = appearance.shirt_second * shade[mix][:, None]
        # Round bodies: darker towards the silhouette's left and right.
        pw = parts.shape[1]
        xs = (np.arange(pw, dtype=np.float32) - pw / 2) / max(1.0, pw / 2)
        colours *= (1.0 - 0.18 * xs**2)[None, :, None]
        return colours

    def render(self) -> SynthFrame:
        """Render the current step."""
        h, w = self.height, self.width
        left = self.camera_x(self.t)
        rgb = self.world_rgb[:, left : left + w].copy()
        semantic = self.world_sem[:, left : left + w].astype(np.int32)
        owner = np.full((h, w), -1, np.int32)  # segment index per pixel
        records: list[tuple[str, int, Agent]] = []  # (kind, class id, agent) per segment index

        for agent in sorted(self.agents, key=lambda a: (a.foot_y, a.kind, a.track_id)):
            body_h = self.body_height(agent.foot_y) * agent.height_factor
            if agent.kind == "person":
                parts, fx, fy = self._person_patch(agent, body_h)
            elif agent.kind == "rider":
                parts, fx, fy = self._rider_patch(agent, body_h)
            else:
                parts, fx, fy = self._car_patch(agent, body_h)
            ox = round(agent.x - left - fx)
            oy = round(agent.foot_y - fy)
            ph, pw = parts.shape
            x0, y0, x1, y1 = max(0, ox), max(0, oy), min(w, ox + pw), min(h, oy + ph)
            if x1 <= x0 or y1 <= y0:
                continue
            sub = parts[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
            drawn = sub > 0
            if not drawn.any():
                continue
            colours = self._colour_patch(agent, parts, body_h)[y0 - oy : y1 - oy, x0 - ox : x1 - ox]
            rgb[y0:y1, x0:x1][drawn] = colours[drawn]
            main = len(records)
            records.append((agent.kind, self._cls(agent.kind), agent))
            seg_ids = np.full(sub.shape, main, np.int32)
            if agent.kind == "rider":
                records.append(("bicycle", self._cls("bicycle"), agent))
                seg_ids[sub >= BICYCLE_PART] = main + 1
            owner[y0:y1, x0:x1][drawn] = seg_ids[drawn]

        for occluder in self.occluders:
            ox = self.occluder_screen_x(occluder, self.t)
            _oh, ow = occluder.mask.shape
            x0, x1 = max(0, ox), min(w, ox + ow)
            if x1 <= x0:
                continue
            m = occluder.mask[:, x0 - ox : x1 - ox]
            rgb[occluder.top :, x0:x1][m] = occluder.rgb[:, x0 - ox : x1 - ox][m]
            semantic[occluder.top :, x0:x1][m] = occluder.class_id
            owner[occluder.top :, x0:x1][m] = -1

        # Labels: segment classes over the background, instance ids, crowd for tiny segments.
        instance = np.zeros((h, w), np.int32)
        areas = np.bincount(owner[owner >= 0], minlength=len(records))
        labelled = owner >= 0
        class_lut = np.array([c for _, c, _ in records] + [0], np.int32)
        semantic[labelled] = class_lut[owner[labelled]]
        person_class = self._cls("person")
        if self.ring:
            person = semantic == person_class
            grown = cv2.dilate(person.astype(np.uint8), np.ones((3, 3), np.uint8), iterations=self.ring) > 0
            ring = grown & ~person
            semantic[ring] = VOID
            owner[ring] = -1
            areas = np.bincount(owner[owner >= 0], minlength=len(records))
        segments = []
        for index, (kind, class_id, agent) in enumerate(records):
            area = int(areas[index])
            if area == 0 or class_id == VOID:
                continue
            crowd = kind in self.preset.instance_kinds and area < self.crowd_area
            has_instance = kind in self.preset.instance_kinds and not crowd
            mask = owner == index
            instance_id = agent.track_id if has_instance else 0
            if has_instance:
                instance[mask] = instance_id
            segments.append(Segment(kind, class_id, agent.track_id, instance_id, area, crowd, mask))
        self._count_occlusions(segments)

        # Camera: a slight blur, exposure flicker and sensor noise; now and then a degraded frame
        # (motion blur, more noise) where the previous frames help (temporal attention).
        degraded = self.rng.random() < DEGRADED_FRAME_PROBABILITY
        rgb = cv2.GaussianBlur(rgb, (7, 7), 1.6) if degraded else cv2.GaussianBlur(rgb, (3, 3), 0.6)
        gain = 1.0 + 0.04 * math.sin(0.3 * self.t) + float(self.rng.normal(0, 0.015))
        sigma = self.noise_sigma * (2.0 if degraded else 1.0)
        noise = self.rng.standard_normal((h, w, 3), dtype=np.float32) * sigma
        image = np.clip(rgb * gain + noise, 0, 255).astype(np.uint8)
        return SynthFrame(self.t, image, semantic, instance, segments)

    def run(self, frames: int) -> Iterator[SynthFrame]:
        """Yield ``frames`` frames, ``frame_step`` simulation steps apart, starting with the current one."""
        for index in range(frames):
            if index:
                for _ in range(self.preset.frame_step):
                    self.step()
            frame = self.render()
            frame.index = index
            yield frame

    def _count_occlusions(self, segments: list[Segment]) -> None:
        """Count people that were hidden while inside the view and then came back."""
        visible = {s.track_id for s in segments if s.kind == "person"}
        left = self.camera_x(self.t)
        for agent in self.agents:
            if agent.kind != "person":
                continue
            inside = 0 <= agent.x - left < self.width
            if agent.track_id in visible:
                if agent.hidden_streak >= 3:
                    self.occlusion_events += 1
                agent.hidden_max = max(agent.hidden_max, agent.hidden_streak)
                agent.hidden_streak = 0
            elif inside:
                agent.hidden_streak += 1


def render_sequence(
    preset: ScenePreset | str, height: int, width: int, frames: int, rng: np.random.Generator
) -> Iterator[SynthFrame]:
    """Yield ``frames`` rendered frames of one new scene (``frame_step`` simulation steps apart)."""
    yield from StreetScene(
        PRESETS[preset] if isinstance(preset, str) else preset, height, width, frames, rng
    ).run(frames)
