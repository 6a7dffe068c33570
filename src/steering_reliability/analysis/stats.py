"""Percentile bootstrap intervals over prompts, with a fixed seed so reports re-render identically."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

BOOTSTRAP_SEED = 0
N_RESAMPLES = 1000
LEVEL = 0.95


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its 95% bootstrap interval (all NaN when there is no data)."""

    value: float
    lo: float
    hi: float
    n: int

    def overlaps(self, other: Estimate) -> bool:
        """Whether the two intervals share any point (NaN intervals count as overlapping)."""
        if any(np.isnan(x) for x in (self.lo, self.hi, other.lo, other.hi)):
            return True
        return self.lo <= other.hi and other.lo <= self.hi


NAN = Estimate(float("nan"), float("nan"), float("nan"), 0)


def per_prompt(values: pd.Series, prompt_ids: pd.Series) -> pd.Series:
    """One value per prompt (mean over seeds/repeats), nulls dropped, ordered by prompt id."""
    frame = pd.DataFrame({"p": prompt_ids.to_numpy(), "v": values.to_numpy(dtype="float64")})
    frame = frame.dropna(subset=["v"])
    return frame.groupby("p", sort=True)["v"].mean()


def _interval(stats: np.ndarray, value: float) -> tuple[float, float]:
    """Percentile interval, widened to include the estimate (a skewed resample can miss it)."""
    tail = (1.0 - LEVEL) / 2.0 * 100.0
    lo, hi = np.percentile(stats, [tail, 100.0 - tail])
    return float(min(lo, value)), float(max(hi, value))


def _resample_means(values: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    idx = rng.integers(0, len(values), size=(N_RESAMPLES, len(values)), dtype=np.int32)
    return values[idx].mean(axis=1)


def mean_ci(values: pd.Series) -> Estimate:
    """Mean of per-prompt values with a bootstrap interval over prompts."""
    arr = values.to_numpy(dtype="float64")
    arr = arr[~np.isnan(arr)]
    if arr.size == 0:
        return NAN
    value = float(arr.mean())
    lo, hi = _interval(_resample_means(arr, np.random.default_rng(BOOTSTRAP_SEED)), value)
    return Estimate(value, lo, hi, int(arr.size))


def diff_ci(a: pd.Series, b: pd.Series) -> Estimate:
    """mean(a) - mean(b) with an interval: paired over prompts when both cover the same prompt
    ids (steered vs baseline on one split), independent resampling otherwise (train vs test)."""
    a, b = a.dropna(), b.dropna()
    if a.empty or b.empty:
        return NAN
    rng = np.random.default_rng(BOOTSTRAP_SEED)
    value = float(a.mean() - b.mean())
    if set(a.index) == set(b.index):
        paired = (a - b.reindex(a.index)).to_numpy(dtype="float64")
        stats = _resample_means(paired, rng)
    else:
        stats = _resample_means(a.to_numpy(dtype="float64"), rng) - _resample_means(
            b.to_numpy(dtype="float64"), rng
        )
    lo, hi = _interval(stats, value)
    return Estimate(value, lo, hi, int(min(len(a), len(b))))
