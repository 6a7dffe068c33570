"""Render a run directory's report: `python -m steering_reliability.report RUN_DIR`.

Reads only `results.parquet` and `run.json` in RUN_DIR and writes, into RUN_DIR, summary.csv
(report-part numbers; the operating point chosen on the select part, whose own numbers are in
summary_select.csv), figures/*.png and *.svg, examples.md and findings.md. The report stage runs
one sanity check of its own on the finished sweep (collapse at the operating point): when it
fails, the files are still written and the command exits 1. Rendering twice gives identical bytes
(fixed bootstrap seed, fixed SVG hash salt, no dates in figure metadata). `make report` and the
pytest plugin at session end both call `render`.
"""

from __future__ import annotations

import argparse
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import matplotlib
import pandas as pd
from matplotlib.figure import Figure

from steering_reliability.analysis import behaviours as beh
from steering_reliability.analysis import generalisation as gen
from steering_reliability.analysis import refusal_direction as rd
from steering_reliability.analysis.aggregate import (
    choose_operating_point,
    has_parts,
    operating_point_row,
    part_rows,
    setting_key,
    shift_rates,
    summarize,
)
from steering_reliability.analysis.data import check_rows, load_results, load_run_info
from steering_reliability.analysis.examples import render_examples
from steering_reliability.analysis.findings import render_findings
from steering_reliability.analysis.plots import build_figures
from steering_reliability.analysis.sanity import collapse_at_operating_point
from steering_reliability.checks import Verdict
from steering_reliability.errors import SteeringReliabilityError
from steering_reliability.records.run import resolve_run_dir

from .atomic import atomic_write_bytes

DEFAULT_RUN_DIR = Path("artifacts/runs/latest")
FIGURE_FORMATS = ("png", "svg")
# Drop the creation date (SVG) and tool version stamps so the bytes depend on the data only.
_METADATA = {"png": {"Software": None}, "svg": {"Date": None, "Creator": None}}


@dataclass(frozen=True)
class ReportPaths:
    """Where `render` wrote each output."""

    run_dir: Path
    summary_csv: Path
    figures: tuple[Path, ...]
    examples_md: Path
    findings_md: Path
    checks: tuple[Verdict, ...] = ()  # the report stage's own sanity checks
    headline: tuple[str, ...] = ()  # what the session's last lines say about the run

    @property
    def failed(self) -> list[Verdict]:
        return [v for v in self.checks if v.verdict == "failed"]


def summary_csv_text(summary: pd.DataFrame) -> str:
    """The summary table as CSV text (fixed float format, '\\n' line ends)."""
    return summary.to_csv(index=False, float_format="%.6g", lineterminator="\n")


def figure_bytes(fig: Figure, fmt: str) -> bytes:
    """One figure encoded without dates, so re-rendering gives the same bytes."""
    buffer = io.BytesIO()
    # A fixed hash salt makes SVG element ids reproducible; glyphs as paths need no fonts.
    with matplotlib.rc_context({"svg.hashsalt": "steering-reliability", "svg.fonttype": "path"}):
        fig.savefig(buffer, format=fmt, dpi=150, metadata=_METADATA[fmt])
    return buffer.getvalue()


def render(run_dir: str | Path) -> ReportPaths:
    """Render every report output of one run directory into it; return their paths.

    `run_dir` may be `<runs>/latest` (a symlink, or the LATEST file where symlinks fail).
    Raises ReportInputError (a SteeringReliabilityError) when the results cannot be used.
    """
    run_dir = resolve_run_dir(run_dir)
    results_path = run_dir / "results.parquet"
    df = load_results(results_path)
    if not (df["experiment"] == "sweep").any() and _has_sections(df):
        return _render_sections_only(run_dir, df, load_run_info(run_dir / "run.json"))
    check_rows(df, source=str(results_path))
    info = load_run_info(run_dir / "run.json")
    # Choose on the select part, report on the report part (VALIDITY.md section 1).
    report_df = part_rows(df, "report")
    select_summary = summarize(part_rows(df, "select"))
    op_key = setting_key(choose_operating_point(select_summary))
    summary = summarize(report_df, operating_point=op_key)
    op = operating_point_row(summary)
    checks = (collapse_at_operating_point(summary),)
    figures: list[Path] = []
    figs = build_figures(summary, shift_rates(report_df, op), report_df, select_summary)
    figs |= _section_figures(df, info)
    for stem, fig in figs.items():
        for fmt in FIGURE_FORMATS:
            path = run_dir / "figures" / f"{stem}.{fmt}"
            atomic_write_bytes(path, figure_bytes(fig, fmt))
            figures.append(path)
    paths = ReportPaths(
        run_dir=run_dir,
        summary_csv=run_dir / "summary.csv",
        figures=tuple(figures),
        examples_md=run_dir / "examples.md",
        findings_md=run_dir / "findings.md",
        checks=checks,
        headline=headline(report_df, summary, checks, has_parts(df)),
    )
    atomic_write_bytes(paths.summary_csv, summary_csv_text(summary).encode("utf-8"))
    atomic_write_bytes(
        run_dir / "summary_select.csv", summary_csv_text(select_summary).encode("utf-8")
    )
    atomic_write_bytes(paths.examples_md, render_examples(report_df, summary).encode("utf-8"))
    findings = render_findings(
        report_df, summary, info, select_summary=select_summary, parts=has_parts(df),
        analysis_checks=checks,
    )  # fmt: skip
    findings += _sections(df, info)
    atomic_write_bytes(paths.findings_md, findings.encode("utf-8"))
    return paths


