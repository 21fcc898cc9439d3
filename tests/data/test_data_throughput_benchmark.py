"""Smoke run of benchmarks/data_throughput.py (loader vs decode-only throughput of the mot_step configs)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "data_throughput.py"


@pytest.mark.slow
def test_benchmark_runs_and_prints_one_json_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("data_throughput_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    arguments = ["--frames", "4", "--height", "96", "--width", "160", "--repeats", "1", "--cache"]
    assert module.main(arguments) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for config, clips_per_item in (("mots", 2), ("semantic", 1)):
        numbers = result[config]
        assert numbers["clips_per_s"] > 0 and numbers["decode_ratio"] > 0 and numbers["cache_clips_per_s"] > 0
        # every clip read its target frame's map and at least one image
        assert numbers["files_per_clip"] >= 2 and numbers["clips"] % clips_per_item == 0
    from hvps_lightning.data import datasets, loaders

    # the readers the benchmark wrapped to record the files are the loaders' own again
    assert loaders.decode_image is datasets.decode_image
    assert loaders.decode_image.__module__ == loaders.__name__
