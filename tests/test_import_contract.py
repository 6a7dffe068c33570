"""The import contract (.importlinter) holds on the package, and fails on an import that reaches
up a layer or from one study into another (checked on a copy with such an import added)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

import steering_reliability

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = Path(steering_reliability.__file__).resolve().parent
LINT = Path(sys.executable).parent / "lint-imports"

pytestmark = pytest.mark.skipif(not LINT.exists(), reason="import-linter is not installed")


def _lint(src: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(src)}
    return subprocess.run([str(LINT), "--no-cache", "--config", str(ROOT / ".importlinter")],
                          cwd=src, env=env, capture_output=True, text=True, timeout=120)  # fmt: skip


def _copy(tmp_path: Path) -> Path:
    shutil.copytree(PACKAGE, tmp_path / "steering_reliability",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    return tmp_path / "steering_reliability"


def test_the_package_keeps_its_contracts(tmp_path: Path) -> None:
    _copy(tmp_path)
    result = _lint(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "2 kept, 0 broken" in result.stdout


@pytest.mark.parametrize(
    ("module", "line", "broken"),
    [
        ("models/sites.py", "from steering_reliability import config  # noqa", "Layers"),
        ("records/store.py", "from steering_reliability import report  # noqa", "Layers"),
        ("studies/generalisation/measures.py",
         "from steering_reliability.studies.refusal_direction import selection  # noqa",
         "Studies"),
    ],
)  # fmt: skip
def test_an_import_that_reaches_up_breaks_a_contract(
    tmp_path: Path, module: str, line: str, broken: str
) -> None:
    path = _copy(tmp_path) / module
    path.write_text(path.read_text() + f"\n{line}\n")
    result = _lint(tmp_path)
    assert result.returncode != 0
    assert f"{broken}" in result.stdout and "BROKEN" in result.stdout
