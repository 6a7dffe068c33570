"""The sweep's report section: summary.csv (report part; the operating point chosen on the
select part, whose own numbers are in summary_select.csv), the trade-off and shift figures,
examples.md, the findings that open findings.md, and the report stage's own sanity check
(collapse at the operating point)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from steering_reliability.analysis import markdown as md
from steering_reliability.analysis.data import SANITY_PREFIX, SWEEP, check_rows
from steering_reliability.analysis.section import Section
from steering_reliability.studies.sweep.report.aggregate import (
    choose_operating_point,
    estimate,
    has_parts,
    operating_point_row,
    part_rows,
    setting_key,
    setting_label,
    shift_rates,
    summarize,
)
from steering_reliability.studies.sweep.report.examples import render_examples
from steering_reliability.studies.sweep.report.figures import build_figures
from steering_reliability.studies.sweep.report.findings import render_findings
from steering_reliability.studies.sweep.report.sanity import (
    collapse_at_operating_point,
    sanity_table,
)
from steering_reliability.verdict import Verdict


def summary_csv_text(summary: pd.DataFrame) -> str:
    """The summary table as CSV text (fixed float format, '\\n' line ends)."""
    return summary.to_csv(index=False, float_format="%.6g", lineterminator="\n")


def report_section(df: pd.DataFrame, info: Mapping[str, Any], source: str) -> Section | None:
    """The sweep's part of the report; None when the run has no sweep rows."""
    if not (df["experiment"] == SWEEP).any():
        return None
    check_rows(df, source=source)
    # Choose on the select part, report on the report part (VALIDITY.md section 1).
    report_df = part_rows(df, "report")
    select_summary = summarize(part_rows(df, "select"))
    op_key = setting_key(choose_operating_point(select_summary))
    summary = summarize(report_df, operating_point=op_key)
    op = operating_point_row(summary)
    checks = (collapse_at_operating_point(summary),)
    findings = render_findings(
        report_df, summary, info, select_summary=select_summary, parts=has_parts(df),
        analysis_checks=checks,
    )  # fmt: skip
    return Section(
        findings,
        figures=build_figures(summary, shift_rates(report_df, op), report_df, select_summary),
        files={
            "summary.csv": summary_csv_text(summary).encode("utf-8"),
            "summary_select.csv": summary_csv_text(select_summary).encode("utf-8"),
            "examples.md": render_examples(report_df, summary).encode("utf-8"),
        },
        checks=checks,
        headline=headline(report_df, summary, checks, has_parts(df)),
        lead=True,
    )


def headline(
    df: pd.DataFrame, summary: pd.DataFrame, checks: Sequence[Verdict], parts: bool
) -> tuple[str, ...]:
    """Two lines: the operating point's numbers and the sanity tally (for the session's end)."""
    op = operating_point_row(summary)
    where = "chosen on select, measured on report prompts" if parts else "one set of prompts"
    tally, _ = sanity_table(df[df["experiment"].str.startswith(SANITY_PREFIX)], checks)
    return (
        f"operating point {setting_label(op)} ({where}): harm_test refusal "
        f"{md.ci(estimate(op, 'harm_test_refusal'))} (change "
        f"{md.ci(estimate(op, 'harm_test_refusal_change'))}), benign helpful drop "
        f"{md.ci(estimate(op, 'helpful_drop'))}",
        f"sanity checks: {tally.replace(chr(92), '')}",
    )
