"""Predicted semantic maps for the fusion: a semantic cache on disk, or the same preloaded.

:func:`~hvps_lightning.evaluation.scoring.track_fuse_score` asks a :class:`SemanticSource` for a
frame's class map and, for the ``stuff`` fusion rule, its class probabilities.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from hvps_lightning.errors import HVPSError
from hvps_lightning.evaluation.ground_truth import GroundTruth
from hvps_lightning.formats.semantic_cache import read_probabilities, read_semantic_map


class SemanticSource:
    """Semantic class maps (and optionally class probabilities) per frame."""

    def semantic(self, sequence: str, frame: str) -> np.ndarray:
        """The frame's (H, W) class ids."""
        raise NotImplementedError

    def probabilities(self, sequence: str, frame: str, size: tuple[int, int]) -> np.ndarray | None:
        """The frame's (C, H, W) class probabilities at ``size``, or ``None`` if there are none."""
        return None


class SemanticCache(SemanticSource):
    """A semantic cache ``<dir>/<seq>/<frame>.png`` (+ ``.probs.npz``), as ``hvps predict`` writes it."""

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)

    def semantic(self, sequence: str, frame: str) -> np.ndarray:
        """Read the frame's class map.

        Raises:
            HVPSError: naming the file if it is missing or bad.
        """
        return read_semantic_map(self.directory, sequence, frame)

    def probabilities(self, sequence: str, frame: str, size: tuple[int, int]) -> np.ndarray | None:
        """Read the frame's class probabilities, if the cache holds them."""
        return read_probabilities(self.directory, sequence, frame, size=size)


class PreloadedSemantic(SemanticSource):
    """Another source's class maps, read once (the sweeps score every trial on the same maps)."""

    def __init__(self, source: SemanticSource, frames: Mapping[str, Sequence[str]]) -> None:
        self.source = source
        self._maps = {
            (seq, name): source.semantic(seq, name) for seq, names in frames.items() for name in names
        }

    def semantic(self, sequence: str, frame: str) -> np.ndarray:
        """The loaded map (read from the source if it was not loaded)."""
        found = self._maps.get((sequence, frame))
        return found if found is not None else self.source.semantic(sequence, frame)

    def probabilities(self, sequence: str, frame: str, size: tuple[int, int]) -> np.ndarray | None:
        """The source's probabilities (not preloaded: they are large and only the stuff rule reads them)."""
        return self.source.probabilities(sequence, frame, size)


class GroundTruthSemantic(SemanticSource):
    """The ground truth's own semantic maps: a fused output whose semantic half is perfect.

    Scoring tracks fused into it isolates the MOTS network and the tracker (``hvps ablate``).
    """

    def __init__(self, ground_truth: GroundTruth) -> None:
        self.ground_truth = ground_truth

    def semantic(self, sequence: str, frame: str) -> np.ndarray:
        """The frame's ground-truth class map.

        Raises:
            HVPSError: if the frame has no ground truth.
        """
        truth = self.ground_truth.frame(sequence, frame)
        if truth is None:
            raise HVPSError(f"{sequence}/{frame}: no ground truth to take the semantic map from")
        return truth.semantic
