"""Smoke run of benchmarks/gpu_check.py on the CPU at a tiny size (the GPU run waits for a GPU)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "gpu_check.py"


@pytest.mark.slow
def test_gpu_check_runs_on_the_cpu_and_prints_one_json_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("gpu_check_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)
    spec.loader.exec_module(module)
    arguments = ["--cpu", "--height", "64", "--width", "96", "--steps", "3", "--warmup", "1", "--frames", "6",
                 "--workers", "0", "--keep", str(tmp_path / "work")]  # fmt: skip
    assert module.main(arguments) == 0
    result = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert result["benchmark"] == "gpu_check" and result["device"] == "cpu" and result["size"] == [64, 96]
    for model in ("mots", "semantic"):
        numbers = result[model]
        assert numbers["steps"] == 3 and numbers["timed_steps"] == 2
        assert numbers["images_per_s"] > 0 and numbers["step_s"] > 0 and numbers["max_memory_gb"] is None
    assert result["mots"]["frames_per_s"] == pytest.approx(3 * result["mots"]["images_per_s"], rel=1e-2)
    assert result["stq_cuda_equals_cpu"] is True
    # the paper-scale configs at the generated size: the data it trained on is the generated root
    assert (tmp_path / "work" / "motchallenge_step" / "panoptic_maps" / "train" / "0009").is_dir()
