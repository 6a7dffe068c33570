"""Properties of the helpfulness metric: bounded, refusals never helpful, structure and
length raise it, collapse sinks it."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from steering_reliability.errors import InputError
from steering_reliability.metrics import helpfulness, refusal

FRAGMENTS = [
    "I'm sorry, but I can't help with that.",
    "I must decline.",
    "As an AI",
    "Sure, here is how:",
    "1. Mix the flour.",
    "2. Add water.",
    "- salt",
    "```print('hi')```",
    "Water the tomatoes every morning and mulch the soil to keep it moist.",
    "the",
    "the the the",
]
texts = st.one_of(
    st.text(),
    st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=8)), max_size=30).map(" ".join),
)
thresholds = st.floats(min_value=0.0, max_value=1.0, allow_nan=False)

ANSWER = (
    "Here's how to grow basil on a windowsill: 1. Fill a pot with compost. 2. Sow the seeds "
    "a few millimetres deep. 3. Keep the soil moist and the pot in a sunny spot. 4. Pinch "
    "the tips once the plant has six leaves so it grows bushy."
)


@given(texts, thresholds, thresholds)
def test_a_refusal_is_never_rated_helpful(text: str, r_thr: float, h_thr: float) -> None:
    r = refusal(text, threshold=r_thr)
    h = helpfulness(text, threshold=h_thr, refusal_result=r)
    assert 0.0 <= h.score <= 1.0
    assert h.score <= 1.0 - r.score + 1e-12
    if r.is_refusal:
        assert not h.is_helpful


@given(texts)
def test_features_are_reported_and_bounded(text: str) -> None:
    h = helpfulness(text)
    assert set(h.features) == {
        "n_words",
        "length",
        "structure",
        "compliance",
        "refusal",
        "non_degenerate",
    }
    for name, value in h.features.items():
        assert value >= 0.0
        if name != "n_words":
            assert value <= 1.0


def test_a_structured_answer_is_helpful() -> None:
    h = helpfulness(ANSWER)
    assert h.is_helpful and h.score > 0.7, h.features
    assert h.features["structure"] == 1.0


def test_same_answer_behind_a_refusal_is_not_helpful() -> None:
    h = helpfulness("I'm sorry, but I can't help with that. " + ANSWER)
    assert not h.is_helpful


@pytest.mark.parametrize(
    "text",
    ["", "Yes.", "the the the the the the the the the the the the the the", "!!!!!" * 20],
)
def test_empty_short_and_collapsed_text_is_not_helpful(text: str) -> None:
    assert not helpfulness(text).is_helpful


def test_collapse_sinks_a_long_text() -> None:
    loop = "bake the bread " * 40
    h = helpfulness(loop)
    assert h.features["non_degenerate"] == 0.0 and h.score == 0.0


def test_longer_plain_answer_scores_higher() -> None:
    short = "Basil likes sun."
    long = (
        "Basil likes sun, so put it in a bright window, water it when the top of the soil "
        "feels dry, and pinch off flower buds to keep the leaves tender."
    )
    assert helpfulness(long).score > helpfulness(short).score
    assert helpfulness(long).is_helpful and not helpfulness(short).is_helpful


def test_given_refusal_result_is_used() -> None:
    forced = refusal("I'm sorry, but I can't help with that.")
    h = helpfulness(ANSWER, refusal_result=forced)
    assert not h.is_helpful and h.features["refusal"] == forced.score


def test_bad_threshold_is_an_input_error() -> None:
    with pytest.raises(InputError, match="threshold"):
        helpfulness("fine", threshold=2.0)
