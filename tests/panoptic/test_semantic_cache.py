from __future__ import annotations

import numpy as np
import pytest

from hvps_lightning.errors import HVPSError
from hvps_lightning.formats.semantic_cache import (
    list_cached_frames,
    probabilities_path,
    read_probabilities,
    read_semantic_map,
    semantic_map_path,
    write_semantic_map,
)


def test_semantic_map_round_trip_and_layout(tmp_path) -> None:
    semantic = np.random.default_rng(0).integers(0, 19, size=(9, 13)).astype(np.uint8)
    semantic[0] = 255
    path = write_semantic_map(tmp_path, "0002", "000007", semantic)
    assert path == tmp_path / "0002" / "000007.png" == semantic_map_path(tmp_path, "0002", "000007")
    back = read_semantic_map(tmp_path, "0002", "000007")
    assert back.dtype == np.uint8
    np.testing.assert_array_equal(back, semantic)
    assert read_probabilities(tmp_path, "0002", "000007") is None
    assert list_cached_frames(tmp_path, "0002") == ["000007"]
    assert not list(tmp_path.rglob(".*"))  # no temporary files left behind


def test_probabilities_round_trip_quantised_and_upsampled(tmp_path) -> None:
    rng = np.random.default_rng(1)
    logits = rng.normal(size=(5, 4, 6))
    probabilities = np.exp(logits) / np.exp(logits).sum(0, keepdims=True)
    write_semantic_map(tmp_path, "s", "f", np.zeros((8, 12), np.uint8), probabilities.astype(np.float16))
    assert probabilities_path(tmp_path, "s", "f").is_file()
    same = read_probabilities(tmp_path, "s", "f", size=(4, 6))
    assert same.shape == (5, 4, 6) and same.dtype == np.float32
    assert np.abs(same - probabilities).max() <= 1 / 510 + 1e-3  # float16 + uint8 rounding
    full = read_probabilities(tmp_path, "s", "f")  # the stored original size
    assert full.shape == (5, 8, 12)
    assert np.allclose(full.sum(0), 1.0, atol=0.02)
    # bilinear upsampling keeps values within the range of the source
    assert full.min() >= same.min() - 1e-6 and full.max() <= same.max() + 1e-6


def test_errors_name_the_file(tmp_path) -> None:
    with pytest.raises(HVPSError, match=r"0002/000001\.png"):
        read_semantic_map(tmp_path, "0002", "000001")
    with pytest.raises(HVPSError, match="no semantic cache for sequence 0009"):
        list_cached_frames(tmp_path, "0009")
    bad = probabilities_path(tmp_path, "s", "f")
    bad.parent.mkdir(parents=True)
    bad.write_bytes(b"not a zip")
    with pytest.raises(HVPSError, match=r"f\.probs\.npz: not a readable probability file"):
        read_probabilities(tmp_path, "s", "f")
    with pytest.raises(ValueError, match=r"0\.\.255"):
        write_semantic_map(tmp_path, "s", "g", np.array([[300]]))
