from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import yaml

from hvps_lightning.errors import HVPSError
from hvps_lightning.io import CONFIGS_DIR
from hvps_lightning.tracking.config import ParamRange, TrackerConfig

DEFAULT_YAML = CONFIGS_DIR / "tracker" / "default.yaml"


def test_default_yaml_holds_the_dataclass_defaults_and_ranges() -> None:
    document = yaml.safe_load(DEFAULT_YAML.read_text())
    fields = {f.name for f in dataclasses.fields(TrackerConfig)}
    assert set(document) == fields
    assert TrackerConfig.from_yaml(DEFAULT_YAML) == TrackerConfig()
    space = TrackerConfig.search_space()
    for name, entry in document.items():
        if name in space:
            assert entry == {"default": getattr(TrackerConfig(), name), **space[name].to_dict()}, name
        else:
            assert entry["kind"] == "fixed"
    # the file is what to_yaml(with_ranges=True) writes: regenerate it when a default changes
    assert DEFAULT_YAML.read_text() == TrackerConfig().to_yaml_text(with_ranges=True)


def test_every_default_lies_inside_its_search_range() -> None:
    config = TrackerConfig()
    for name, search in TrackerConfig.search_space().items():
        value = getattr(config, name)
        assert isinstance(search, ParamRange)
        if search.kind in ("float", "int"):
            assert search.low <= value <= search.high, name
            assert search.low < search.high
        else:
            assert value in search.choices, name
        # the range's ends are themselves valid configurations
        if search.kind in ("float", "int"):
            TrackerConfig.from_dict({name: search.low})
            TrackerConfig.from_dict({name: search.high})


def test_flat_yaml_round_trip(tmp_path: Path) -> None:
    config = TrackerConfig(min_hits=3, motion_model="kalman", long_term_enabled=False, reid_max_distance=0.25)
    config.to_yaml(tmp_path / "c.yaml")
    assert TrackerConfig.from_yaml(tmp_path / "c.yaml") == config
    assert TrackerConfig.from_dict(config.to_dict()) == config
    assert config.max_age == config.short_term_frames


def test_max_age_follows_the_enabled_windows() -> None:
    assert TrackerConfig().max_age == TrackerConfig().long_term_frames
    assert TrackerConfig(long_term_enabled=False).max_age == TrackerConfig().short_term_frames
    assert TrackerConfig(long_term_enabled=False, short_term_enabled=False).max_age == 0


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"min_hit": 2}, "unknown tracker parameter(s) min_hit"),
        ({"min_hits": 0}, "min_hits: 0 is outside the valid range"),
        ({"min_hits": 2.5}, "min_hits: expected an integer"),
        ({"short_term_enabled": "yes"}, "short_term_enabled: expected true or false"),
        ({"score_threshold": "high"}, "score_threshold: expected a number"),
        ({"score_threshold": float("nan")}, "score_threshold: NaN"),
        ({"embedding_momentum": 1.5}, "embedding_momentum: 1.5 is outside"),
        ({"motion_model": "linear"}, "motion_model: expected one of constant_velocity, kalman"),
        ({"gallery_size": {"low": 1}}, "gallery_size: an entry given as a mapping needs a 'default'"),
        ({"association": "greedy"}, "association: expected one of joint, cascade"),
        ({"reid_ratio": -0.5}, "reid_ratio: -0.5 is outside the valid range"),
        ({"tracklet_reid_frames": -1}, "tracklet_reid_frames: -1 is outside"),
        # contradictory settings name the key to change
        (
            {"short_term_frames": 20, "long_term_frames": 10},
            "long_term_frames: 10 is shorter than short_term_frames 20",
        ),
        ({"use_embeddings": False}, "long_term_enabled: re-ID needs embeddings"),
    ],
)
def test_bad_values_are_clear_errors(values: dict, message: str) -> None:
    with pytest.raises(HVPSError, match="tracker config") as info:
        TrackerConfig.from_dict(values)
    assert message in str(info.value)


def test_yaml_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "missing.yaml"
    with pytest.raises(HVPSError, match=r"missing\.yaml: no such file, and no shipped config"):
        TrackerConfig.from_yaml(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("min_hits: [1,\n")
    with pytest.raises(HVPSError, match=r"broken\.yaml: not valid YAML"):
        TrackerConfig.from_yaml(broken)
    typo = tmp_path / "typo.yaml"
    typo.write_text("min_hits: 2\nlong_term_frame: 10\n")
    with pytest.raises(HVPSError, match=r"typo\.yaml: unknown tracker parameter.*long_term_frame"):
        TrackerConfig.from_yaml(typo)
    listing = tmp_path / "list.yaml"
    listing.write_text("- 1\n- 2\n")
    with pytest.raises(HVPSError, match=r"list\.yaml: expected a mapping"):
        TrackerConfig.from_yaml(listing)
    empty = tmp_path / "empty.yaml"
    empty.write_text("")
    assert TrackerConfig.from_yaml(empty) == TrackerConfig()


def test_replace_checks_values() -> None:
    assert TrackerConfig().replace(min_hits=4).min_hits == 4
    with pytest.raises(HVPSError):
        TrackerConfig().replace(min_hits=-1)


def test_contradictions_only_count_between_enabled_stages() -> None:
    assert (
        TrackerConfig(short_term_frames=20, long_term_frames=10, long_term_enabled=False).long_term_frames
        == 10
    )
    assert (
        TrackerConfig(short_term_frames=20, long_term_frames=10, short_term_enabled=False).short_term_frames
        == 20
    )
    assert not TrackerConfig(use_embeddings=False, long_term_enabled=False).use_embeddings
    # sampled search ranges never contradict each other
    space = TrackerConfig.search_space()
    assert space["long_term_frames"].low >= space["short_term_frames"].high


def test_previous_release_config_keeps_the_old_values_and_infinite_switches(tmp_path: Path) -> None:
    previous = TrackerConfig.from_yaml(DEFAULT_YAML.parent / "previous_release.yaml")
    assert (
        previous.association == "cascade"
        and previous.tracklet_reid_frames == 0
        and not previous.camera_motion
    )
    assert previous.short_term_max_embedding_distance == 0.7 and previous.long_term_frames == 60
    assert previous.reid_ratio == float("inf") and previous.reid_max_centre_distance == float("inf")
    previous.to_yaml(tmp_path / "p.yaml")
    assert TrackerConfig.from_yaml(tmp_path / "p.yaml") == previous  # .inf survives YAML
