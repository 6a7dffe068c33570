"""The study registry: every study folder is registered, and a new study is its folder plus one
registry line (no edit to report.py, pytest_plugin.py, tox.ini or experiments/conftest.py)."""

from __future__ import annotations

import importlib
from pathlib import Path

import pandas as pd
import pytest

from steering_reliability import studies
from steering_reliability.studies import Study, register, registered

pytest_plugins = ["pytester"]

STUDIES_DIR = Path(studies.__file__).parent


def test_every_study_folder_is_registered_with_a_report_section_that_imports() -> None:
    folders = {p.parent.name for p in STUDIES_DIR.glob("*/__init__.py")}
    assert folders == {s.name for s in registered()}
    for study in registered():
        if study.report is not None:
            module = importlib.import_module(study.report)
            assert callable(module.report_section), study.name
            assert study.report.startswith(f"steering_reliability.studies.{study.name}.")
    markers = [s.marker for s in registered() if s.marker]
    assert len(markers) == len(set(markers))


def test_each_report_section_stays_silent_on_a_run_without_its_rows() -> None:
    """A run of one study renders that study's section only: the others answer None."""
    empty = pd.DataFrame({"experiment": pd.Series([], dtype=str)})
    for study in registered():
        if study.report is not None:
            section = importlib.import_module(study.report).report_section(empty, {}, "x")
            assert section is None, study.name


def test_register_replaces_a_study_of_the_same_name(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(studies, "_STUDIES", dict(studies._STUDIES))
    register(Study("toy", "toy", "first"))
    register(Study("toy", "toy", "second"))
    assert [s.description for s in registered() if s.name == "toy"] == ["second"]


TOY_REPORT = """
from steering_reliability.analysis.section import Section


def report_section(df, info, source):
    rows = df[df["experiment"] == "toy"]
    if rows.empty:
        return None
    rate = rows["is_refusal"].mean()
    return Section(f"## Toy study\\n\\nrefusal rate {rate:.2f} over {len(rows)} rows\\n")
"""

TOY_CONFTEST = """
import json
from pathlib import Path

from steering_reliability.studies import Study, register

register(Study("toy", "toy", "a toy study (test_toy.py)", "toy_study.report"))


def pytest_sr_load_config(config, path, overrides):
    return json.loads(Path("sr.json").read_text())
"""

TOY_TESTS = """
import pytest

pytestmark = [pytest.mark.toy, pytest.mark.experiment]


@pytest.mark.parametrize("n", [1, 2])
def test_toy(n, record):
    record.rows([{"experiment": "toy", "split": "benign", "prompt_id": f"p{i}",
                  "is_refusal": i < n, "completion": "x"} for i in range(4)])
"""


def test_a_toy_study_is_its_folder_and_one_registry_line(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Registered in a conftest (the registry line), a study the suite has never seen gets its
    marker (`-m toy` under --strict-markers), records its rows, and the report renders its
    section into findings.md."""
    monkeypatch.setattr(studies, "_STUDIES", dict(studies._STUDIES))
    package = pytester.mkpydir("toy_study")
    (package / "report.py").write_text(TOY_REPORT)
    pytester.syspathinsert()
    pytester.makeconftest(TOY_CONFTEST)
    pytester.makepyfile(test_toy=TOY_TESTS, test_other="def test_not_a_case():\n    pass\n")
    (pytester.path / "sr.json").write_text('{"model": {"name": "fake"}, "seed": 0}')
    result = pytester.runpytest_inprocess(
        "-p", "no:cacheprovider", "--strict-markers", "-m", "toy", "--resume", "never"
    )
    result.assert_outcomes(passed=2, deselected=1)
    run = next((pytester.path / "artifacts" / "runs").glob("2*"))
    findings = (run / "findings.md").read_text()
    assert findings.startswith(f"# Findings: {run.name}\n")
    assert "## Toy study\n\nrefusal rate 0.38 over 8 rows" in findings
    markers = pytester.runpytest_inprocess("-p", "no:cacheprovider", "--markers").stdout.str()
    assert "@pytest.mark.toy: a toy study (test_toy.py)" in markers


def test_each_study_check_resolves_and_refuses_its_own_bad_input(tmp_path: Path) -> None:
    """The input checks run before any model loads; the refusal-direction study's refuses a CE
    text that is not a file, naming the field."""
    from steering_reliability.config import load_config
    from steering_reliability.errors import ConfigError
    from steering_reliability.studies import check_inputs

    for study in registered():
        if study.check is not None:
            module, _, function = study.check.partition(":")
            assert callable(getattr(importlib.import_module(module), function)), study.name
    check_inputs(load_config("configs/fast.yaml"))  # the shipped inputs pass
    bad = load_config("configs/fast.yaml", {"refusal_direction.ce_text": str(tmp_path / "no.txt")})
    with pytest.raises(ConfigError, match="refusal_direction.ce_text"):
        check_inputs(bad)
