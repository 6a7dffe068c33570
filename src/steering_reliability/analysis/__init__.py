"""Report analysis: rates with bootstrap intervals, Pareto frontier, operating point, figures,
examples.md and findings.md, all computed from a run's results.parquet (see report.py)."""

from __future__ import annotations

from steering_reliability.analysis.aggregate import (
    DEFAULT_RULE,
    OperatingPointRule,
    choose_operating_point,
    explain_choice,
    pareto_front,
    summarize,
)
from steering_reliability.analysis.data import ReportInputError, load_results, prepare

__all__ = [
    "DEFAULT_RULE",
    "OperatingPointRule",
    "ReportInputError",
    "choose_operating_point",
    "explain_choice",
    "load_results",
    "pareto_front",
    "prepare",
    "summarize",
]
