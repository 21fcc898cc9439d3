"""Fixtures of the MOTS model tests: tiny network settings and hand-made batches.

The batches follow docs/ARCHITECTURE.md "Batches": ``frames`` (B, T, 3, H, W) normalised,
``target_index``, per-clip ``targets`` (boxes, labels as spec ids, masks, track_ids,
identities, semantic, panoptic) and ``meta``. Objects are coloured rectangles that move a
few pixels per frame; an identity keeps its colour, so embeddings can learn it.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from typing import Any

import pytest
import torch
from inference_helpers import TINY_MOTS

from hvps_lightning.models.mots import MOTSNet
from hvps_lightning.models.mots.lightning_model import MOTSModule
from hvps_lightning.structures.specs import get_spec

#: small enough for CPU tests, every module present (shared with the inference tests)
TINY_NET: dict[str, Any] = TINY_MOTS

#: identity -> RGB colour in [0, 1]
COLOURS = torch.tensor(
    [[0.9, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.2, 0.9], [0.9, 0.9, 0.1], [0.8, 0.1, 0.9], [0.1, 0.9, 0.9]]
)
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(3, 1, 1)


@pytest.fixture
def tiny_net() -> dict[str, Any]:
    return dict(TINY_NET)


def build_net(dataset: str = "motchallenge_step", seed: int = 0, **kwargs: Any) -> MOTSNet:
    """A tiny MOTSNet detecting the things of ``dataset`` (``kwargs`` override TINY_NET)."""
    torch.manual_seed(seed)
    return MOTSNet(thing_ids=get_spec(dataset).thing_ids, **{**TINY_NET, **kwargs})


def build_module(dataset: str = "motchallenge_step", seed: int = 0, **kwargs: Any) -> MOTSModule:
    """A MOTSModule around a tiny MOTSNet; ``kwargs`` go to whichever of the two takes them."""
    net_args = set(inspect.signature(MOTSNet).parameters)
    net_kwargs = {k: v for k, v in kwargs.items() if k in net_args}
    task_kwargs = {k: v for k, v in kwargs.items() if k not in net_args}
    return MOTSModule(net=build_net(dataset, seed, **net_kwargs), dataset=dataset, **task_kwargs)


@pytest.fixture
def make_net() -> Callable[..., MOTSNet]:
    """Factory: ``make_net(dataset="motchallenge_step", seed=0, **overrides)`` -> a tiny MOTSNet."""
    return build_net


@pytest.fixture
def make_module() -> Callable[..., MOTSModule]:
    """Factory: ``make_module(dataset=..., seed=0, **net_and_task_args)`` -> a MOTSModule, tiny net."""
    return build_module


def draw_frame(
    objects: list[tuple[int, int, int, int, int]], height: int, width: int, generator: torch.Generator
) -> tuple[torch.Tensor, torch.Tensor]:
    """Draw rectangles ``(identity, x1, y1, x2, y2)`` on grey noise; return the normalised frame and masks."""
    image = 0.5 + 0.05 * torch.randn(3, height, width, generator=generator)
    masks = torch.zeros(len(objects), height, width, dtype=torch.uint8)
    for k, (identity, x1, y1, x2, y2) in enumerate(objects):
        image[:, y1:y2, x1:x2] = COLOURS[identity % len(COLOURS)].view(3, 1, 1)
        masks[k, y1:y2, x1:x2] = 1
    return (image - MEAN) / STD, masks


def make_clip(
    sequence: int,
    frame_index: int,
    num_frames: int,
    target_index: int,
    height: int,
    width: int,
    labels: tuple[int, ...],
    seed: int,
) -> dict[str, Any]:
    """One clip of ``sequence`` with target ``frame_index``; frames before 0 repeat frame 0."""
    frames, target = [], {}
    for t in range(num_frames):
        index = max(0, frame_index - (target_index - t))
        # noise seeded by the frame, so a frame looks the same in every clip that holds it
        generator = torch.Generator().manual_seed(seed * 100_000 + sequence * 1000 + index)
        objects = []
        for k in range(len(labels)):
            identity = sequence * len(labels) + k
            x1 = 4 + 2 * index + k * (width // max(1, len(labels)))
            y1 = 4 + k * 6
            objects.append((identity, x1, y1, min(width, x1 + width // 5), min(height, y1 + height // 2)))
        image, masks = draw_frame(objects, height, width, generator)
        frames.append(image)
        if t == target_index:
            boxes = torch.tensor([[o[1], o[2], o[3], o[4]] for o in objects], dtype=torch.float32)
            track_ids = torch.arange(1, len(objects) + 1)
            semantic = torch.full((height, width), 0, dtype=torch.int64)
            panoptic = torch.zeros((height, width), dtype=torch.int64)
            for k, label in enumerate(labels):
                semantic[masks[k].bool()] = label
                panoptic[masks[k].bool()] = label * 1000 + k + 1
            target = {
                "boxes": boxes,
                "labels": torch.tensor(labels, dtype=torch.int64),
                "masks": masks,
                "track_ids": track_ids,
                "identities": torch.tensor([o[0] for o in objects], dtype=torch.int64),
                "semantic": semantic,
                "panoptic": panoptic,
            }
    meta = {
        "sequence": f"{sequence:04d}",
        "frame": f"{frame_index:06d}",
        "frame_index": frame_index,
        "orig_size": (2 * height, 2 * width),
        "image_path": f"images/train/{sequence:04d}/{frame_index:06d}.png",
    }
    return {"frames": torch.stack(frames), "target": target, "meta": meta}


def collate(clips: list[dict[str, Any]], target_index: int) -> dict[str, Any]:
    return {
        "frames": torch.stack([c["frames"] for c in clips]),
        "target_index": target_index,
        "targets": [c["target"] for c in clips],
        "meta": [{**c["meta"], "group": i // 2} for i, c in enumerate(clips)],
    }


@pytest.fixture
def make_batch() -> Callable[..., dict[str, Any]]:
    """Factory: ``make_batch(items=2, frames=((0, 3), ...), ...)`` -> a collated batch.

    ``frames`` lists (sequence, frame_index) of each clip; by default two sequences with two
    clips each at different times (as training items hold them).
    """

    def build(
        frames: tuple[tuple[int, int], ...] = ((0, 2), (0, 6), (1, 3), (1, 7)),
        num_frames: int = 3,
        target_index: int | None = None,
        height: int = 64,
        width: int = 96,
        labels: tuple[int, ...] = (4, 4),
        seed: int = 0,
    ) -> dict[str, Any]:
        ti = num_frames - 1 if target_index is None else target_index
        clips = [make_clip(s, f, num_frames, ti, height, width, labels, seed) for s, f in frames]
        return collate(clips, ti)

    return build
