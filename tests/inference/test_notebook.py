"""notebooks/infer.ipynb runs end to end on a generated video with a bundle."""

from __future__ import annotations

import os
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

NOTEBOOK = Path(__file__).resolve().parents[2] / "notebooks" / "infer.ipynb"


@pytest.mark.slow
def test_infer_notebook_runs_the_five_lines_and_the_cli(bundle: Path, tmp_path: Path) -> None:
    env = {"HVPS_NOTEBOOK_QUICK": "1", "HVPS_NOTEBOOK_OUT": str(tmp_path / "out"),
           "HVPS_NOTEBOOK_MODEL": str(bundle)}  # fmt: skip
    old = {k: os.environ.get(k) for k in env}
    os.environ.update(env)
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        NotebookClient(
            nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(tmp_path)}}
        ).execute()
    finally:
        for key, value in old.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    outputs = [o for cell in nb.cells if cell.cell_type == "code" for o in cell.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    assert any("image/png" in o.get("data", {}) for o in outputs)  # the overlays
    assert (tmp_path / "out" / "street.mp4").is_file()
    assert len(list((tmp_path / "out" / "infer" / "step").rglob("*.png"))) == 8
