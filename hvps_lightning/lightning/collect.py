"""Collect per-frame detections across batches (and across processes under DDP).

The MOTS model emits ``(sequence, FrameDetections)`` pairs batch by batch; the detection
cache writer and the offline tracker callback need them per sequence, in frame order, on one
process. Under DDP the ``DistributedSampler`` spreads the frames of a sequence over the ranks
(and pads the last batches by repeating frames), so :meth:`SequenceCollector.gather` sends
everything to rank 0 with ``torch.distributed.gather_object``, drops the repeats and sorts.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

from hvps_lightning.errors import HVPSError
from hvps_lightning.structures.detections import FrameDetections


def frame_sort_key(name: str) -> tuple[float, str]:
    """Sort key of frame names: numeric names by value (``"9"`` before ``"10"``), then the rest."""
    return (float(int(name)) if name.isdigit() else math.inf, name)


def _world(trainer: Any | None) -> tuple[int, int]:
    if trainer is not None:
        return int(getattr(trainer, "world_size", 1)), int(getattr(trainer, "global_rank", 0))
    return 1, 0


class SequenceCollector:
    """Accumulates ``(sequence, FrameDetections)`` pairs; groups them per sequence on rank 0.

    Example:
        >>> from hvps_lightning.structures.detections import FrameDetections
        >>> collector = SequenceCollector()
        >>> collector.add([("0002", FrameDetections.empty("000001", (4, 4))),
        ...                ("0002", FrameDetections.empty("000000", (4, 4)))])
        >>> [f.frame for f in collector.gather()["0002"]]
        ['000000', '000001']
    """

    def __init__(self) -> None:
        self.items: list[tuple[str, FrameDetections]] = []
        #: (sequence, frame) -> facts about the frame (e.g. its image path), gathered with the items.
        self.notes: dict[tuple[str, str], dict[str, Any]] = {}

    def __len__(self) -> int:
        return len(self.items)

    def reset(self) -> None:
        """Forget everything collected."""
        self.items = []
        self.notes = {}

    def note(self, sequence: str, frame: str, **facts: Any) -> None:
        """Remember facts about a frame (gathered to rank 0 with the detections)."""
        self.notes.setdefault((str(sequence), str(frame)), {}).update(facts)

    def add(self, items: Iterable[tuple[str, FrameDetections]] | None, where: str = "detections") -> None:
        """Add pairs as a model step returned them (``None`` and empty lists are ignored).

        Raises:
            HVPSError: if an item is not a ``(sequence, FrameDetections)`` pair.
        """
        if items is None:
            return
        for item in items:
            if (
                not isinstance(item, (tuple, list))
                or len(item) != 2
                or not isinstance(item[1], FrameDetections)
            ):
                kind = type(item).__name__
                raise HVPSError(f"{where}: expected (sequence, FrameDetections) pairs, got {kind}")
            self.items.append((str(item[0]), item[1]))

    def gather(self, trainer: Any | None = None) -> dict[str, list[FrameDetections]]:
        """Return ``{sequence: frames in order}``: everything on rank 0, ``{}`` on other ranks.

        A frame seen twice (DDP padding) is kept once. Collective under DDP: every rank must call it.
        """
        world_size, rank = _world(trainer)
        items = self.items
        if world_size > 1:
            import torch.distributed as dist

            if dist.is_available() and dist.is_initialized():
                gathered: list[Any] | None = [None] * world_size if rank == 0 else None
                dist.gather_object((items, self.notes), gathered, dst=0)
                if rank != 0:
                    return {}
                items = []
                for part_items, part_notes in gathered or []:
                    items += part_items
                    for key, facts in part_notes.items():
                        self.notes.setdefault(key, {}).update(facts)
        return group_by_sequence(items)


def group_by_sequence(items: Iterable[tuple[str, FrameDetections]]) -> dict[str, list[FrameDetections]]:
    """Group pairs per sequence, in frame order, keeping the first of repeated frames."""
    sequences: dict[str, dict[str, FrameDetections]] = {}
    for sequence, frame in items:
        sequences.setdefault(sequence, {}).setdefault(frame.frame, frame)
    return {
        sequence: [frames[name] for name in sorted(frames, key=frame_sort_key)]
        for sequence, frames in sorted(sequences.items())
    }
