"""render(): every output lands in the run directory, identically on a second render."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from syrupy.assertion import SnapshotAssertion

from steering_reliability import report
from steering_reliability.analysis.data import prepare
from steering_reliability.analysis.markdown import escape, excerpt
from steering_reliability.records.schema import rows_to_table
from steering_reliability.report import ReportPaths, main, render
from steering_reliability.studies.sweep.report.aggregate import summarize
from steering_reliability.studies.sweep.report.examples import pick_prompts, render_examples
from steering_reliability.studies.sweep.report.findings import render_findings
from test_report_synthetic import synthetic_rows, write_run

TEXT_OUTPUTS = (
    "summary.csv",
    "summary_select.csv",
    "shift_ladder.csv",
    "examples.md",
    "findings.md",
)


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
    assert stems == {
        "generalisation_gap",
        "tradeoff",
        "heatmaps",
        "confounds",
        "refusal_by_shift",
        "projections",
        "shift_ladder",
    }
    assert (paths.run_dir / "shift_ladder.csv").is_file()
    assert sorted({p.suffix for p in paths.figures}) == [".png", ".svg"]
    assert sorted(p.name for p in paths.run_dir.iterdir()) == [
        "examples.md", "figures", "findings.md", "results.parquet", "run.json",
        "shift_ladder.csv", "summary.csv", "summary_select.csv",
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
    # two recorded checks and the report stage's own collapse check
    # two recorded checks, one without a verdict, and the report stage's own collapse check
    assert "2 of 4 passed; failed: ablation\\_projection; no verdict: random\\_direction" in text
    assert "| alpha0 | passed | 0.000 |" in text
    # The small synthetic run has overlapping intervals: no clear claims.
    assert "Generalisation failure (harm_train vs harm_test refusal): **not shown**" in text
    assert "its interval includes 0 (no gap shown)" in text
    assert "**not shown clearly on this run**" in text
    assert "Layer 4, best on the select prompts, reaches harm_test refusal" in text


def test_findings_call_a_clear_gap_clear() -> None:
    rows = synthetic_rows()
    for row in rows:  # steering refuses every harm_train prompt and no other prompt
        if row["experiment"] == "sweep":
            refused = row["split"] == "harm_train"
            row.update(is_refusal=refused, is_helpful=not refused, collapsed=False)
    df = prepare(rows_to_table(rows).to_pandas())
    text = render_findings(df, summarize(df), {})
    assert "**yes, at the in-distribution operating point**" in text
    assert "a clear generalisation failure" in text
    assert "harm_train refusal is 1.00 [1.00, 1.00] and harm_test refusal 0.00 [0.00, 0.00]" in text
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


def _with_parts(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Even prompt numbers in the select part, odd ones in the report part."""
    for row in rows:
        if row["prompt_id"]:
            row["part"] = (
                "select" if int(row["prompt_id"].rsplit("_", 1)[-1]) % 2 == 0 else "report"
            )
    return rows


def test_the_operating_point_is_chosen_on_select_and_reported_on_report(tmp_path: Path) -> None:
    """Select prompts favour layer 4 / add / alpha 1, report prompts layer 8 / add / alpha 1:
    the flagged operating point is the select part's choice, with report-part numbers."""
    rows = _with_parts(synthetic_rows())
    for row in rows:
        if row["experiment"] != "sweep" or row["split"] not in ("harm_test", "harm_train"):
            continue
        favoured = (4, "add", 1.0) if row["part"] == "select" else (8, "add", 1.0)
        hit = (row["layer"], row["intervention"], row["alpha"]) == favoured
        row.update(is_refusal=hit, is_helpful=not hit, collapsed=False)
    for row in rows:
        if row["experiment"] == "sweep" and row["split"] == "benign":
            row.update(is_refusal=False, is_helpful=True, collapsed=False)
    paths = render(write_run(tmp_path, rows))
    summary = pd.read_csv(paths.summary_csv)
    op = summary[summary["operating_point"]].iloc[0]
    assert (op["layer"], op["intervention"], op["alpha"]) == (4, "add", 1.0)
    assert op["harm_test_refusal"] == 0.0  # its report-part number, not the select part's 1.0
    select = pd.read_csv(tmp_path / "summary_select.csv")
    sel_op = select[select["operating_point"]].iloc[0]
    assert sel_op["harm_test_refusal"] == 1.0
    assert op["n_harm_test"] + sel_op["n_harm_test"] == 10  # disjoint halves of the prompts
    text = paths.findings_md.read_text(encoding="utf-8")
    assert "measured on the **report** prompts" in text
    assert "chosen on the select prompts" in text
    # the best layer is the select part's choice too, even though layer 8 wins on report
    assert "Layer 4, best on the select prompts, reaches harm_test refusal 0.00" in text


def test_a_collapsed_operating_point_fails_the_report_stage_check(tmp_path: Path) -> None:
    """Every setting collapsed: the report is still written, the check fails, the CLI exits 1."""
    from steering_reliability.report import main

    rows = synthetic_rows()
    for row in rows:
        if row["experiment"] == "sweep":
            row.update(collapsed=True)
    run_dir = write_run(tmp_path, rows)
    paths = render(run_dir)
    assert [v.verdict for v in paths.checks] == ["failed"]
    assert paths.findings_md.is_file()
    assert "collapse\\_at\\_operating\\_point (report stage) | **FAILED**" in (
        paths.findings_md.read_text(encoding="utf-8")
    )
    assert main([str(run_dir)]) == 1


