"""Render a run directory's report: `python -m steering_reliability.report RUN_DIR`.

Reads only `results.parquet` and `run.json` in RUN_DIR and writes, into RUN_DIR, summary.csv
(report-part numbers; the operating point chosen on the select part, whose own numbers are in
summary_select.csv), figures/*.png and *.svg, examples.md and findings.md. The report stage runs
one sanity check of its own on the finished sweep (collapse at the operating point): when it
fails, the files are still written and the command exits 1. Rendering twice gives identical bytes
(fixed bootstrap seed, fixed SVG hash salt, no dates in figure metadata). `make report` and the
pytest plugin at session end both call `render`. Each study's section comes from its own report
module, found through the study registry (studies/__init__.py); this file knows no study.
"""

from __future__ import annotations

import argparse
import importlib
import io
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib
from matplotlib.figure import Figure

from steering_reliability.analysis.data import check_rows, load_results, load_run_info
from steering_reliability.analysis.section import Section
from steering_reliability.atomic import atomic_write_bytes
from steering_reliability.errors import SteeringReliabilityError
from steering_reliability.records.run import resolve_run_dir
from steering_reliability.studies import registered
from steering_reliability.verdict import Verdict

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
    info = load_run_info(run_dir / "run.json")
    sections: list[Section] = []
    for study in registered():
        if study.report is not None:
            module = importlib.import_module(study.report)
            found = module.report_section(df, info, str(results_path))
            sections += [found] if found is not None else []
    if not sections:
        check_rows(df, source=str(results_path))  # says which rows the report needs
    figures: list[Path] = []
    for section in sections:
        for stem, fig in section.figures.items():
            for fmt in FIGURE_FORMATS:
                path = run_dir / "figures" / f"{stem}.{fmt}"
                atomic_write_bytes(path, figure_bytes(fig, fmt))
                figures.append(path)
        for name, data in section.files.items():
            atomic_write_bytes(run_dir / name, data)
    lead = [s for s in sections if s.lead][:1]
    rest = [s for s in sections if s not in lead]
    findings = lead[0].text if lead else f"# Findings: {run_dir.name}\n"
    findings += "".join("\n" + s.text for s in rest)
    paths = ReportPaths(
        run_dir=run_dir,
        summary_csv=run_dir / "summary.csv",
        figures=tuple(figures),
        examples_md=run_dir / "examples.md",
        findings_md=run_dir / "findings.md",
        checks=tuple(v for s in sections for v in s.checks),
        headline=tuple(line for s in sections for line in s.headline),
    )
    atomic_write_bytes(paths.findings_md, findings.encode("utf-8"))
    return paths


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
