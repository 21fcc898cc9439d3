"""Smoke run of benchmarks/model_throughput.py at a tiny size (the numbers are its job, not this test's)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[3] / "benchmarks" / "model_throughput.py"


@pytest.mark.slow
def test_benchmark_prints_ratios_per_size_in_one_json_line() -> None:
    args = ["--sizes", "64x96,96x128", "--repeats", "1", "--warmup", "0", "--stream-frames", "3",
            "--rpn-top-n", "40", "--rpn-batch", "16", "--roi-batch", "8", "--objects", "2",
            "--detections", "3"]  # fmt: skip
    done = subprocess.run([sys.executable, str(SCRIPT), *args], capture_output=True, text=True, check=True,
                          timeout=600)  # fmt: skip
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["benchmark"] == "model_throughput" and set(result["sizes"]) == {"64x96", "96x128"}
    variants = {"ta1_sa1", "ta1_sa0", "ta0_sa1", "ta0_sa0"}
    for size in result["sizes"].values():
        assert set(size["train_step_ratio"]) == set(size["stream_frame_ratio"]) == variants
        assert all(r > 0 for r in size["stream_frame_ratio"].values())
        assert set(size["stream_frame_median_s"]) == {"plain_maskrcnn", *variants}
        assert min(size["min_detections_per_frame"].values()) == 3  # every model emits the same amount
    assert set(result["targets_met"]) == {"stream", "train_with_ta"}
