"""The notebooks run top to bottom, headless: 03 on a synthetic run, 01 on the embedded model."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from test_report_synthetic import write_run

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def _run(name: str, parameters: str, cwd: Path) -> Any:
    """Execute a notebook with its `parameters` cell replaced; return the executed notebook."""
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    nb = nbformat.read(NOTEBOOKS / name, as_version=4)
    tagged = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    assert len(tagged) == 1, f"{name} must have exactly one cell tagged 'parameters'"
    tagged[0].source = parameters
    nbclient.NotebookClient(
        nb, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(cwd)}}
    ).execute()
    return nb


def _outputs(nb: Any) -> str:
    return "\n".join(
        str(o.get("text", "")) + str(o.get("data", {}).get("text/plain", ""))
        for c in nb.cells
        if c.cell_type == "code"
        for o in c.get("outputs", [])
    )


def test_every_notebook_has_one_parameters_cell() -> None:
    nbformat = pytest.importorskip("nbformat")
    for path in sorted(NOTEBOOKS.glob("*.ipynb")):
        nb = nbformat.read(path, as_version=4)
        tags = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
        assert len(tags) == 1, path.name
        assert all(not c.get("outputs") for c in nb.cells if c.cell_type == "code"), (
            f"{path.name} has saved outputs"
        )


def test_analysis_notebook_renders_a_run(tmp_path: Path) -> None:
    run = write_run(tmp_path / "run")
    nb = _run("03_analysis.ipynb", f"RUN_DIR = {str(run)!r}", tmp_path)
    assert (run / "summary.csv").exists() and (run / "findings.md").exists()
    assert "summary.csv" in _outputs(nb)


@pytest.mark.slow
def test_smoke_notebook_runs_on_the_embedded_model(tmp_path: Path) -> None:
    nb = _run(
        "01_smoke.ipynb",
        'CONFIG = "configs/fast.yaml"\nMODEL = None\nLAYER = 12\nALPHA = 1.0\n'
        "N_PROMPTS = 2\nMAX_NEW_TOKENS = 8",
        tmp_path,
    )
    assert "baseline" in _outputs(nb) and "steered" in _outputs(nb)
