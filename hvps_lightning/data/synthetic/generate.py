"""``hvps synth``: write a synthetic dataset in the official layout of a real one.

Presets and what they write under ``--out`` (default ``data/<dataset>``):

* ``motchallenge_step`` / ``kitti_step`` (STEP layout)::

      images/<folder>/<seq %04d>/<frame %06d>.png          RGB frames
      panoptic_maps/<folder>/<seq>/<frame>.png             STEP maps (R class, G/B instance)
      instances_txt/<folder>/<seq>.txt                     MOTS txt ground truth

  Sequences take the official names of the dataset's splits first (``specs.py``):
  MOTChallenge-STEP ``train/0009`` (train split) and ``train/0002`` (val split); KITTI-STEP
  train names (0000, 0001, ...) in ``train/`` and val names (0002, 0006, ...) in ``val/``.
  Frames are numbered like the real data: from 1 for MOTChallenge (MOTS20), from 0 for KITTI.
  MOTS ids are ``class * 1000 + STEP instance id`` (persons class 2, cars class 1); people
  too small to be instances are crowd (instance 0) and form the ignore region (id 10000,
  class 10) of their frame.

* ``kitti_panoptic`` (the KITTI panoptic release used by EfficientPS)::

      training/images/<name>.png       validation/images/<name>.png
      training/annotations/<name>.png  validation/annotations/<name>.png   COCO panoptic PNGs
      training/annotations.json        validation/annotations.json        COCO panoptic JSON

  with Cityscapes categories (``id`` = Cityscapes label id) and Cityscapes-panoptic segment
  ids (label id for stuff and crowd, ``label id * 1000 + k`` for instances), ``<name>`` =
  ``<scene %04d>_<image %06d>``; images of one scene are ``frame_step`` simulation steps apart.

Every run also writes ``hvps_synth.json`` (the arguments and a summary); a folder holding it
may be regenerated freely, any other non-empty folder needs ``--overwrite``. The same
arguments give the same bytes.

Example:
    >>> import tempfile
    >>> out = tempfile.mkdtemp()
    >>> summary = generate_dataset("motchallenge_step", out, sequences=1, frames=2, height=64, width=96,
    ...                            progress=False)
    >>> sorted(p.name for p in (Path(out) / "images" / "train" / "0009").iterdir())
    ['000001.png', '000002.png']
"""

from __future__ import annotations

import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from tqdm import tqdm

from hvps_lightning.data.synthetic.scene import PRESETS, VOID, ScenePreset, StreetScene, SynthFrame
from hvps_lightning.errors import HVPSError
from hvps_lightning.formats import (
    COCO_PANOPTIC_LAYOUT,
    IGNORE_CLASS,
    IGNORE_ID,
    MOTSObject,
    PanopticImage,
    segments_from_ids,
    write_coco_panoptic_json,
    write_mots_txt,
    write_panoptic_png,
    write_png,
    write_step_png,
)
from hvps_lightning.io import write_json
from hvps_lightning.structures.masks import encode_mask
from hvps_lightning.structures.specs import CITYSCAPES_CLASSES, CITYSCAPES_COLORS, DatasetSpec, get_spec

MANIFEST = "hvps_synth.json"
GENERATOR = "hvps synth"
FORMAT_VERSION = 1
#: Every top-level path a preset may write (cleared before regenerating a generated folder).
GENERATED_PATHS = ("images", "panoptic_maps", "instances_txt", "training", "validation", MANIFEST)
MAX_SIDE = 4096
MIN_SIDE = 48

#: Cityscapes label id of each of the 19 train ids (the KITTI panoptic release uses label ids).
CITYSCAPES_LABEL_IDS = (7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26, 27, 28, 31, 32, 33)
_CITYSCAPES_SUPERCATEGORIES = (
    "flat",
    "flat",
    "construction",
    "construction",
    "construction",
    "object",
    "object",
    "object",
    "nature",
    "nature",
    "sky",
    "human",
    "human",
    "vehicle",
    "vehicle",
    "vehicle",
    "vehicle",
    "vehicle",
    "vehicle",
)


