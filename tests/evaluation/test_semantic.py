from __future__ import annotations

import numpy as np
import pytest

from hvps_lightning.errors import HVPSError
from hvps_lightning.evaluation.semantic import PreloadedSemantic, SemanticCache
from hvps_lightning.formats.semantic_cache import write_semantic_map
from hvps_lightning.panoptic.fusion import fuse_panoptic
from hvps_lightning.structures.specs import get_spec

SPEC = get_spec("motchallenge_step")


def test_missing_cache_frame_names_the_file(tmp_path) -> None:
    with pytest.raises(HVPSError, match=r"000003\.png"):
        SemanticCache(tmp_path).semantic("0002", "000003")


def test_cached_probabilities_pick_the_stuff_class(tmp_path) -> None:
    semantic = np.array([[1, 4, 4, 3]], np.uint8)
    probabilities = np.zeros((SPEC.num_classes, 1, 4), np.float32)
    probabilities[2] = 0.6  # vegetation is the best stuff class everywhere
    write_semantic_map(tmp_path / "sem", "s", "f", semantic, probabilities)
    source = PreloadedSemantic(SemanticCache(tmp_path / "sem"), {"s": ["f"]})
    read = source.semantic("s", "f")
    np.testing.assert_array_equal(read, semantic)
    with_probabilities = fuse_panoptic(read, [], SPEC, "stuff", source.probabilities("s", "f", read.shape))
    np.testing.assert_array_equal(with_probabilities.semantic, [[1, 2, 2, 3]])
    nearest = fuse_panoptic(read, [], SPEC, "stuff")  # no probabilities: the nearest stuff pixel
    np.testing.assert_array_equal(nearest.semantic, [[1, 1, 3, 3]])
    assert SemanticCache(tmp_path / "sem").probabilities("s", "missing", (1, 4)) is None
