"""Fixtures of the sweep tests: settings over the real TrackerConfig with a stub evaluator."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from hvps_lightning.sweeps.storage import default_storage_url
from hvps_lightning.sweeps.study import SweepSettings
from hvps_lightning.tracking.config import TrackerConfig

HERE = Path(__file__).parent


def wait_for_bytes(
    path_glob: Callable[[], list[Path]], needles: list[bytes], timeout_s: float = 60.0
) -> bytes:
    """Return the bytes of the one file ``path_glob()`` finds once they hold every needle.

    W&B's ``run.finish()`` returns before its service process has flushed the offline
    ``run-*.wandb`` file, so tests wait for the records instead of reading at once.
    """
    deadline = time.monotonic() + timeout_s
    data = b""
    while time.monotonic() < deadline:
        paths = path_glob()
        assert len(paths) <= 1, paths
        data = paths[0].read_bytes() if paths else b""
        if all(n in data for n in needles):
            return data
        time.sleep(0.2)
    raise AssertionError(f"W&B records {needles} never appeared ({len(data)} bytes)")


@pytest.fixture
def wandb_records() -> Callable[..., bytes]:
    """:func:`wait_for_bytes` as a fixture (test modules do not import each other)."""
    return wait_for_bytes


@pytest.fixture
def stub_on_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """Make ``hvps_sweep_stub`` importable here and in spawned workers (they inherit sys.path)."""
    monkeypatch.syspath_prepend(str(HERE))


@pytest.fixture
def make_settings(tmp_path: Path, stub_on_path: None) -> Callable[..., SweepSettings]:
    """Build sweep settings with the stub evaluator; keyword arguments override fields."""

    def make(stub: dict[str, Any] | None = None, **overrides: Any) -> SweepSettings:
        values: dict[str, Any] = {
            "storage_url": default_storage_url(tmp_path),
            "study_name": "test",
            "objective": "aq",
            "n_trials": 5,
            "sampler": "random",
            "seed": 0,
            "base_params": TrackerConfig().to_dict(),
            "evaluator": "hvps_sweep_stub:load",
            "evaluator_kwargs": dict(stub or {}),
        }
        values.update(overrides)
        return SweepSettings(**values)

    return make


@pytest.fixture(scope="session")
def sim_cache(synth_mot_step_root: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A detection cache of noisy GT-derived detections over the generated MOTChallenge-STEP root.

    Returns ``{"root": dataset root, "cache": detection cache, "semantic": semantic cache}``; the
    semantic cache holds the GT semantic maps (a perfect semantic model).
    """
    from hvps_lightning.formats import read_mots_txt, read_step_png
    from hvps_lightning.formats.detection_cache import write_detection_cache
    from hvps_lightning.formats.semantic_cache import write_semantic_map
    from hvps_lightning.tracking.simulate import gt_frames_from_mots, simulate_detections

    out = tmp_path_factory.mktemp("sweep_cache")
    cache, semantic = out / "cache", out / "semantic"
    maps = synth_mot_step_root / "panoptic_maps" / "train"
    for index, txt in enumerate(sorted((synth_mot_step_root / "instances_txt" / "train").glob("*.txt"))):
        sequence = txt.stem
        frame_names = sorted(p.stem for p in (maps / sequence).glob("*.png"))
        gt = gt_frames_from_mots(read_mots_txt(txt), {2: 4}, frame_names)
        frames = simulate_detections(
            gt, seed=index, drop_rate=0.15, embedding_noise=0.6, false_positives_per_frame=0.5
        )
        write_detection_cache(cache, sequence, frames, {"dataset": "motchallenge_step"})
        for frame in frame_names:
            gt_semantic, _ = read_step_png(maps / sequence / f"{frame}.png")
            write_semantic_map(semantic, sequence, frame, gt_semantic.astype("uint8"))
    return {"root": synth_mot_step_root, "cache": cache, "semantic": semantic}
