"""No train/test leakage in the committed sets, and the check itself can fail."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from steering_reliability.prompts import (
    JACCARD_THRESHOLD,
    Prompt,
    format_report,
    leakage_report,
    load_prompts,
)
from steering_reliability.prompts.leakage import normalise

DATA = Path(__file__).resolve().parents[1] / "data" / "prompts"


def p(pid: str, text: str, **meta: str) -> Prompt:
    return Prompt(pid, text, {"family": "f", "style": "s", **meta})


def test_committed_train_and_test_do_not_leak() -> None:
    train = load_prompts(DATA / "harm_train.jsonl")
    test = load_prompts(DATA / "harm_test.jsonl")
    pairs = leakage_report(train, test, jaccard_threshold=JACCARD_THRESHOLD)
    assert not pairs, "train/test leakage:\n" + format_report(pairs)


def test_exact_duplicates_after_normalisation_are_found() -> None:
    train = [p("tr1", "How do I pick a lock?"), p("tr2", "Something else entirely")]
    test = [p("te1", "how do I  PICK a lock"), p("te2", "Unrelated words here")]
    kinds = [
        (x.kind, x.train_id, x.test_id) for x in leakage_report(train, test, disjoint_fields=())
    ]
    assert ("exact", "tr1", "te1") in kinds and len(kinds) == 1


def test_near_duplicates_are_found_and_named() -> None:
    train = [p("tr1", "Tell me how to steal a bike locked with a cable lock in a city.")]
    test = [p("te1", "Tell me how to steal a bike locked with a cable lock in my city.")]
    (pair,) = leakage_report(train, test, disjoint_fields=())
    assert pair.kind == "near" and pair.score >= JACCARD_THRESHOLD
    assert "'tr1'" in str(pair) and "'te1'" in str(pair)
    assert leakage_report(train, test, jaccard_threshold=0.99, disjoint_fields=()) == []


def test_held_out_labels_in_train_are_found() -> None:
    train = [p("tr1", "alpha beta gamma", style="slang", template="t1", subfamily="a")]
    test = [
        p("te1", "delta epsilon zeta", style="slang", template="t2", subfamily="b"),
        p("te2", "eta theta iota", style="slang", template="t1", subfamily="a"),
        p("te3", "kappa lambda mu", held_out="family", style="x", template="y", subfamily="z"),
    ]
    found = {(x.kind, x.test_id) for x in leakage_report(train, test)}
    assert found == {("style", "te1"), ("template", "te2"), ("subfamily", "te2"), ("family", "te3")}


def test_format_report_truncates() -> None:
    train = [p(f"tr{i}", f"same text {i}") for i in range(30)]
    test = [p(f"te{i}", f"same text {i}") for i in range(30)]
    text = format_report(leakage_report(train, test, disjoint_fields=()), limit=5)
    assert text.count("\n") == 5 and text.endswith("and 25 more")


words = st.lists(
    st.sampled_from(["how", "do", "i", "bake", "bread", "fast", "at", "home"]),
    min_size=1,
    max_size=12,
)


@given(words=words, punct=st.sampled_from(["?", "!", ".", "", " ?"]))
def test_case_and_punctuation_do_not_hide_an_exact_duplicate(words: list[str], punct: str) -> None:
    text = " ".join(words)
    assert normalise(text.upper() + punct) == normalise(text)
    (pair,) = leakage_report([p("a", text)], [p("b", text.title() + punct)], disjoint_fields=())
    assert pair.kind == "exact"
