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
    DEFAULT_RULE,
    benchmark_columns,
    choose_points,
    estimate,
    has_parts,
    operating_point_row,
    part_rows,
    point_row,
    point_works,
    setting_label,
    shift_rates,
    summarize,
)
from steering_reliability.studies.sweep.report.examples import render_examples
from steering_reliability.studies.sweep.report.figures import build_figures
from steering_reliability.studies.sweep.report.findings import render_findings
from steering_reliability.studies.sweep.report.ladder import ladder_figure, ladder_table, rungs
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
    # Choose on the select part, report on the report part (VALIDITY.md section 1); the
    # headline operating point is chosen on in-distribution prompts only (harm_train, benign).
    report_df = part_rows(df, "report")
    select_summary = summarize(part_rows(df, "select"))
    summary = summarize(report_df, chosen=choose_points(select_summary))
    op = operating_point_row(summary)
    checks = (collapse_at_operating_point(summary),)
    ladder = rungs(summary, select_summary, DEFAULT_RULE)
    table = ladder_table(report_df, summary, ladder)
    findings = render_findings(
        report_df, summary, info, select_summary=select_summary, parts=has_parts(df),
        analysis_checks=checks, ladder=(ladder, table),
    )  # fmt: skip
    figures = build_figures(summary, shift_rates(report_df, op), report_df, select_summary)
    figures["shift_ladder"] = ladder_figure(summary, table, ladder)
    return Section(
        findings,
        figures=figures,
        files={
            "summary.csv": summary_csv_text(summary).encode("utf-8"),
            "summary_select.csv": summary_csv_text(select_summary).encode("utf-8"),
            "shift_ladder.csv": summary_csv_text(table).encode("utf-8"),
            "examples.md": render_examples(report_df, summary).encode("utf-8"),
        },
        checks=checks,
        headline=headline(report_df, summary, checks, has_parts(df), select_summary),
        lead=True,
    )


def headline(
    df: pd.DataFrame,
    summary: pd.DataFrame,
    checks: Sequence[Verdict],
    parts: bool,
    select: pd.DataFrame | None = None,
) -> tuple[str, ...]:
    """The session's closing lines: the in-distribution operating point (whether it works, its
    refusal on each rung and its benign cost), the point tuned on the shift, the sanity tally."""
    op, shift = operating_point_row(summary), point_row(summary, "shift_tuned")
    where = "chosen on select, measured on report prompts" if parts else "one set of prompts"
    tally, _ = sanity_table(df[df["experiment"].str.startswith(SANITY_PREFIX)], checks)
    rungs_ = benchmark_columns(summary)

    def numbers(row: pd.Series) -> str:
        on = ", ".join(f"{s} {md.ci(estimate(row, f'{s}_refusal'))}"
                       for s in ("harm_train", "harm_test", *rungs_))  # fmt: skip
        return f"refusal {on}; benign helpful drop {md.ci(estimate(row, 'helpful_drop'))}"

    works = point_works(select if select is not None else summary)
    state = "works in distribution" if works else (
        "no setting works in distribution within the benign budget")  # fmt: skip
    return (
        f"in-distribution operating point {setting_label(op)} ({where}; {state}): {numbers(op)}",
        f"tuned on the shift (best case) {setting_label(shift)}: {numbers(shift)}",
        f"sanity checks: {tally.replace(chr(92), '')}",
    )
