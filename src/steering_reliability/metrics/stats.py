"""Percentile bootstrap intervals over prompts, with a fixed seed so reports re-render identically.

Rules (research validity):

- the unit of resampling is the prompt (one value per prompt, see `per_prompt`);
- intervals are plain percentile intervals of `n_resamples(m)` seeded resamples (at least
  `N_RESAMPLES`); they are never widened to contain the estimate. When a skewed resample
  distribution leaves the estimate outside its interval, `Estimate.outside` says so;
- two settings on the same prompts are compared through the bootstrap of the *paired* per-prompt
  difference; two disjoint prompt sets through independent resamples, differenced per resample
  (`diff_ci`). Series that share only some prompt ids are refused as ambiguous;
- whether two settings differ is read from the interval of their difference
  (`diff_ci(a, b).excludes(0.0)`), never from whether their two intervals overlap. For m
  comparisons pass `comparisons=m` (Bonferroni: each interval at level 1 - (1 - LEVEL) / m).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd

BOOTSTRAP_SEED = 0
N_RESAMPLES = 2000
LEVEL = 0.95


def adjusted_level(comparisons: int = 1, level: float = LEVEL) -> float:
    """Bonferroni-adjusted confidence level for `comparisons` simultaneous intervals.

    1 - (1 - level) / m: m intervals at this level all cover their targets with probability at
    least `level`.
    """
    if isinstance(comparisons, bool) or not isinstance(comparisons, int) or comparisons < 1:
        raise ValueError(f"comparisons must be a positive integer, got {comparisons!r}")
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1, got {level!r}")
    return 1.0 - (1.0 - level) / comparisons


def n_resamples(comparisons: int = 1) -> int:
    """Bootstrap resamples used for an interval adjusted for `comparisons` comparisons.

    N_RESAMPLES * m, so each tail of the adjusted interval rests on as many resamples
    (N_RESAMPLES * (1 - LEVEL) / 2 = 50) as an unadjusted one.
    """
    adjusted_level(comparisons)  # validates
    return N_RESAMPLES * comparisons


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its percentile bootstrap interval (all NaN when there is no data).

    `comparisons` is the number of comparisons the interval was adjusted for (its confidence
    level is `level`). `outside` is derived, not passed: True when the estimate lies outside
    [lo, hi], which a skewed resample distribution can cause; the interval is then reported
    as it is (never widened) and a report should flag it.
    """

    value: float
    lo: float
    hi: float
    n: int
    comparisons: int = 1
    outside: bool = field(init=False)

    def __post_init__(self) -> None:
        known = not any(math.isnan(x) for x in (self.value, self.lo, self.hi))
        object.__setattr__(self, "outside", bool(known and not self.lo <= self.value <= self.hi))

    @property
    def level(self) -> float:
        """Confidence level of this one interval (Bonferroni-adjusted when comparisons > 1)."""
        return adjusted_level(self.comparisons)

    def excludes(self, x: float = 0.0) -> bool:
        """Whether the interval lies strictly on one side of `x` (False when anything is NaN).

        On a `diff_ci` estimate, `excludes(0.0)` is the test of "the two settings differ".
        """
        if any(math.isnan(v) for v in (self.lo, self.hi, x)):
            return False
        return self.lo > x or self.hi < x

    def overlaps(self, other: Estimate) -> bool:
        """Whether the two intervals share any point (NaN intervals count as overlapping).

        Descriptive only; never use it to decide a difference: two intervals can overlap while
        the interval of the difference excludes 0 (most of all for paired settings). Decide
        with `diff_ci(a, b).excludes(0.0)`.
        """
        if any(np.isnan(x) for x in (self.lo, self.hi, other.lo, other.hi)):
            return True
        return self.lo <= other.hi and other.lo <= self.hi


NAN = Estimate(float("nan"), float("nan"), float("nan"), 0)


def per_prompt(values: pd.Series, prompt_ids: pd.Series) -> pd.Series:
    """One value per prompt (mean over seeds/repeats), nulls dropped, ordered by prompt id."""
    frame = pd.DataFrame({"p": prompt_ids.to_numpy(), "v": values.to_numpy(dtype="float64")})
    frame = frame.dropna(subset=["v"])
    return frame.groupby("p", sort=True)["v"].mean()


