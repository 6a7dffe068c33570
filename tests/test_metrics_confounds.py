"""Confound metrics: distinct-n, rep-n, token statistics, collapse and entropy."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from steering_reliability.errors import InputError
from steering_reliability.metrics import (
    degeneracy,
    distinct_n,
    entropy_from_logits,
    repeated_ngram_fraction,
    token_stats,
)

tokens = st.lists(st.integers(min_value=0, max_value=20), max_size=60)
finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e4, max_value=1e4, width=32)


def _rep_n_by_counting(toks: list[int], n: int) -> float:
    """rep-n from its definition: share of n-gram occurrences that repeat an earlier one."""
    grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
    seen: set[tuple[int, ...]] = set()
    repeats = 0
    for gram in grams:
        repeats += gram in seen
        seen.add(gram)
    return repeats / len(grams) if grams else 0.0


def _distinct_n_by_counting(toks: list[int], n: int) -> float:
    grams = [tuple(toks[i : i + n]) for i in range(len(toks) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


@given(tokens, st.integers(min_value=1, max_value=4))
def test_distinct_and_rep_match_counting_by_their_definitions(toks: list[int], n: int) -> None:
    assert distinct_n(toks, n) == pytest.approx(_distinct_n_by_counting(toks, n))
    assert repeated_ngram_fraction(toks, n) == pytest.approx(_rep_n_by_counting(toks, n))


def test_rep_n_by_hand() -> None:
    # trigrams 123, 231, 312, 123: one of four occurrences repeats an earlier one
    assert repeated_ngram_fraction([1, 2, 3, 1, 2, 3], 3) == pytest.approx(0.25)
    assert repeated_ngram_fraction([4, 4, 4, 4, 4], 2) == pytest.approx(0.75)
    assert repeated_ngram_fraction([1, 2, 3, 4], 2) == 0.0


def test_distinct_n_by_hand() -> None:
    assert distinct_n(["a", "b", "a", "b"], 2) == pytest.approx(2 / 3)
    assert distinct_n([1, 1, 1, 1], 1) == 0.25
    assert distinct_n([], 2) == 1.0 and repeated_ngram_fraction([7], 3) == 0.0
    with pytest.raises(InputError):
        distinct_n([1, 2], 0)


def test_token_stats_means_and_empty() -> None:
    s = token_stats([-1.0, -2.0, -3.0], [0.5, 1.5, 1.0])
    assert (s.mean_logprob, s.mean_entropy, s.n_tokens) == (-2.0, 1.0, 3)
    empty = token_stats([], [])
    assert empty.n_tokens == 0 and math.isnan(empty.mean_logprob)
    with pytest.raises(InputError, match="differ in length"):
        token_stats([-1.0], [])


@pytest.mark.parametrize(
    ("text", "collapsed"),
    [
        ("Knead the dough for ten minutes, then let it rise in a warm place for an hour.", False),
        ("1. Mix flour. 2. Add water. 3. Knead well. 4. Let it rise. 5. Bake until golden.", False),
        ("Short answer.", False),
        ("", True),
        ("I cannot I cannot I cannot I cannot I cannot I cannot I cannot", True),
        ("the the the the the the the the the the", True),
        ("!" * 80, True),
        ("ab" * 50, True),
    ],
)
def test_collapse_verdicts(text: str, collapsed: bool) -> None:
    d = degeneracy(text)
    assert d.collapsed is collapsed, d
    assert bool(d.reason) is collapsed


def test_degeneracy_prefers_token_ids() -> None:
    d = degeneracy("a perfectly varied sentence about baking bread at home", [5, 6] * 10)
    assert d.collapsed and d.n_units == 20 and d.distinct_2 == pytest.approx(2 / 19)


@given(st.text())
def test_degeneracy_bounds(text: str) -> None:
    d = degeneracy(text)
    assert 0.0 <= d.distinct_2 <= 1.0 and 0.0 <= d.repeated_ngram_frac <= 1.0


@given(arrays("float32", st.tuples(st.integers(1, 3), st.integers(1, 40)), elements=finite))
def test_entropy_is_non_negative_and_at_most_log_vocab(logits: object) -> None:
    x = torch.as_tensor(logits)
    h = entropy_from_logits(x)
    assert h.shape == x.shape[:-1]
    assert bool((h >= 0).all())
    assert bool((h <= math.log(x.shape[-1]) + 1e-9).all())


def test_entropy_known_values_and_masked_tokens() -> None:
    uniform = torch.zeros(2, 8)
    assert torch.allclose(
        entropy_from_logits(uniform), torch.full((2,), math.log(8), dtype=torch.float64)
    )
    peaked = torch.tensor([[0.0, -float("inf"), -float("inf")]])
    assert entropy_from_logits(peaked).item() == 0.0
    with pytest.raises(InputError):
        entropy_from_logits(torch.zeros(3, 0))