def kitti_panoptic_categories(spec: DatasetSpec) -> list[dict[str, Any]]:
    """The JSON categories of the KITTI panoptic release: the 19 Cityscapes evaluation classes."""
    return [
        {
            "id": CITYSCAPES_LABEL_IDS[i],
            "name": name,
            "color": list(CITYSCAPES_COLORS[i]),
            "supercategory": _CITYSCAPES_SUPERCATEGORIES[i],
            "isthing": int(i in spec.thing_ids),
        }
        for i, name in enumerate(CITYSCAPES_CLASSES)
    ]


@dataclass(frozen=True)
class SequencePlan:
    """Where one generated sequence goes: its name, split and split folder."""

    name: str
    split: str
    folder: str


def plan_sequences(spec: DatasetSpec, count: int) -> list[SequencePlan]:
    """Name and place ``count`` sequences: about a quarter (at least one if ``count`` > 1) in val.

    Official train/val names come first; further sequences get the next unused 4-digit names.
    """
    val_count = 0 if count == 1 else max(1, int(count / 4 + 0.5))
    wanted = {"train": count - val_count, "val": val_count}
    official = {s for split in spec.splits.values() for s in split.sequences}
    numeric = [int(s) for split in ("train", "val") for s in spec.split(split).sequences if s.isdigit()]
    next_number = max(numeric, default=-1) + 1
    plans = []
    for split, number in wanted.items():
        names = list(spec.split(split).sequences[:number])
        while len(names) < number:
            candidate = f"{next_number:04d}"
            next_number += 1
            if candidate not in official:
                names.append(candidate)
        plans += [SequencePlan(name, split, spec.split(split).folder) for name in names]
    return plans


@dataclass
class SequenceSummary:
    """What one generated sequence holds."""

    name: str
    split: str
    folder: str
    frames: int
    persons: int = 0
    mean_persons_per_frame: float = 0.0
    max_persons_per_frame: int = 0
    crowd_segments: int = 0
    cars: int = 0
    riders: int = 0
    occlusion_events: int = 0


