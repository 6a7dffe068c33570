"""Unusable results give a ReportInputError that names what is missing."""

from __future__ import annotations

import json
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from steering_reliability.analysis.data import ReportInputError, load_results, load_run_info, lookup
from steering_reliability.errors import SteeringReliabilityError
from steering_reliability.records.schema import rows_to_table
from steering_reliability.report import main, render
from test_report_synthetic import synthetic_rows, write_run


def test_missing_columns_are_named(tmp_path: Path) -> None:
    table = rows_to_table(synthetic_rows()).drop_columns(["is_refusal", "collapsed"])
    pq.write_table(table, tmp_path / "results.parquet")
    with pytest.raises(ReportInputError) as info:
        render(tmp_path)
    message = str(info.value)
    assert "missing required column(s): is_refusal, collapsed" in message
    assert str(tmp_path / "results.parquet") in message
    assert isinstance(info.value, SteeringReliabilityError)


def test_empty_parquet_says_it_has_no_rows(tmp_path: Path) -> None:
    pq.write_table(rows_to_table([]), tmp_path / "results.parquet")
    with pytest.raises(ReportInputError, match="results have no rows"):
        render(tmp_path)


def test_missing_results_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(ReportInputError, match="results file not found") as info:
        render(tmp_path / "nowhere")
    assert "results.parquet" in str(info.value)


@pytest.mark.parametrize(
    ("dropped", "message"),
    [("sweep", "no steered sweep rows"), ("baseline", "no unsteered baseline rows")],
)
def test_missing_row_kinds_are_named(tmp_path: Path, dropped: str, message: str) -> None:
    write_run(tmp_path, [r for r in synthetic_rows() if r["experiment"] != dropped])
    with pytest.raises(ReportInputError, match=message):
        render(tmp_path)


def test_cli_reports_bad_input_on_stderr(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    pq.write_table(rows_to_table([]), tmp_path / "results.parquet")
    assert main([str(tmp_path)]) == 2
    assert "results have no rows" in capsys.readouterr().err


def test_run_json_is_read_defensively(tmp_path: Path) -> None:
    assert load_run_info(tmp_path / "run.json") == {}
    (tmp_path / "run.json").write_text("[1, 2]", encoding="utf-8")
    with pytest.raises(ReportInputError, match="not a JSON object"):
        load_run_info(tmp_path / "run.json")
    (tmp_path / "run.json").write_text("{broken", encoding="utf-8")
    with pytest.raises(ReportInputError, match="cannot read run.json"):
        load_run_info(tmp_path / "run.json")
    info = {"config": {"sweep": {"layers": [6, 12]}, "model.name": "m"}}
    (tmp_path / "run.json").write_text(json.dumps(info), encoding="utf-8")
    loaded = load_run_info(tmp_path / "run.json")
    assert lookup(loaded, "sweep.layers") == [6, 12]
    assert lookup(loaded, "model.name") == "m"
    assert lookup(loaded, "direction.alpha_scale", "n/a") == "n/a"


def test_optional_columns_may_be_absent(tmp_path: Path) -> None:
    table = rows_to_table(synthetic_rows()).drop_columns(["kl_to_baseline", "extra_json"])
    pq.write_table(table, tmp_path / "results.parquet")
    df = load_results(tmp_path / "results.parquet")
    assert df["kl_to_baseline"].isna().all()