def _interval(stats: np.ndarray, comparisons: int = 1) -> tuple[float, float]:
    """Plain percentile interval of the resampled statistics at the adjusted level."""
    tail = (1.0 - adjusted_level(comparisons)) / 2.0 * 100.0
    lo, hi = np.percentile(stats, [tail, 100.0 - tail])
    return float(lo), float(hi)


def from_resamples(value: float, stats: np.ndarray, n: int, *, comparisons: int = 1) -> Estimate:
    """An Estimate from a point estimate and its bootstrap resample statistics."""
    lo, hi = _interval(np.asarray(stats, dtype="float64"), comparisons)
    return Estimate(float(value), lo, hi, int(n), comparisons)


def _resample_means(values: np.ndarray, rng: np.random.Generator, count: int) -> np.ndarray:
    idx = rng.integers(0, len(values), size=(count, len(values)), dtype=np.int32)
    return values[idx].mean(axis=1)


def mean_ci(values: pd.Series, *, comparisons: int = 1) -> Estimate:
    """Mean of per-prompt values with a percentile bootstrap interval over prompts."""
    count = n_resamples(comparisons)
    arr = values.to_numpy(dtype="float64")
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return NAN
    stats = _resample_means(arr, np.random.default_rng(BOOTSTRAP_SEED), count)
    return from_resamples(float(arr.mean()), stats, arr.size, comparisons=comparisons)


def _sample(ids: set[object], k: int = 3) -> str:
    return ", ".join(sorted(map(str, ids))[:k]) + (", ..." if len(ids) > k else "")


def _check_pairing(a: pd.Series, b: pd.Series, paired: bool | None) -> bool:
    """Whether to pair a and b prompt by prompt; raise where that is ambiguous or impossible."""
    ids_a, ids_b = set(a.index), set(b.index)
    same = ids_a == ids_b
    if paired is False:
        return False
    if paired is None and not same and ids_a & ids_b:
        raise ValueError(
            f"diff_ci: the two series share {len(ids_a & ids_b)} prompt ids but not all "
            f"(only in a: {len(ids_a - ids_b)}, e.g. {_sample(ids_a - ids_b)}; only in b: "
            f"{len(ids_b - ids_a)}, e.g. {_sample(ids_b - ids_a)}), so it is ambiguous whether "
            "they are the same prompts (paired) or two prompt sets (independent). Restrict "
            "both to the shared prompts and pass paired=True, or pass paired=False for "
            "different prompt sets whose ids merely coincide."
        )
    if not same:
        if paired:
            raise ValueError(
                "diff_ci: paired=True needs both series to cover the same prompt ids "
                f"(only in a: {len(ids_a - ids_b)}, only in b: {len(ids_b - ids_a)})"
            )
        return False
    if a.index.has_duplicates or b.index.has_duplicates:
        raise ValueError("diff_ci: a paired comparison needs one value per prompt id")
    return True


def diff_ci(
    a: pd.Series, b: pd.Series, *, comparisons: int = 1, paired: bool | None = None
) -> Estimate:
    """mean(a) - mean(b) with a percentile bootstrap interval over prompts.

    The series are indexed by prompt id (one value per prompt, e.g. from `per_prompt`); NaNs are
    dropped first. With `paired=None` (default) the design is read from the ids: the same ids
    -> paired bootstrap of the per-prompt difference (steered vs baseline on one split);
    disjoint ids -> each series resampled independently and differenced per resample (train
    vs test); some but not all ids shared -> ValueError. `paired=True` demands the same ids;
    `paired=False` forces independent resampling (different prompt sets whose ids coincide).
    """
    count = n_resamples(comparisons)
    a, b = a.dropna(), b.dropna()
    if a.empty or b.empty:
        return NAN
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    if _check_pairing(a, b, paired):
        diffs = (a - b.reindex(a.index)).to_numpy(dtype="float64")
        stats = _resample_means(diffs, rng, count)
        return from_resamples(float(diffs.mean()), stats, len(diffs), comparisons=comparisons)
    arr_a, arr_b = a.to_numpy(dtype="float64"), b.to_numpy(dtype="float64")
    stats = _resample_means(arr_a, rng, count) - _resample_means(arr_b, rng, count)
    value = float(arr_a.mean() - arr_b.mean())
    return from_resamples(value, stats, min(len(a), len(b)), comparisons=comparisons)