@dataclass
class SynthSummary:
    """The result of :func:`generate_dataset`."""

    preset: str
    dataset: str
    out: str
    height: int
    width: int
    seed: int
    frames_per_sequence: int
    sequences: list[SequenceSummary] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def total_frames(self) -> int:
        """Frames written over all sequences."""
        return sum(s.frames for s in self.sequences)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict without timing and output path: it depends on the arguments only."""
        data = asdict(self)
        data.pop("seconds")
        data.pop("out")
        data["total_frames"] = self.total_frames
        return data

    def format(self) -> str:
        """A few human-readable lines."""
        rate = self.total_frames / self.seconds if self.seconds > 0 else float("inf")
        lines = [
            f"hvps synth: wrote {self.preset} ({self.total_frames} frames, {self.height}x{self.width}, "
            f"seed {self.seed}) to {self.out} in {self.seconds:.1f} s ({rate:.0f} frames/s)"
        ]
        for s in self.sequences:
            lines.append(
                f"  {s.folder}/{s.name} ({s.split}): {s.frames} frames, {s.persons} people "
                f"({s.mean_persons_per_frame:.1f} per frame), {s.cars} cars, {s.riders} riders, "
                f"{s.occlusion_events} re-appearances after >= 3 hidden frames"
            )
        return "\n".join(lines)


def _check_args(preset: str, sequences: int, frames: int, height: int, width: int) -> None:
    if preset not in PRESETS:
        raise HVPSError(f"--preset: unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    if not 1 <= sequences <= 1000:
        raise HVPSError(f"--sequences: must be between 1 and 1000, got {sequences}")
    if not 1 <= frames <= 100_000:
        raise HVPSError(f"--frames: must be between 1 and 100000, got {frames}")
    for name, value in (("--height", height), ("--width", width)):
        if not MIN_SIDE <= value <= MAX_SIDE:
            raise HVPSError(f"{name}: must be between {MIN_SIDE} and {MAX_SIDE} pixels, got {value}")


def _is_generated(out: Path) -> bool:
    try:
        return json.loads((out / MANIFEST).read_text(encoding="utf-8")).get("generator") == GENERATOR
    except (OSError, ValueError, AttributeError):
        return False


def _prepare_out(out: Path, overwrite: bool) -> None:
    """Make ``out`` ready: refuse a foreign non-empty folder unless ``overwrite``; clear old output."""
    if out.exists() and not out.is_dir():
        raise HVPSError(f"--out {out}: exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite and not _is_generated(out):
            raise HVPSError(
                f"--out {out}: folder is not empty and was not written by hvps synth (no {MANIFEST}); "
                "pass --overwrite to write into it anyway"
            )
        for name in GENERATED_PATHS:
            path = out / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
    out.mkdir(parents=True, exist_ok=True)


def sequence_rng(preset: str, seed: int, sequence_index: int) -> np.random.Generator:
    """The generator of one sequence: independent of how many sequences or frames are written."""
    return np.random.default_rng(np.random.SeedSequence([seed, list(PRESETS).index(preset), sequence_index]))


def _mots_objects(frame: SynthFrame, frame_number: int, spec: DatasetSpec) -> list[MOTSObject]:
    objects, ignore = [], None
    for seg in frame.segments:
        mots_class = spec.mots_class_ids.get(seg.class_id)
        if mots_class is None:
            continue
        if seg.crowd:
            ignore = seg.mask.copy() if ignore is None else ignore | seg.mask
        elif seg.instance_id:
            objects.append(
                MOTSObject(
                    frame_number, mots_class * 1000 + seg.instance_id, mots_class, encode_mask(seg.mask)
                )
            )
    if ignore is not None:
        objects.append(MOTSObject(frame_number, IGNORE_ID, IGNORE_CLASS, encode_mask(ignore)))
    return objects


def _cityscapes_ids(frame: SynthFrame, spec: DatasetSpec) -> tuple[np.ndarray, dict[int, int], set[int]]:
    """Segment ids of the KITTI panoptic release: label id (stuff, crowd) or label id * 1000 + k."""
    label_ids = np.zeros(256, np.int64)  # void -> 0 ("unlabeled")
    label_ids[: len(CITYSCAPES_LABEL_IDS)] = CITYSCAPES_LABEL_IDS
    ids = label_ids[frame.semantic]
    for seg in frame.segments:
        if seg.instance_id:
            ids[seg.mask] = label_ids[seg.class_id] * 1000 + seg.instance_id
    category_of = {int(v): int(v if v < 1000 else v // 1000) for v in np.unique(ids) if v}
    # A thing pixel whose id is the bare label id has no instance: it is crowd.
    crowd = {int(label_ids[c]) for c in spec.thing_ids if int(label_ids[c]) in category_of}
    return ids, category_of, crowd


def generate_dataset(
    preset: str,
    out: str | Path | None = None,
    sequences: int | None = None,
    frames: int | None = None,
    height: int = 192,
    width: int = 320,
    seed: int = 0,
    overwrite: bool = False,
    progress: bool = True,
) -> SynthSummary:
    """Generate a synthetic dataset of ``preset`` in its official layout under ``out``.

    Args:
        preset: ``motchallenge_step``, ``kitti_step`` or ``kitti_panoptic``.
        out: the dataset root (default ``data/<dataset>``).
        sequences: number of sequences (scenes for kitti_panoptic); default per preset.
        frames: frames per sequence (images per scene); default per preset.
        height: image rows.
        width: image columns.
        seed: the random seed; the same arguments give the same files.
        overwrite: write into a non-empty folder that was not written by the generator.
        progress: show a progress bar.

    Returns:
        A summary of what was written (also stored in ``<out>/hvps_synth.json``).

    Raises:
        HVPSError: for invalid arguments or a foreign non-empty ``out`` without ``overwrite``.
    """
    if preset not in PRESETS:
        raise HVPSError(f"--preset: unknown preset {preset!r}; choose from {', '.join(PRESETS)}")
    scene_preset: ScenePreset = PRESETS[preset]
    spec = get_spec(scene_preset.dataset)
    sequences = scene_preset.default_sequences if sequences is None else int(sequences)
    frames = scene_preset.default_frames if frames is None else int(frames)
    _check_args(preset, sequences, frames, height, width)
    out_dir = Path(out) if out is not None else Path("data") / spec.name
    _prepare_out(out_dir, overwrite)

    summary = SynthSummary(preset, spec.name, str(out_dir), height, width, seed, frames)
    manifest = {
        "generator": GENERATOR,
        "format_version": FORMAT_VERSION,
        "complete": False,
        "arguments": {
            "preset": preset,
            "sequences": sequences,
            "frames": frames,
            "height": height,
            "width": width,
            "seed": seed,
        },
    }
    write_json(out_dir / MANIFEST, manifest)
    start = time.perf_counter()
    plans = plan_sequences(spec, sequences)
    layout = COCO_PANOPTIC_LAYOUT
    coco_images: dict[str, list[PanopticImage]] = {}
    with tqdm(
        total=len(plans) * frames, desc=f"hvps synth {preset}", unit="frame", disable=not progress
    ) as bar:
        for index, plan in enumerate(plans):
            scene = StreetScene(scene_preset, height, width, frames, sequence_rng(preset, seed, index))
            seq_summary = SequenceSummary(plan.name, plan.split, plan.folder, frames)
            persons: set[int] = set()
            cars: set[int] = set()
            riders: set[int] = set()
            counts = []
            mots: list[MOTSObject] = []
            for frame in scene.run(frames):
                stem = f"{scene_preset.first_frame + frame.index:06d}"
                if spec.layout == "coco_panoptic":
                    name = f"{plan.name}_{stem}"
                    write_png(
                        out_dir / layout["images"].format(folder=plan.folder) / f"{name}.png", frame.image
                    )
                    ids, category_of, crowd = _cityscapes_ids(frame, spec)
                    write_panoptic_png(
                        out_dir / layout["png_dir"].format(folder=plan.folder) / f"{name}.png", ids
                    )
                    segments = segments_from_ids(ids, category_of, crowd)
                    coco_images.setdefault(plan.folder, []).append(
                        PanopticImage(name, f"{name}.png", height, width, f"{name}.png", segments)
                    )
                else:
                    write_png(out_dir / "images" / plan.folder / plan.name / f"{stem}.png", frame.image)
                    write_step_png(
                        out_dir / "panoptic_maps" / plan.folder / plan.name / f"{stem}.png",
                        frame.semantic,
                        frame.instance,
                    )
                    mots += _mots_objects(frame, int(stem), spec)
                visible = [
                    s for s in frame.segments if s.kind == "person" and not s.crowd and s.class_id != VOID
                ]
                persons.update(s.track_id for s in visible)
                cars.update(s.track_id for s in frame.segments if s.kind == "car")
                riders.update(s.track_id for s in frame.segments if s.kind == "rider")
                seq_summary.crowd_segments += sum(s.crowd for s in frame.segments)
                counts.append(len(visible))
                bar.update(1)
            if spec.layout != "coco_panoptic":
                write_mots_txt(out_dir / "instances_txt" / plan.folder / f"{plan.name}.txt", mots)
            seq_summary.persons, seq_summary.cars, seq_summary.riders = len(persons), len(cars), len(riders)
            seq_summary.mean_persons_per_frame = round(float(np.mean(counts)), 3)
            seq_summary.max_persons_per_frame = int(max(counts))
            seq_summary.occlusion_events = scene.occlusion_events
            summary.sequences.append(seq_summary)
    categories = kitti_panoptic_categories(spec) if spec.layout == "coco_panoptic" else []
    for folder, images in coco_images.items():
        write_coco_panoptic_json(out_dir / layout["json"].format(folder=folder), images, categories)
    summary.seconds = time.perf_counter() - start
    manifest["complete"] = True
    manifest["summary"] = summary.to_dict()
    write_json(out_dir / MANIFEST, manifest)
    return summary
