"""Smoke run of benchmarks/fusion_rules.py (the script that picked the fusion's default rule)."""

from __future__ import annotations

import importlib.util
import json
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "fusion_rules.py"


@pytest.mark.slow
def test_benchmark_runs_and_prints_one_json_line(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    spec = importlib.util.spec_from_file_location("fusion_rules_benchmark", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # dataclasses look their module up there
    spec.loader.exec_module(module)
    assert module.main(["--sequences", "1", "--frames", "3", "--height", "72", "--width", "128"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert result["benchmark"] == "fusion_rules" and result["frames"] == 3
    assert set(result["mean_stq"]) == {"void", "stuff", "crowd"}
    for scenario in result["results"].values():
        for numbers in scenario.values():
            assert 0.0 <= numbers["stq"] <= 1.0
        # void predictions on valid ground truth add a zero-IoU class: never better than crowd
        assert scenario["crowd"]["sq"] >= scenario["void"]["sq"]
