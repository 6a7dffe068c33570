"""Bootstrap statistics: coverage, no clamping, paired vs independent, multiplicity, `excludes`."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from steering_reliability.metrics.stats import (
    BOOTSTRAP_SEED,
    LEVEL,
    N_RESAMPLES,
    NAN,
    Estimate,
    adjusted_level,
    diff_ci,
    from_resamples,
    mean_ci,
    n_resamples,
)


def _ids(prefix: str, n: int) -> list[str]:
    return [f"{prefix}{i:04d}" for i in range(n)]


def _width(est: Estimate) -> float:
    return est.hi - est.lo


def test_resampling_settings_meet_the_rules() -> None:
    assert N_RESAMPLES >= 2000
    assert LEVEL == 0.95
    assert n_resamples() == N_RESAMPLES and n_resamples(4) == 4 * N_RESAMPLES


def test_mean_ci_is_the_plain_percentile_interval_of_seeded_resamples() -> None:
    # A skewed sample: the interval must be exactly the percentiles, nothing moved.
    values = np.array([0.0] * 27 + [5.0, 9.0, 40.0])
    est = mean_ci(pd.Series(values))
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    idx = rng.integers(0, len(values), size=(N_RESAMPLES, len(values)), dtype=np.int32)
    lo, hi = np.percentile(values[idx].mean(axis=1), [2.5, 97.5])
    assert (est.lo, est.hi) == (pytest.approx(lo, abs=1e-12), pytest.approx(hi, abs=1e-12))
    assert est.value == pytest.approx(values.mean()) and est.n == 30
    assert mean_ci(pd.Series(values)) == est  # seeded: identical on every call


def test_percentile_interval_of_bernoulli_means_covers_p_about_95_percent() -> None:
    rng = np.random.default_rng(12345)
    p, n, trials = 0.3, 60, 400
    covered = 0
    for _ in range(trials):
        est = mean_ci(pd.Series((rng.random(n) < p).astype("float64")))
        covered += est.lo <= p <= est.hi
    assert 0.90 <= covered / trials <= 0.99, covered / trials


def test_unpaired_difference_covers_the_true_difference() -> None:
    rng = np.random.default_rng(7)
    pa, pb, trials = 0.6, 0.35, 300
    covered = 0
    for _ in range(trials):
        a = pd.Series((rng.random(50) < pa).astype("float64"), index=_ids("tr", 50))
        b = pd.Series((rng.random(40) < pb).astype("float64"), index=_ids("te", 40))
        est = diff_ci(a, b)
        covered += est.lo <= pa - pb <= est.hi
    assert 0.90 <= covered / trials <= 0.99, covered / trials


def test_skewed_resamples_leave_the_estimate_outside_and_the_interval_unmoved() -> None:
    # A rare-event statistic: 98% of resamples at 0, 2% far out; its mean is outside the
    # central 95% of the resamples. The interval must stay [0, 0] and say so.
    stats = np.concatenate([np.zeros(1960), np.full(40, 100.0)])
    est = from_resamples(float(stats.mean()), stats, 30)
    assert (est.lo, est.hi) == (0.0, 0.0)
    assert est.value == pytest.approx(2.0)
    assert est.outside
    assert not from_resamples(0.0, stats, 30).outside
    # `outside` is derived from the numbers, so an Estimate rebuilt from a table keeps it.
    assert Estimate(2.0, 0.0, 1.0, 30).outside and not Estimate(1.0, 0.0, 1.0, 30).outside
    assert not NAN.outside


def test_paired_interval_is_much_narrower_for_correlated_settings() -> None:
    rng = np.random.default_rng(3)
    ids = _ids("p", 80)
    prompt_effect = rng.normal(0.0, 1.0, size=80)  # large between-prompt spread
    base = pd.Series(prompt_effect, index=ids)
    steered = pd.Series(prompt_effect + 0.15 + rng.normal(0.0, 0.1, size=80), index=ids)
    paired = diff_ci(steered, base)
    unpaired = diff_ci(steered, base, paired=False)
    relabelled = diff_ci(steered, base.set_axis(_ids("q", 80)))  # disjoint ids: independent
    assert paired.value == pytest.approx(unpaired.value) == pytest.approx(relabelled.value)
    assert _width(paired) < 0.2 * _width(unpaired)
    assert _width(relabelled) == pytest.approx(_width(unpaired), rel=0.15)
    # The two intervals overlap, yet the paired difference clearly excludes 0: overlap is not
    # a test of difference.
    assert mean_ci(steered).overlaps(mean_ci(base))
    assert paired.excludes(0.0) and not unpaired.excludes(0.0)


def test_paired_difference_resamples_prompts_not_values() -> None:
    # Pairing must keep each prompt's two values together, whatever the index order.
    ids = _ids("p", 6)
    a = pd.Series([1.0, 0.0, 1.0, 1.0, 0.0, 1.0], index=ids)
    b = pd.Series([1.0, 0.0, 1.0, 0.0, 0.0, 1.0], index=ids)
    est = diff_ci(a, b.iloc[::-1])
    assert est.value == pytest.approx(1 / 6) and est.n == 6
    assert est.lo == 0.0  # per-prompt differences are 0 or 1: no resample goes negative
    assert diff_ci(a, b) == est


def test_independent_difference_width_adds_in_quadrature() -> None:
    rng = np.random.default_rng(11)
    a = pd.Series(rng.normal(0.0, 1.0, size=120), index=_ids("a", 120))
    b = pd.Series(rng.normal(0.0, 2.0, size=90), index=_ids("b", 90))
    expected = math.hypot(_width(mean_ci(a)), _width(mean_ci(b)))
    est = diff_ci(a, b)
    assert _width(est) == pytest.approx(expected, rel=0.15)
    assert est.value == pytest.approx(a.mean() - b.mean()) and est.n == 90


def test_partly_shared_prompt_ids_are_refused() -> None:
    a = pd.Series([1.0, 0.0, 1.0], index=["p1", "p2", "p3"])
    b = pd.Series([1.0, 1.0, 0.0], index=["p2", "p3", "p4"])
    with pytest.raises(ValueError, match="share 2 prompt ids but not all"):
        diff_ci(a, b)
    with pytest.raises(ValueError, match="same prompt ids"):
        diff_ci(a, b, paired=True)
    shared = ["p2", "p3"]
    assert diff_ci(a[shared], b[shared], paired=True).n == 2
    assert diff_ci(a, b, paired=False).n == 3
    # NaNs are dropped before the ids are compared: a missing value is a missing prompt.
    with pytest.raises(ValueError, match="not all"):
        diff_ci(a, a.where(a.index != "p1"))


def test_bonferroni_adjusted_intervals_are_wider_and_nested() -> None:
    rng = np.random.default_rng(5)
    ids = _ids("p", 50)
    a = pd.Series(rng.random(50), index=ids)
    b = pd.Series(rng.random(50) * 0.8, index=ids)
    assert adjusted_level(1) == LEVEL and adjusted_level(4) == pytest.approx(0.9875)
    for one, four in ((mean_ci(a), mean_ci(a, comparisons=4)),
                      (diff_ci(a, b), diff_ci(a, b, comparisons=4))):  # fmt: skip
        assert four.lo < one.lo and one.hi < four.hi
        assert four.value == one.value
        assert (one.comparisons, four.comparisons) == (1, 4)
        assert (one.level, four.level) == (LEVEL, pytest.approx(0.9875))


@pytest.mark.parametrize("bad", [0, -1, 1.5, True])
def test_comparisons_must_be_a_positive_integer(bad: object) -> None:
    with pytest.raises(ValueError, match="comparisons"):
        mean_ci(pd.Series([1.0, 2.0]), comparisons=bad)  # type: ignore[arg-type]


def test_excludes_is_strict_and_false_for_unknown() -> None:
    est = Estimate(0.5, 0.1, 0.9, 10)
    assert est.excludes(0.0) and est.excludes(1.0) and est.excludes()
    assert not est.excludes(0.1) and not est.excludes(0.9) and not est.excludes(0.5)
    assert Estimate(-0.3, -0.5, -0.1, 10).excludes(0.0)
    assert not NAN.excludes(0.0)
    assert not est.excludes(float("nan"))
    assert not Estimate(0.5, float("nan"), 0.9, 10).excludes(0.0)


def test_empty_input_gives_nan() -> None:
    empty = pd.Series([], dtype="float64")
    assert math.isnan(mean_ci(empty).value) and mean_ci(empty).n == 0
    assert math.isnan(diff_ci(empty, pd.Series([1.0], index=["p"])).value)
    assert math.isnan(mean_ci(pd.Series([float("nan")])).lo)


finite = st.floats(min_value=-5, max_value=5, allow_nan=False)


@settings(max_examples=50, deadline=None)
@given(st.lists(finite, min_size=1, max_size=40), st.floats(min_value=-3, max_value=3))
def test_mean_interval_stays_in_range_and_is_equivariant(values: list[float], c: float) -> None:
    # A percentile interval of resample means never leaves [min, max] (a normal approximation
    # can), shifts with the data and flips under negation (same seeded resamples).
    est = mean_ci(pd.Series(values))
    tol = 1e-9
    assert min(values) - tol <= est.lo <= est.hi <= max(values) + tol
    assert est.n == len(values)
    shifted = mean_ci(pd.Series(values) + c)
    assert shifted.lo == pytest.approx(est.lo + c, abs=tol)
    assert shifted.hi == pytest.approx(est.hi + c, abs=tol)
    negated = mean_ci(-pd.Series(values))
    assert (negated.lo, negated.hi) == (pytest.approx(-est.hi, abs=tol),
                                        pytest.approx(-est.lo, abs=tol))  # fmt: skip