def test_inconclusive_checks_are_counted_as_such_never_as_passed(tmp_path: Path) -> None:
    rows = synthetic_rows()
    rows.append({"run_id": "synthetic-run", "experiment": "sanity:downstream_ablation",
                 "case_id": "sanity-downstream_ablation", "split": "", "prompt_id": "",
                 "layer": 8, "intervention": "", "alpha": 1.0, "value": 0.1, "passed": None,
                 "verdict": "inconclusive",
                 "extra_json": '{"reason": "the addition induced +0.05 (< 0.2)"}'})  # fmt: skip
    text = render(write_run(tmp_path, rows)).findings_md.read_text(encoding="utf-8")
    assert "inconclusive: downstream\\_ablation" in text
    assert "| downstream\\_ablation | **inconclusive** | 0.100 | the addition induced" in text


def test_findings_explain_ablation_from_the_sign_of_the_baseline_projection() -> None:
    """Ablation scales the projection toward 0: from a negative baseline that raises it."""
    from steering_reliability.studies.sweep.report.aggregate import operating_point_row
    from steering_reliability.studies.sweep.report.findings import _mechanism

    rows = synthetic_rows()
    for row in rows:
        if row["experiment"] == "sweep":
            row.update(proj_before=-60.0, proj_after=-60.0 * (1 - row["alpha"])
                       if row["intervention"] == "ablate" else -60.0 + 5 * row["alpha"])  # fmt: skip
    df = prepare(rows_to_table(rows).to_pandas())
    chosen = {"operating_point": (8, "hook_in", "ablate", 1.0),
              "shift_tuned": (8, "hook_in", "ablate", 1.0), "matched": []}  # fmt: skip
    summary = summarize(df, chosen=chosen)
    text = " ".join(_mechanism(operating_point_row(summary)))
    assert "mean projection onto v̂" in text and "is -60 on harm_test" in text
    assert "toward the refusal end" in text
    assert "from a negative baseline that *raises* it" in text
    flipped = summary.copy()
    flipped["harm_test_proj_before"], flipped["harm_test_proj_after"] = 60.0, 0.0
    text = " ".join(_mechanism(operating_point_row(flipped)))
    assert "toward the compliance end" in text and "positive baseline that lowers it" in text


def test_the_headline_names_the_operating_point_and_the_sanity_tally(
    rendered: tuple[ReportPaths, dict[str, bytes]],
) -> None:
    op_line, shift_line, sanity_line = rendered[0].headline
    assert op_line.startswith("in-distribution operating point layer ")
    assert "harm_train 0." in op_line and "harm_test 0." in op_line
    assert "benign helpful drop" in op_line and "one set of prompts" in op_line  # no parts
    assert shift_line.startswith("tuned on the shift (best case) layer ")
    assert sanity_line.startswith("sanity checks: 2 of 4 passed; failed: ablation_projection")


def test_the_shift_ladder_has_every_benchmark_with_the_drop_from_harm_train(
    tmp_path: Path,
) -> None:
    """Benchmark splits become rungs: their rates and drops in findings.md, shift_ladder.csv
    (whole split and per category) and the headline; the verdict compares them with harm_test."""
    paths = render(write_run(tmp_path, synthetic_rows(benchmarks=("bench_x",))))
    text = paths.findings_md.read_text(encoding="utf-8")
    assert (
        "| setting | chosen as | harm_train | harm_test | bench_x | benign false refusal |" in text
    )
    assert (
        "- Synthetic shift vs real benchmarks: **synthetic shift harder than the benchmark" in text
    )
    assert "Our synthetic shift is " in text and "`bench_x`" in text
    table = pd.read_csv(tmp_path / "shift_ladder.csv")
    bench = table[table["split"] == "bench_x"]
    assert set(bench["group"].fillna("")) == {"", "cat_a", "cat_b"}
    whole = bench[bench["group"].isna()]
    assert (whole["n"] == 10).all() and whole["drop_from_train"].notna().all()
    assert "bench_x 0." in paths.headline[0]
    summary = pd.read_csv(paths.summary_csv)
    assert {"bench_x_refusal", "bench_x_gap", "bench_x_refusal_change"} <= set(summary.columns)


def test_no_setting_that_works_in_distribution_is_said_and_the_matched_settings_answer() -> None:
    """Every setting that reaches harm_train refusal 0.5 costs benign helpfulness: the verdict
    says none works within the budget, and the gap is read at the matched settings."""
    rows = synthetic_rows()
    for row in rows:
        if row["experiment"] == "sweep":
            strong = row["alpha"] >= 2.0
            refused = strong and row["split"] in ("harm_train", "benign")
            row.update(is_refusal=refused, is_helpful=not refused, collapsed=False)
    df = prepare(rows_to_table(rows).to_pandas())
    text = render_findings(df, summarize(df), {})
    assert "**no setting works in distribution within the benign budget**" in text
    assert "answered at the 4 matched settings instead" in text
    assert "**yes, at 4 of 4 matched settings (none works within the benign budget)**" in text
