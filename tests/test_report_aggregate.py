"""Summary statistics: bootstrap intervals, the Pareto flag and the operating-point rule."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from syrupy.assertion import SnapshotAssertion

from steering_reliability.analysis.data import ReportInputError, prepare
from steering_reliability.errors import SteeringReliabilityError
from steering_reliability.metrics.stats import diff_ci, mean_ci, per_prompt
from steering_reliability.records.schema import rows_to_table
from steering_reliability.studies.sweep.report import summary_csv_text
from steering_reliability.studies.sweep.report.aggregate import (
    OperatingPointRule,
    choose_operating_point,
    estimate,
    explain_choice,
    matched_settings,
    pareto_front,
    summarize,
    works_in_distribution,
)
from test_report_synthetic import synthetic_rows


@pytest.fixture(scope="module")
def summary() -> pd.DataFrame:
    return summarize(prepare(rows_to_table(synthetic_rows()).to_pandas()))


def test_summary_csv_matches_snapshot(summary: pd.DataFrame, snapshot: SnapshotAssertion) -> None:
    assert summary_csv_text(summary) == snapshot


def test_summary_has_one_baseline_row_then_every_sweep_setting(summary: pd.DataFrame) -> None:
    assert summary["kind"].tolist() == ["baseline"] + ["sweep"] * 8
    assert summary.loc[0, "helpful_drop"] == 0.0
    assert summary["operating_point"].sum() == 1
    assert set(summary.loc[summary["kind"] == "sweep", "case_id"]) == {
        f"layer{layer}-{iv}-a{a}" for layer in (4, 8) for iv in ("add", "ablate") for a in (1, 2)
    }


def test_summary_intervals_are_ordered_and_known_together(summary: pd.DataFrame) -> None:
    names = [c[: -len("_lo")] for c in summary.columns if c.endswith("_lo")]
    assert "harm_test_refusal" in names and "gap" in names and "helpful_drop" in names
    for name in names:
        for value, lo, hi in summary[[name, f"{name}_lo", f"{name}_hi"]].itertuples(index=False):
            assert math.isnan(value) == math.isnan(lo) == math.isnan(hi), name
            if not math.isnan(value):
                assert lo <= hi, (name, lo, hi)


def test_summary_gap_is_read_from_the_interval_of_the_difference(
    summary: pd.DataFrame,
) -> None:
    rows = summary.set_index("case_id")
    # The synthetic train/test refusal gap is large only for layer 8 at alpha 2.
    assert not estimate(rows.loc["baseline"], "gap").excludes(0.0)
    assert estimate(rows.loc["layer8-add-a2"], "gap").excludes(0.0)
    assert estimate(rows.loc["layer8-ablate-a2"], "gap").excludes(0.0)
    assert not estimate(rows.loc["layer4-add-a1"], "gap").excludes(0.0)


def test_helpful_drop_is_the_paired_difference_over_benign_prompts() -> None:
    df = prepare(rows_to_table(synthetic_rows()).to_pandas())
    benign = df[df["split"] == "benign"]
    base = benign[benign["experiment"] == "baseline"]
    steered = benign[(benign["experiment"] == "sweep") & (benign["case_id"] == "layer8-add-a2")]
    a = per_prompt(base["is_helpful"], base["prompt_id"])
    b = per_prompt(steered["is_helpful"], steered["prompt_id"])
    paired = diff_ci(a, b, paired=True)
    row = summarize(df).set_index("case_id").loc["layer8-add-a2"]
    got = (row["helpful_drop"], row["helpful_drop_lo"], row["helpful_drop_hi"])
    assert got == pytest.approx((paired.value, paired.lo, paired.hi))


def test_bootstrap_is_deterministic_and_pairs_shared_prompts() -> None:
    a = pd.Series([1.0, 0.0, 1.0, 1.0], index=["p1", "p2", "p3", "p4"])
    b = pd.Series([1.0, 0.0, 1.0, 0.0], index=["p1", "p2", "p3", "p4"])
    assert mean_ci(a) == mean_ci(a)
    paired = diff_ci(a, b)
    assert paired.value == pytest.approx(0.25)
    assert paired.lo >= 0.0  # paired differences are never negative here
    unpaired = diff_ci(a, b.set_axis(["q1", "q2", "q3", "q4"]))
    assert unpaired.lo < 0.0  # independent resampling is wider
    assert math.isnan(mean_ci(pd.Series([], dtype="float64")).value)


def test_pareto_flags_a_hand_made_table() -> None:
    points = pd.DataFrame(
        [
            ("A", 0.2, 0.0, True),
            ("B", 0.5, 0.1, True),
            ("C", 0.4, 0.2, False),  # B refuses more for less drop
            ("D", 0.5, 0.3, False),  # B: same refusal, less drop
            ("E", 0.9, 0.5, True),
            ("F", float("nan"), 0.1, False),  # unknown refusal is never on the frontier
            ("G", 0.9, 0.5, True),  # a tie with E: neither dominates the other
            ("H", 0.1, 0.0, False),  # A: same drop, more refusal
        ],
        columns=["name", "refusal", "drop", "expected"],
    )
    got = pareto_front(points["refusal"], points["drop"])
    assert dict(zip(points["name"], got.tolist(), strict=True)) == dict(
        zip(points["name"], points["expected"], strict=True)
    )


def _table(rows: list[tuple[int, float, float, float, float]]) -> pd.DataFrame:
    """A hand-made summary: (layer, alpha, refusal, helpful drop, collapse rate); the refusal is
    both harm_train's and harm_test's (both points' rules then agree)."""
    frame = pd.DataFrame(
        rows, columns=["layer", "alpha", "harm_test_refusal", "helpful_drop", "collapse_rate"]
    )
    frame["harm_train_refusal"] = frame["harm_test_refusal"]
    frame.insert(0, "kind", "sweep")
    frame["intervention"] = "add"
    frame["pareto"] = pareto_front(frame["harm_test_refusal"], frame["helpful_drop"])
    base = pd.DataFrame([{"kind": "baseline", "layer": -1, "alpha": 0.0, "harm_test_refusal": 0.0,
                          "harm_train_refusal": 0.0, "helpful_drop": 0.0, "collapse_rate": 0.0, "intervention": "none",
                          "pareto": False}])  # fmt: skip
    return pd.concat([base, frame], ignore_index=True)


def test_operating_point_is_the_best_refusal_within_the_drop_bound() -> None:
    table = _table(
        [
            (6, 1.0, 0.40, 0.05, 0.0),
            (12, 1.0, 0.70, 0.08, 0.0),  # chosen
            (12, 2.0, 0.95, 0.02, 0.50),  # collapsed: excluded however good it looks
            (18, 1.0, 0.90, 0.30, 0.0),  # drop above the bound
        ]
    )
    op = choose_operating_point(table)
    assert (op["layer"], op["alpha"]) == (12, 1.0)
    assert "highest harm_train refusal" in explain_choice(table, target="harm_train_refusal")[1]
    assert "highest harm_test refusal" in explain_choice(table, target="harm_test_refusal")[1]


def test_operating_point_ties_break_on_smaller_drop_then_smaller_alpha() -> None:
    table = _table([(6, 2.0, 0.5, 0.05, 0.0), (6, 1.0, 0.5, 0.05, 0.0), (8, 1.0, 0.5, 0.09, 0.0)])
    op = choose_operating_point(table)
    assert (op["layer"], op["alpha"]) == (6, 1.0)


def test_operating_point_falls_back_to_best_refusal_minus_drop() -> None:
    table = _table([(6, 1.0, 0.5, 0.2, 0.0), (6, 2.0, 0.9, 0.3, 0.0), (6, 4.0, 1.0, 0.0, 0.9)])
    op = choose_operating_point(table, OperatingPointRule(max_helpful_drop=0.1))
    assert op["alpha"] == 2.0  # 0.9 - 0.3 beats 0.5 - 0.2; alpha 4 is collapsed
    assert "no non-collapsed setting" in explain_choice(table, target="harm_train_refusal")[1]


def test_operating_point_when_everything_collapsed_is_a_frontier_point() -> None:
    table = _table([(6, 1.0, 0.5, 0.4, 0.5), (6, 2.0, 0.6, 0.3, 0.5), (6, 4.0, 0.4, 0.5, 0.9)])
    op = choose_operating_point(table)
    assert op["alpha"] == 2.0 and bool(op["pareto"])
    assert "every setting is collapsed" in explain_choice(table, target="harm_test_refusal")[1]


def test_the_in_distribution_point_never_reads_the_shift() -> None:
    """The headline point is chosen on harm_train (and benign) only: changing harm_test cannot
    move it; the point tuned on the shift follows harm_test."""
    table = _table([(6, 1.0, 0.0, 0.05, 0.0), (12, 1.0, 0.0, 0.05, 0.0)])
    table.loc[1:, "harm_train_refusal"] = [0.8, 0.6]
    table.loc[1:, "harm_test_refusal"] = [0.1, 0.5]
    assert choose_operating_point(table)["layer"] == 6
    assert choose_operating_point(table, target="harm_test_refusal")["layer"] == 12
    table.loc[1:, "harm_test_refusal"] = [0.9, 0.0]
    assert choose_operating_point(table)["layer"] == 6


def test_matched_settings_are_the_weakest_alpha_that_works_per_layer() -> None:
    table = _table([(6, 0.5, 0.2, 0.0, 0.0), (6, 1.0, 0.6, 0.3, 0.0), (6, 2.0, 0.9, 0.5, 0.0),
                    (12, 0.5, 0.1, 0.0, 0.0), (12, 1.0, 0.3, 0.2, 0.0)])  # fmt: skip
    table["hook_point"] = "resid_pre"
    matched = matched_settings(table)
    assert [(r["layer"], r["alpha"]) for _, r in matched.iterrows()] == [(6, 1.0)]
    row = table.iloc[2]  # (6, 1.0): refusal 0.6 but a helpful drop of 0.3
    assert not works_in_distribution(row.fillna(0.0))
    assert works_in_distribution(row.fillna(0.0), OperatingPointRule(max_helpful_drop=0.4))


def test_no_sweep_setting_is_a_clear_error() -> None:
    with pytest.raises(ReportInputError, match="no sweep settings") as info:
        choose_operating_point(_table([]).iloc[:1])
    assert isinstance(info.value, SteeringReliabilityError)


def test_summary_ignores_sanity_rows_and_other_direction_variants() -> None:
    rows = synthetic_rows()
    extra = [dict(r, direction_variant="alt_template") for r in rows if r["experiment"] == "sweep"]
    with_extra = summarize(prepare(rows_to_table(rows + extra).to_pandas()))
    plain = summarize(prepare(rows_to_table(rows).to_pandas()))
    pd.testing.assert_frame_equal(with_extra, plain)
    assert np.isfinite(plain["harm_test_refusal"]).all()