def _has_sections(df: pd.DataFrame) -> bool:
    return rd.has_rows(df) or gen.has_rows(df) or beh.has_rows(df)


def _section_figures(df: pd.DataFrame, info: dict[str, Any]) -> dict[str, Figure]:
    """The figures of the experiments beside the sweep that have rows in this run."""
    figs = {"refusal_direction_scan": rd.scan_figure(df)} if rd.has_rows(df) else {}
    figs |= gen.figures(df) if gen.has_rows(df) else {}
    return figs | (beh.figures(df, info) if beh.has_rows(df) else {})


def _sections(df: pd.DataFrame, info: dict[str, Any]) -> str:
    """The findings sections of the experiments beside the sweep that have rows in this run."""
    parts = [rd.section(df)] if rd.has_rows(df) else []
    parts += [gen.section(df)] if gen.has_rows(df) else []
    parts += [beh.section(df, info)] if beh.has_rows(df) else []
    return "".join("\n" + p for p in parts)


def _render_sections_only(run_dir: Path, df: pd.DataFrame, info: dict[str, Any]) -> ReportPaths:
    """A run without the sweep (`-m refusal_direction`, `-m generalisation`, `-m toxicity`):
    the sections and figures of the experiments it ran."""
    figures = []
    for stem, fig in _section_figures(df, info).items():
        for fmt in FIGURE_FORMATS:
            path = run_dir / "figures" / f"{stem}.{fmt}"
            atomic_write_bytes(path, figure_bytes(fig, fmt))
            figures.append(path)
    findings = run_dir / "findings.md"
    text = f"# Findings: {run_dir.name}\n" + _sections(df, info)
    atomic_write_bytes(findings, text.encode("utf-8"))
    return ReportPaths(run_dir=run_dir, summary_csv=run_dir / "summary.csv", figures=tuple(figures),
                       examples_md=run_dir / "examples.md", findings_md=findings)  # fmt: skip


def headline(
    df: pd.DataFrame, summary: pd.DataFrame, checks: Sequence[Verdict], parts: bool
) -> tuple[str, ...]:
    """Two lines: the operating point's numbers and the sanity tally (for the session's end)."""
    from steering_reliability.analysis import markdown as md
    from steering_reliability.analysis.aggregate import estimate, setting_label
    from steering_reliability.analysis.data import SANITY_PREFIX
    from steering_reliability.analysis.sanity import sanity_table

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


def main(argv: Sequence[str] | None = None) -> int:
    """CLI entry point; bad input is reported on stderr with exit status 2."""
    parser = argparse.ArgumentParser(
        prog="python -m steering_reliability.report",
        description="Render summary.csv, figures/, examples.md and findings.md for a run.",
    )
    parser.add_argument("run_dir", nargs="?", default=str(DEFAULT_RUN_DIR),
                        help=f"run directory (default: {DEFAULT_RUN_DIR})")  # fmt: skip
    args = parser.parse_args(argv)
    try:
        paths = render(args.run_dir)
    except SteeringReliabilityError as exc:
        print(f"report: {exc}", file=sys.stderr)
        return 2
    written = [
        p.name for p in (paths.summary_csv, paths.examples_md, paths.findings_md) if p.is_file()
    ]
    print(
        f"report written to {paths.run_dir}: {len(paths.figures)} figure files, {', '.join(written)}"
    )
    for v in paths.failed:
        print(f"report: sanity check FAILED: {v.name}: {v.reason}", file=sys.stderr)
    return 1 if paths.failed else 0


if __name__ == "__main__":
    raise SystemExit(main())
