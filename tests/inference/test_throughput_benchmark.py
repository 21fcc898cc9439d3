"""Smoke run of benchmarks/infer_throughput.py at a tiny size (the numbers are its job, not this test's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "infer_throughput.py"


@pytest.mark.slow
def test_benchmark_prints_pipeline_and_parts_rates_in_one_json_line() -> None:
    args = ["--size", "96x160", "--frames", "6", "--repeats", "1", "--warmup", "0"]
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=True,
                          timeout=600)  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert list(result)[:3] == ["frames_per_s", "parts_frames_per_s", "overhead"]
    assert result["frames_per_s"] > 0 and result["parts_frames_per_s"] > 0
    assert set(result["parts_s"]) == {"prepare", "mots", "semantic", "tracker", "fusion", "writing"}
    assert result["tracked_objects"] > 0  # the tracker, the fusion and the MOTS txt had work to do
