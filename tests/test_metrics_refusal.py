"""Properties of the refusal metric, and snapshots of its explanation."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from steering_reliability.errors import InputError
from steering_reliability.metrics import (
    COMPLIANCE_MARKERS,
    REFUSAL_MARKERS,
    helpfulness,
    refusal,
)
from steering_reliability.metrics.refusal import position_factor

# Fragments that exercise the markers, mixed with arbitrary text by the strategies below.
FRAGMENTS = [
    "I'm sorry, but",
    "I\u2019m sorry",
    "I can't",
    "I cannot stress enough",
    "I can't wait",
    "I must decline",
    "As an AI",
    "I won't",
    "Unfortunately, I",
    "illegal and unethical",
    "It is not appropriate",
    "Sure,",
    "Sure! here",
    "Here's how",
    "here are three",
    "Step 1:",
    "1.",
    "2.",
    "- item",
    "```",
    "I can help",
    "I'm sorry to hear",
    "bread",
    "the garden",
    "help with that.",
    "water",
    "Of course!",
    "I don't have the ability to",
    "I do not have the capacity to help",
    "I don't have access to",
    "I'm currently unable to",
    "I can't directly",
    "As a text-based AI",
]
WHITESPACE = st.sampled_from([" ", "  ", "\n", "\t", " \n\n ", "\r\n"])

marker_texts = st.lists(
    st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=25
).map(" ".join)
any_texts = st.one_of(st.text(), marker_texts)

# Each opens with a full-weight refusal phrase (see the monotonicity property in refusal.py).
LEADING_REFUSALS = [
    "I'm sorry, but I can't help with that.",
    "I cannot assist with that request.",
    "I must decline.",
    "I\u2019m afraid I can\u2019t help with this.",
    "I won't do that, and I cannot provide it.",
]


@given(any_texts)
def test_scores_are_in_unit_interval(text: str) -> None:
    r = refusal(text)
    h = helpfulness(text, refusal_result=r)
    assert 0.0 <= r.score <= 1.0
    assert 0.0 <= h.score <= 1.0
    assert 0.0 <= r.refusal_evidence <= 1.0 and 0.0 <= r.compliance_evidence <= 1.0


@pytest.mark.parametrize("text", ["", " ", "\n\t", "\u00a8\u0307\ufeff", "🙂" * 3, "ß" * 5])
def test_degenerate_inputs_score_zero_refusal(text: str) -> None:
    r = refusal(text)
    assert r.score == 0.0 and not r.is_refusal and r.matches == ()
    assert not helpfulness(text).is_helpful


def test_very_long_text_stays_in_range() -> None:
    body = "Here is how to knead dough. 1. Mix. 2. Fold. I'm sorry if it sticks. " * 1000
    for text in (body, "I'm sorry, but I can't help with that. " + body, "x" * 100_000):
        r = refusal(text)
        h = helpfulness(text, refusal_result=r)
        assert 0.0 <= r.score <= 1.0 and 0.0 <= h.score <= 1.0


@given(prefix=st.sampled_from(LEADING_REFUSALS), text=any_texts)
def test_leading_refusal_sentence_never_lowers_score(prefix: str, text: str) -> None:
    before = refusal(text)
    after = refusal(prefix + " " + text)
    assert after.score >= before.score, (before.explain(), after.explain())
    assert after.is_refusal


@given(marker_texts, st.sampled_from([str.upper, str.lower, str.swapcase, str.title]))
def test_case_does_not_change_scores(text: str, change: object) -> None:
    assert callable(change)
    _assert_same_scores(text, change(text))


@given(st.text(), st.sampled_from([str.lower, str.casefold]))
def test_lowercasing_any_unicode_does_not_change_scores(text: str, change: object) -> None:
    assert callable(change)
    _assert_same_scores(text, change(text))


@given(st.lists(st.one_of(st.sampled_from(FRAGMENTS), st.text(max_size=6)), max_size=25), st.data())
def test_whitespace_runs_do_not_change_scores(parts: list[str], data: st.DataObject) -> None:
    words = " ".join(parts).split()
    spaced = data.draw(WHITESPACE)
    for word in words:
        spaced += word + data.draw(WHITESPACE)
    _assert_same_scores(" ".join(words), spaced)


@given(marker_texts)
def test_typographic_apostrophes_do_not_change_scores(text: str) -> None:
    _assert_same_scores(text, text.replace("'", "\u2019"))


def _assert_same_scores(a: str, b: str) -> None:
    ra, rb = refusal(a), refusal(b)
    assert (ra.score, ra.is_refusal, ra.matched_phrases, ra.compliance_phrases) == (
        rb.score,
        rb.is_refusal,
        rb.matched_phrases,
        rb.compliance_phrases,
    ), (ra.explain(), rb.explain())
    assert helpfulness(a).score == helpfulness(b).score


@given(any_texts)
def test_match_offsets_point_into_the_original_text(text: str) -> None:
    for m in refusal(text).matches:
        assert 0 <= m.start < m.end <= len(text)
        assert text[m.start : m.end] == m.text
        assert m.kind in ("refusal", "compliance")
        assert 0.0 < m.evidence <= m.weight <= 1.0


def test_refusal_opening_the_answer_outweighs_the_same_phrase_deep_inside() -> None:
    filler = "Knead the dough on a floured board until it is smooth and springy. " * 6
    opening = refusal("I'm sorry, I forgot the oven. " + filler)
    deep = refusal(filler + "I'm sorry, I forgot the oven.")
    assert opening.matched_phrases == deep.matched_phrases == ["I'm sorry"]
    assert opening.score > deep.score


@pytest.mark.parametrize("kind", ["refusal", "compliance"])
def test_position_factor_is_non_increasing_and_positive(kind: str) -> None:
    factors = [position_factor(kind, w) for w in range(0, 400, 3)]
    assert factors[0] == 1.0
    assert all(a >= b > 0 for a, b in zip(factors, factors[1:], strict=False))


def test_marker_tables_are_well_formed() -> None:
    for table in (REFUSAL_MARKERS, COMPLIANCE_MARKERS):
        phrases = [m.phrase for m in table]
        assert len(phrases) == len(set(phrases))
        assert all(0.0 < m.weight <= 1.0 for m in table)
    # Every full-weight refusal marker matches its own canonical phrase.
    for m in REFUSAL_MARKERS:
        if m.weight == 1.0:
            assert m.phrase in refusal(m.phrase).matched_phrases or refusal(m.phrase).is_refusal


def test_non_string_input_is_an_input_error() -> None:
    with pytest.raises(InputError, match="string"):
        refusal([1, 2, 3])  # type: ignore[arg-type]


@pytest.mark.parametrize("threshold", [-0.1, 1.5, float("nan")])
def test_bad_threshold_is_an_input_error(threshold: float) -> None:
    with pytest.raises(InputError, match="threshold"):
        refusal("I'm sorry, but no.", threshold=threshold)


def test_threshold_moves_the_verdict_only() -> None:
    text = "As an AI, I have no taste buds."
    low, high = refusal(text, threshold=0.1), refusal(text, threshold=0.9)
    assert low.score == high.score and low.is_refusal and not high.is_refusal


@pytest.mark.parametrize(
    "text",
    [
        "I\u2019m sorry, but I can\u2019t help with that.",
        "Sure! I can't wait to help. Here's how: 1. Preheat the oven. 2. Bake the bread.",
        "I'm sorry to hear that. Here is how to repot a cactus: wear gloves and loosen the soil.",
        "As an AI, I don't have favourites, but here are three novels: 1. Dune 2. Beloved",
        "The recipe is simple.",
    ],
    ids=["plain-refusal", "cant-wait", "sorry-to-hear", "as-an-ai-then-list", "no-markers"],
)
def test_explanation_snapshot(text: str, snapshot: object) -> None:
    assert refusal(text).explain() == snapshot


# Phrase families found missing on real benchmark completions (scripts/detector_agreement.py;
# docs/sweep.md). Hand-written, harmless sentences: each family refuses when it opens the
# answer alone, and a helpful answer that opens with the same capability note stays helpful.
@pytest.mark.parametrize(
    ("text", "phrase"),
    [
        (
            "I don't have the ability to assist with booking flights.",
            "I don't have the ability to assist",
        ),
        (
            "I do not have the capacity to offer tutoring sessions.",
            "I don't have the ability to assist",
        ),
        (
            "I lack the capability to help you plan that picnic.",
            "I don't have the ability to assist",
        ),
        ("I don't have the ability to read your shopping list.", "I don't have the ability to"),
        ("I don't have access to your calendar.", "I don't have access to"),
        ("I'm currently unable to help with your garden plan.", "I'm unable to"),
        ("I'm simply not able to recommend a paint colour.", "I'm not able to"),
        ("I can't directly provide a recipe for scones.", "I can't assist"),
        ("As a text-based AI, I have no opinion on the best tea.", "As an AI"),
        ("As a digital language model, I have no favourite song.", "As an AI"),
    ],
)
def test_capability_refusal_families(text: str, phrase: str) -> None:
    r = refusal(text)
    assert phrase in r.matched_phrases, r.explain()
    assert r.is_refusal, r.explain()


@pytest.mark.parametrize(
    "text",
    [
        "I don't have the ability to see your screen, but here's how to restart the router: "
        "1. Unplug it. 2. Wait ten seconds. 3. Plug it back in.",
        "I don't have access to live weather data, but you can check a local forecast site.",
        "As a text-based AI, I'm happy to help: here are three houseplants for low light.",
        "Machine learning, as a subset of AI, finds patterns in data.",
        "A person who doesn't have the ability to swim should wear a life jacket.",
    ],
    ids=[
        "screen-then-steps",
        "live-data-then-tip",
        "text-based-ai-helps",
        "subset-of-ai",
        "third-person",
    ],
)
def test_capability_notes_before_help_are_not_refusals(text: str) -> None:
    assert not refusal(text).is_refusal, refusal(text).explain()
