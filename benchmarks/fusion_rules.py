"""Which rule should the panoptic fusion apply to thing pixels that no tracked instance covers?

Takes generated MOTChallenge-STEP ground truth (``hvps synth``; or ``--root`` of an existing
STEP root), simulates an imperfect semantic model and an imperfect tracker, fuses both under
each rule of :func:`hvps_lightning.panoptic.fuse_panoptic` (``void``, ``stuff``, ``crowd``) and
scores the result with :class:`hvps_lightning.metrics.STQ`.

Simulated semantic model: the ground-truth semantic map with void filled by the nearest valid
class (a network never abstains), the thing regions grown or shrunk by a few pixels (a
boundary error of random sign per frame), and stuff rectangles relabelled to another stuff
class. Simulated tracker: ground-truth instances, a fraction of them dropped (missed
detections), the rest eroded by a few pixels and shifted by up to one pixel, with their
ground-truth track ids and random scores. Three scenarios scale these errors.

The ``stuff`` rule runs without class probabilities (nearest stuff pixel): simulated
probabilities would only encode an assumption about which stuff class the network prefers
at a thing pixel, which is exactly what we cannot simulate honestly.

Usage::

    python benchmarks/fusion_rules.py [--root DIR] [--sequences 2] [--frames 12] [--seed 0]

It prints a table, then one JSON line: ``{"benchmark": "fusion_rules", ...}``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage

from hvps_lightning.formats import read_step_png
from hvps_lightning.metrics import STQ
from hvps_lightning.panoptic import UNCOVERED_RULES, fuse_panoptic
from hvps_lightning.structures.specs import DatasetSpec, get_spec


@dataclass(frozen=True)
class Scenario:
    """How wrong the simulated models are."""

    name: str
    drop_rate: float  # fraction of ground-truth instances the tracker misses
    erosion: int  # pixels an instance mask shrinks by
    boundary: int  # pixels the semantic thing regions grow or shrink by
    stuff_noise: float  # fraction of the image area relabelled to a wrong stuff class


SCENARIOS = (
    Scenario("mild", drop_rate=0.1, erosion=1, boundary=1, stuff_noise=0.02),
    Scenario("moderate", drop_rate=0.25, erosion=2, boundary=2, stuff_noise=0.05),
    Scenario("hard", drop_rate=0.4, erosion=3, boundary=3, stuff_noise=0.1),
)


def fill_void(semantic: np.ndarray, ignore_label: int) -> np.ndarray:
    """Replace void pixels by the class of the nearest valid pixel."""
    void = semantic == ignore_label
    if not void.any() or void.all():
        return semantic.copy()
    _, (rows, cols) = ndimage.distance_transform_edt(void, return_indices=True)
    return semantic[rows, cols]


def simulate_semantic(
    gt_semantic: np.ndarray, spec: DatasetSpec, scenario: Scenario, rng: np.random.Generator
) -> np.ndarray:
    """An imperfect semantic prediction derived from the ground truth."""
    semantic = fill_void(gt_semantic, spec.ignore_label)
    things = np.isin(semantic, spec.thing_ids)
    if scenario.boundary and things.any():
        if rng.random() < 0.5:  # over-segmented things: grow into the surrounding stuff
            grown = ndimage.binary_dilation(things, iterations=scenario.boundary) & ~things
            _, (rows, cols) = ndimage.distance_transform_edt(~things, return_indices=True)
            semantic[grown] = semantic[rows[grown], cols[grown]]
        else:  # under-segmented things: their rim becomes the nearest stuff
            rim = things & ~ndimage.binary_erosion(things, iterations=scenario.boundary)
            stuff = ~things
            if stuff.any():
                _, (rows, cols) = ndimage.distance_transform_edt(~stuff, return_indices=True)
                semantic[rim] = semantic[rows[rim], cols[rim]]
    height, width = semantic.shape
    stuff_ids = np.asarray(spec.stuff_ids)
    stuff_index = np.full(256, -1)
    stuff_index[stuff_ids] = np.arange(len(stuff_ids))
    area_left = scenario.stuff_noise * height * width
    while area_left > 0:
        h = int(rng.integers(height // 10, height // 4 + 1))
        w = int(rng.integers(width // 10, width // 4 + 1))
        top, left = int(rng.integers(0, height - h + 1)), int(rng.integers(0, width - w + 1))
        region = semantic[top : top + h, left : left + w]  # a view: edits land in `semantic`
        stuff = np.isin(region, stuff_ids)
        shift = int(rng.integers(1, len(stuff_ids)))  # to another stuff class, never the same
        region[stuff] = stuff_ids[(stuff_index[region[stuff]] + shift) % len(stuff_ids)]
        area_left -= h * w
    return semantic


def simulate_tracks(
    gt_semantic: np.ndarray,
    gt_instance: np.ndarray,
    spec: DatasetSpec,
    scenario: Scenario,
    rng: np.random.Generator,
) -> list[tuple[int, int, float, np.ndarray]]:
    """Imperfect tracked instances: some dropped, the rest eroded and shifted."""
    tracks = []
    things = np.isin(gt_semantic, spec.thing_ids) & (gt_instance > 0)
    for label, track_id in sorted(
        {(int(s), int(i)) for s, i in zip(gt_semantic[things], gt_instance[things], strict=True)}
    ):
        if rng.random() < scenario.drop_rate:
            continue
        mask = (gt_semantic == label) & (gt_instance == track_id)
        if scenario.erosion:
            mask = ndimage.binary_erosion(mask, iterations=scenario.erosion)
        dy, dx = (int(v) for v in rng.integers(-1, 2, size=2))
        mask = np.roll(mask, (dy, dx), axis=(0, 1))
        if mask.any():
            tracks.append((track_id, label, float(rng.random()), mask))
    return tracks


def load_ground_truth(root: Path) -> dict[str, list[tuple[np.ndarray, np.ndarray]]]:
    """Every ``panoptic_maps/<folder>/<seq>/<frame>.png`` of a STEP root, by sequence."""
    sequences: dict[str, list[tuple[np.ndarray, np.ndarray]]] = {}
    for seq_dir in sorted(p for p in (root / "panoptic_maps").glob("*/*") if p.is_dir()):
        frames = sorted(seq_dir.glob("*.png"))
        sequences[f"{seq_dir.parent.name}/{seq_dir.name}"] = [read_step_png(f) for f in frames]
    if not sequences:
        raise SystemExit(f"{root}: no panoptic_maps/<folder>/<seq>/*.png found")
    return sequences


def evaluate(
    sequences: dict[str, list[tuple[np.ndarray, np.ndarray]]],
    spec: DatasetSpec,
    scenario: Scenario,
    seed: int,
) -> dict[str, dict[str, float]]:
    """STQ, AQ and IoU of each rule under one scenario (the same simulated inputs for every rule)."""
    metrics = {
        rule: STQ(spec.num_classes, spec.thing_ids, spec.ignore_label, label_divisor=spec.label_divisor)
        for rule in UNCOVERED_RULES
    }
    for seq_index, frames in enumerate(sequences.values()):
        rng = np.random.default_rng([seed, seq_index])
        for gt_semantic, gt_instance in frames:
            semantic = simulate_semantic(gt_semantic, spec, scenario, rng)
            tracks = simulate_tracks(gt_semantic, gt_instance, spec, scenario, rng)
            target = torch.from_numpy(np.stack([gt_semantic, gt_instance], axis=-1)[None].astype(np.int64))
            for rule, metric in metrics.items():
                fused, instance = fuse_panoptic(semantic, tracks, spec, uncovered=rule)
                preds = torch.from_numpy(np.stack([fused, instance], axis=-1)[None].astype(np.int64))
                metric.update(preds, target, [seq_index])
    results = {}
    for rule, metric in metrics.items():
        out = metric.compute()
        results[rule] = {key: round(float(out[key]), 4) for key in ("stq", "aq", "sq")}
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, help="a STEP root with panoptic_maps/ (default: generate one)")
    parser.add_argument("--sequences", type=int, default=2)
    parser.add_argument("--frames", type=int, default=12)
    parser.add_argument("--height", type=int, default=180)
    parser.add_argument("--width", type=int, default=320)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    spec = get_spec("motchallenge_step")
    start = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        root = args.root
        if root is None:
            from hvps_lightning.data.synthetic.generate import generate_dataset

            root = Path(tmp) / "motchallenge_step"
            generate_dataset(
                "motchallenge_step",
                root,
                sequences=args.sequences,
                frames=args.frames,
                height=args.height,
                width=args.width,
                seed=args.seed,
                progress=False,
            )
        sequences = load_ground_truth(root)
    num_frames = sum(len(f) for f in sequences.values())
    results = {s.name: evaluate(sequences, spec, s, args.seed) for s in SCENARIOS}
    mean_stq = {
        rule: round(float(np.mean([results[s.name][rule]["stq"] for s in SCENARIOS])), 4)
        for rule in UNCOVERED_RULES
    }
    best = max(mean_stq, key=mean_stq.__getitem__)

    print(f"{'scenario':<10} {'rule':<6} {'STQ':>7} {'AQ':>7} {'IoU':>7}", file=sys.stderr)
    for scenario in SCENARIOS:
        for rule in UNCOVERED_RULES:
            r = results[scenario.name][rule]
            print(
                f"{scenario.name:<10} {rule:<6} {r['stq']:7.4f} {r['aq']:7.4f} {r['sq']:7.4f}",
                file=sys.stderr,
            )
    print(f"mean STQ: {mean_stq}; best rule: {best}", file=sys.stderr)
    print(
        json.dumps(
            {
                "benchmark": "fusion_rules",
                "frames": num_frames,
                "image_size": [args.height, args.width] if args.root is None else None,
                "results": results,
                "mean_stq": mean_stq,
                "best": best,
                "seconds": round(time.perf_counter() - start, 2),
            }
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
