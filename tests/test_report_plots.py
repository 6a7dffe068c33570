"""Figure functions build labelled figures from DataFrames without touching the file system."""

from __future__ import annotations

import builtins
import io
import os
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from matplotlib.figure import Figure

from steering_reliability.analysis.data import prepare
from steering_reliability.records.schema import rows_to_table
from steering_reliability.studies.sweep.report.aggregate import (
    choose_operating_point,
    shift_rates,
    summarize,
)
from steering_reliability.studies.sweep.report.figures import build_figures
from test_report_synthetic import synthetic_rows


@pytest.fixture(scope="module")
def inputs() -> tuple[pd.DataFrame, pd.DataFrame]:
    df = prepare(rows_to_table(synthetic_rows()).to_pandas())
    summary = summarize(df)
    return summary, shift_rates(df, choose_operating_point(summary))


def _deny(*args: Any, **kwargs: Any) -> Any:
    raise AssertionError(f"a figure function tried to do I/O: {args!r}")


def test_figure_functions_do_no_io(
    inputs: tuple[pd.DataFrame, pd.DataFrame], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    with monkeypatch.context() as patched:
        for target in (builtins, io):
            patched.setattr(target, "open", _deny)
        patched.setattr(os, "open", _deny)
        patched.setattr(Figure, "savefig", _deny)
        figures = build_figures(*inputs)
    assert list(tmp_path.iterdir()) == []
    assert list(figures) == [
        "generalisation_gap", "tradeoff", "heatmaps", "confounds", "refusal_by_shift"
    ]  # fmt: skip
    assert all(isinstance(fig, Figure) for fig in figures.values())


def test_figures_are_labelled_and_have_legends(inputs: tuple[pd.DataFrame, pd.DataFrame]) -> None:
    for name, fig in build_figures(*inputs).items():
        plots = [ax for ax in fig.axes if ax.get_label() != "<colorbar>"]
        assert plots, name
        for ax in plots:
            assert ax.get_xlabel() or ax.get_title(), (name, "axes without x label or title")
        assert any(ax.get_ylabel() for ax in plots), (name, "no y label")
        has_legend = bool(fig.legends) or any(ax.get_legend() for ax in plots)
        assert has_legend or name == "heatmaps", (name, "no legend")
        assert fig.get_suptitle() or plots[0].get_title(), name


def test_heatmaps_have_a_row_per_intervention_and_colorbars(
    inputs: tuple[pd.DataFrame, pd.DataFrame],
) -> None:
    fig = build_figures(*inputs)["heatmaps"]
    titles = sorted(ax.get_title() for ax in fig.axes if ax.get_title())
    assert titles == [
        "benign helpful rate: ablate", "benign helpful rate: add",
        "harm_test refusal rate: ablate", "harm_test refusal rate: add",
    ]  # fmt: skip
    assert sum(ax.get_label() == "<colorbar>" for ax in fig.axes) == 4
