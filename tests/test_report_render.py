"""render(): every output lands in the run directory, identically on a second render."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from syrupy.assertion import SnapshotAssertion

from steering_reliability import report
from steering_reliability.analysis import prepare, summarize
from steering_reliability.analysis.examples import pick_prompts, render_examples
from steering_reliability.analysis.findings import render_findings
from steering_reliability.analysis.markdown import escape, excerpt
from steering_reliability.records.schema import rows_to_table
from steering_reliability.report import ReportPaths, main, render
from test_report_synthetic import synthetic_rows, write_run

TEXT_OUTPUTS = ("summary.csv", "examples.md", "findings.md")


def _snapshot_files(run_dir: Path) -> dict[str, bytes]:
    names = [*TEXT_OUTPUTS, *(f"figures/{p.name}" for p in sorted((run_dir / "figures").iterdir()))]
    return {name: (run_dir / name).read_bytes() for name in names}


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> tuple[ReportPaths, dict[str, bytes]]:
    """One run directory rendered twice; the first render's bytes and the second's paths."""
    run_dir = write_run(tmp_path_factory.mktemp("run"))
    first = _snapshot_files(render(run_dir).run_dir)
    return render(run_dir), first


def test_render_writes_every_output(rendered: tuple[ReportPaths, dict[str, bytes]]) -> None:
    paths, _ = rendered
    for path in (paths.summary_csv, paths.examples_md, paths.findings_md, *paths.figures):
        assert path.is_file() and path.stat().st_size > 0, path
    stems = {p.stem for p in paths.figures}
    assert stems == {"generalisation_gap", "tradeoff", "heatmaps", "confounds", "refusal_by_shift"}
    assert sorted({p.suffix for p in paths.figures}) == [".png", ".svg"]
    assert sorted(p.name for p in paths.run_dir.iterdir()) == [
        "examples.md", "figures", "findings.md", "results.parquet", "run.json", "summary.csv"
    ]  # fmt: skip


def test_rendering_twice_gives_identical_bytes(
    rendered: tuple[ReportPaths, dict[str, bytes]],
) -> None:
    paths, first = rendered
    second = _snapshot_files(paths.run_dir)
    assert sorted(second) == sorted(first)
    for name, data in first.items():
        assert second[name] == data, f"{name} differs between two renders"
    svg = first["figures/tradeoff.svg"].decode("utf-8")
    assert "<dc:date>" not in svg


def test_summary_csv_has_the_flag_columns(rendered: tuple[ReportPaths, dict[str, bytes]]) -> None:
    summary = pd.read_csv(rendered[0].summary_csv)
    assert summary["operating_point"].sum() == 1
    assert summary["pareto"].dtype == bool
    assert {"gap_lo", "gap_hi", "helpful_drop_lo", "benign_refusal_hi"} <= set(summary.columns)


def test_examples_match_snapshot(snapshot: SnapshotAssertion) -> None:
    df = prepare(rows_to_table(synthetic_rows()).to_pandas())
    assert render_examples(df, summarize(df)) == snapshot


def test_findings_report_sanity_verdicts_and_careful_wording(
    rendered: tuple[ReportPaths, dict[str, bytes]],
) -> None:
    text = rendered[0].findings_md.read_text(encoding="utf-8")
    assert "1 of 2 passed; failed: ablation\\_projection" in text
    assert "no verdict: random\\_direction" in text
    assert "| alpha0 | passed | 0.000 |" in text
    # The small synthetic run has overlapping intervals: no clear claims.
    assert "Generalisation failure (harm_train vs harm_test refusal): **not shown**" in text
    assert "does not show a clear generalisation gap" in text
    assert "**not shown clearly on this run**" in text
    assert "Layer 4 reaches the highest harm_test refusal" in text


def test_findings_call_a_clear_gap_clear() -> None:
    rows = synthetic_rows()
    for row in rows:  # steering refuses every harm_train prompt and no other prompt
        if row["experiment"] == "sweep":
            refused = row["split"] == "harm_train"
            row.update(is_refusal=refused, is_helpful=not refused, collapsed=False)
    df = prepare(rows_to_table(rows).to_pandas())
    text = render_findings(df, summarize(df), {})
    assert "**yes, at the operating point**" in text
    assert "This is a clear generalisation failure" in text
    assert (
        "harm_train refusal is 1.00 [1.00, 1.00] and harm_test refusal is 0.00 [0.00, 0.00]" in text
    )
    assert "**holds on this run**" in text
    assert "run.json was not found" in text


def test_findings_flag_a_run_recorded_by_more_than_one_code_version() -> None:
    df = prepare(rows_to_table(synthetic_rows()).to_pandas())
    one = {"run_id": "r", "sessions": [{"code": "aaaa"}, {"code": "aaaa"}]}
    assert "code fingerprint: `aaaa` (every session)" in render_findings(df, summarize(df), one)
    mixed = {"run_id": "r", "sessions": [{"code": "aaaa"}, {"code": None}, {"code": "bbbb"}]}
    text = render_findings(df, summarize(df), mixed)
    assert "**mixed code**: the run's sessions ran 2 versions of the code (`aaaa`, `bbbb`)" in text


def test_a_control_with_two_direction_variants_reports_one_rate_per_variant() -> None:
    """Main and random rows of one check are never pooled into a single refusal rate."""
    rows = synthetic_rows()
    control = [dict(r) for r in rows if r["experiment"] == "sanity:random_direction"]
    for r in control:  # the same prompts under the main direction: every one refused
        rows.append({**r, "direction_variant": "main", "is_refusal": True})
    for r in rows:
        if r["experiment"] == "sanity:random_direction" and r["direction_variant"] == "random":
            r["is_refusal"] = False
    df = prepare(rows_to_table(rows).to_pandas())
    text = render_findings(df, summarize(df), {})
    n = len(control)
    assert f"refusal rate main 1.00 [1.00, 1.00], random 0.00 [0.00, 0.00] over {n} prompts" in text


def test_cli_passes_the_run_directory_to_render(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    seen: list[Path] = []

    def fake_render(run_dir: str | Path) -> ReportPaths:
        seen.append(Path(run_dir))
        return ReportPaths(Path(run_dir), Path("s.csv"), (), Path("e.md"), Path("f.md"))

    monkeypatch.setattr(report, "render", fake_render)
    assert main([str(tmp_path)]) == 0
    assert main([]) == 0
    assert seen == [tmp_path, Path("artifacts/runs/latest")]
    assert "report written to" in capsys.readouterr().out


def test_markdown_helpers_escape_and_cut() -> None:
    assert escape("a *b* _c_ [d](e) <f> | `g`") == r"a \*b\* \_c\_ \[d\](e) \<f\> \| \`g\`"
    lines = excerpt("one\ntwo\nthree\nfour\nfive", max_lines=2)
    assert lines == ["one", "two", "[...]"]
    assert excerpt("x" * 50, max_chars=10) == ["x" * 10, "[...]"]
    assert pick_prompts([f"p{i}" for i in range(9, -1, -1)], 3) == ["p0", "p4", "p9"]
