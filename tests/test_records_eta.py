"""The one ETA formula (records.progress.eta), shared by the progress lines and `make status`,
on a synthetic schedule shaped like the default run's: its last cases are its longest."""

from __future__ import annotations

import random
from typing import Any

import pytest

from steering_reliability.records.progress import eta

# The weighted ETA's largest relative error allowed on the schedule below while 5 or more cases
# are pending (their noise averages out); the last few may each be off by their own noise.
TOLERANCE, LAST_FEW = 0.10, 0.20


def schedule(with_work: bool = True) -> list[dict[str, Any]]:
    """105 cases in collection order, each with its true seconds: 87 light cases of two kinds
    (~24 s each, 35 min in all), then 18 transfer cases of ~103 s each (31 min): prompts x new
    tokens at ~1 ms a unit, +-15% noise, seeded."""
    rng = random.Random(0)
    kinds = [("test_sweep", 24_000)] * 60 + [("test_behaviour_sweep", 24_400)] * 27
    kinds += [("test_transfer", 103_000)] * 18
    return [{"kind": kind, "work": work if with_work else None,
             "seconds": work * 1e-3 * rng.uniform(0.85, 1.15)} for kind, work in kinds]  # fmt: skip


def etas(cases: list[dict[str, Any]], k: int) -> tuple[float, float, float]:
    """(true seconds left, count-based ETA, weighted ETA) after the first k cases, one worker."""
    done, pending = cases[:k], cases[k:]
    elapsed = sum(c["seconds"] for c in done)
    weighted = eta([{**c, "seconds": None} for c in pending], done, workers=1)
    assert weighted is not None
    return sum(c["seconds"] for c in pending), len(pending) * elapsed / k, weighted


def test_the_count_based_eta_is_badly_wrong_where_the_weighted_one_is_right() -> None:
    cases = schedule()
    true, count, weighted = etas(cases, 87)  # the case 87 of 105
    assert 29 * 60 < true < 33 * 60 and 6 * 60 < count < 8 * 60  # "7 min left" when 31 remained
    assert abs(weighted - true) <= TOLERANCE * true
    worst = 0.0
    for k in range(5, 105):  # and at every point of the run
        true, count, weighted = etas(cases, k)
        assert abs(weighted - true) <= (TOLERANCE if k <= 100 else LAST_FEW) * true, k
        worst = max(worst, abs(count - true) / true)
    assert worst > 0.7  # the count-based ETA was off by more than 70% on the way


def test_without_work_hints_the_kinds_measured_times_carry_the_eta() -> None:
    """With no expected work, a kind none has finished counts at the mean of all finished cases
    (the count-based guess); one finished case of it is enough to fix the estimate."""
    cases = schedule(with_work=False)
    true, count, weighted = etas(cases, 87)
    assert weighted == pytest.approx(count)  # nothing better is known yet
    true, count, weighted = etas(cases, 88)  # one transfer case has finished
    assert abs(weighted - true) <= TOLERANCE * true < abs(count - true)


def test_workers_share_the_pending_cases_but_not_one_case() -> None:
    finished = [{"kind": "a", "seconds": 10.0}, {"kind": "b", "seconds": 100.0}]
    four = [{"kind": "a"}] * 4
    assert eta(four, finished, workers=1) == pytest.approx(40.0)
    assert eta(four, finished, workers=2) == pytest.approx(20.0)
    assert eta([{"kind": "b"}, {"kind": "a"}], finished, workers=4) == pytest.approx(100.0)
    assert eta(four, [], workers=1) is None  # nothing measured yet
    assert eta([], finished, workers=1) == 0.0
