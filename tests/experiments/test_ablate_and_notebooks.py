"""`hvps ablate` at smoke size, the ablation-analysis notebook on its output, and the quickstart notebook."""

from __future__ import annotations

import csv
import json
import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient
from wandb_offline import find_offline_runs, read_offline_run

from hvps_lightning.cli import main
from hvps_lightning.cli.ablate import METRICS, TRACKER_VARIANTS

NOTEBOOKS = Path(__file__).resolve().parents[2] / "notebooks"


def execute(notebook: str, cwd: Path, env: dict[str, str]) -> nbformat.NotebookNode:
    nb = nbformat.read(NOTEBOOKS / notebook, as_version=4)
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        resources = {"metadata": {"path": str(cwd)}}
        client = NotebookClient(nb, timeout=600, kernel_name="python3", resources=resources)
        client.execute()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    return nb


@pytest.fixture(scope="module")
def ablation(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("ablate")
    code = main(["ablate", "--fast", "--steps", "2", "--frames", "8", "--seeds", "0", "1",
                 "--block-frames", "4", "--out", str(tmp / "out"), "--data-root", str(tmp / "data"),
                 "--quiet"])  # fmt: skip
    assert code == 0
    return tmp / "out"


@pytest.mark.slow
def test_ablate_writes_table_plot_csv_and_grouped_wandb_runs(ablation: Path) -> None:
    rows = list(csv.DictReader((ablation / "ablation.csv").open()))
    variants = {(r["temporal_attention"], r["spatial_attention"]) for r in rows if r["group"] == "TA/SA"}
    assert variants == {("True", "True"), ("True", "False"), ("False", "True"), ("False", "False")}
    assert {r["tracker"] for r in rows} == set(TRACKER_VARIANTS)
    for row in rows:
        for key in METRICS:
            assert row[key] != "", (key, row)
        assert 0.0 <= float(row["aq"]) <= 1.0
    assert {r["seed"] for r in rows} == {"0", "1"} and len(rows) == 7 * 2
    table = (ablation / "ablation.md").read_text()
    # the means table (header + 7 variants) and the differences table (header + 6 variants)
    assert table.count("\n| ") == (1 + 7) + (1 + 6)
    assert "[" in table and "Resolved:" in table
    analysis = json.loads((ablation / "ablation.json").read_text())
    assert len(analysis["variants"]) == 7 and analysis["reference"] == "TA on / SA on / full tracker"
    assert (ablation / "ablation.png").stat().st_size > 5000
    runs = [read_offline_run(run) for run in find_offline_runs(ablation / "wandb")]
    groups = {r.group for r in runs}
    assert len(groups) == 1 and groups.pop().startswith("ablation-")
    evals = [r for r in runs if r.name.startswith("eval-")]
    assert len(evals) == len(rows) and all("ablation/aq" in r.summary for r in evals)
    assert sum(1 for r in runs if r.name.startswith("ta_")) == 4 * 2  # the training runs
    assert sum(1 for r in runs if r.name.startswith("predict-")) == 4 * 2  # their caches' runs
    assert sum(1 for r in runs if r.name == "ablation-summary") == 1


@pytest.mark.slow
def test_ablation_analysis_notebook_reads_the_ablation(ablation: Path, tmp_path: Path) -> None:
    nb = execute("ablation_analysis.ipynb", tmp_path, {"HVPS_ABLATION_DIR": str(ablation)})
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)


@pytest.mark.slow
def test_quickstart_notebook_runs_end_to_end(tmp_path: Path) -> None:
    env = {"HVPS_NOTEBOOK_QUICK": "1", "HVPS_NOTEBOOK_OUT": str(tmp_path / "out"),
           "WANDB_MODE": "offline"}  # fmt: skip
    nb = execute("quickstart.ipynb", tmp_path, env)
    assert (tmp_path / "out" / "stq.json").is_file()
    images = [o for cell in nb.cells for o in cell.get("outputs", []) if "image/png" in o.get("data", {})]
    assert len(images) >= 2  # the ground-truth figure and the tracked overlays


def test_ablate_rejects_bad_arguments(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["ablate", "--steps", "0", "--out", str(tmp_path / "o"), "--data-root", str(tmp_path / "d")])
    assert code == 2
    assert "--steps" in capsys.readouterr().err
