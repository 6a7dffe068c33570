"""Train/test leakage: exact and near duplicates, and held-out labels that appear in train.

A generalisation gap means nothing if the test set repeats train prompts, so the committed
sets are checked by a test that names every offending pair.
"""

from __future__ import annotations

import dataclasses
import re
import unicodedata
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from steering_reliability.prompts.catalog_harm import TEST_TEMPLATES, TRAIN_TEMPLATES
from steering_reliability.prompts.schema import Prompt

# Word-bigram Jaccard at or above this counts as a near duplicate: a light rewording of one
# request scores above it, the committed train/test pairs stay below 0.2. Two short prompts
# sharing only a template can reach ~0.5, one more reason templates are held out as well.
JACCARD_THRESHOLD = 0.5
NGRAM = 2
DISJOINT_FIELDS = ("style", "template", "subfamily")


@dataclass(frozen=True)
class LeakagePair:
    """One train/test pair that leaks: kind is exact, near, or the meta field that overlaps."""

    kind: str
    train_id: str
    test_id: str
    detail: str
    score: float = 1.0

    def __str__(self) -> str:
        return f"{self.kind}: train {self.train_id!r} ~ test {self.test_id!r} ({self.detail})"


def normalise(text: str) -> str:
    """Case-, width- and punctuation-insensitive form of a prompt."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return " ".join(re.findall(r"\w+", text))


def shingles(text: str, n: int = NGRAM) -> frozenset[tuple[str, ...]]:
    """The set of word n-grams of the normalised text (the words themselves if fewer than n)."""
    words = normalise(text).split()
    if len(words) < n:
        return frozenset((w,) for w in words)
    return frozenset(tuple(words[i : i + n]) for i in range(len(words) - n + 1))


def jaccard(a: frozenset[tuple[str, ...]], b: frozenset[tuple[str, ...]]) -> float:
    if not a and not b:
        return 1.0
    return len(a & b) / len(a | b)


def leakage_report(
    train: Sequence[Prompt],
    test: Sequence[Prompt],
    *,
    jaccard_threshold: float = JACCARD_THRESHOLD,
    ngram: int = NGRAM,
    disjoint_fields: Iterable[str] = DISJOINT_FIELDS,
) -> list[LeakagePair]:
    """Every leaking pair, in test order: normalised exact duplicates, near duplicates
    (word n-gram Jaccard >= threshold), values of `disjoint_fields` shared by both sets, and
    families of test lines marked meta.held_out == "family" that occur in train."""
    if not 0.0 < jaccard_threshold <= 1.0:
        raise ValueError(f"jaccard_threshold must be in (0, 1], got {jaccard_threshold!r}")
    pairs = _text_pairs(train, test, jaccard_threshold, ngram)
    for field in disjoint_fields:
        pairs.extend(_shared_values(train, test, field, lambda p: True))
    pairs.extend(
        _shared_values(train, test, "family", lambda p: p.meta.get("held_out") == "family")
    )
    return pairs


def _text_pairs(
    train: Sequence[Prompt], test: Sequence[Prompt], threshold: float, n: int
) -> list[LeakagePair]:
    exact = {normalise(p.prompt): p for p in train}
    train_sh = [shingles(p.prompt, n) for p in train]
    postings: dict[tuple[str, ...], list[int]] = {}
    for index, grams in enumerate(train_sh):
        for gram in grams:
            postings.setdefault(gram, []).append(index)
    out: list[LeakagePair] = []
    for t in test:
        twin = exact.get(normalise(t.prompt))
        if twin is not None:
            out.append(LeakagePair("exact", twin.id, t.id, "same normalised text"))
            continue
        grams = shingles(t.prompt, n)
        near = sorted({i for g in grams for i in postings.get(g, ())})
        for index in near:
            score = jaccard(train_sh[index], grams)
            if score >= threshold:
                detail = f"{n}-gram jaccard {score:.2f} >= {threshold}"
                out.append(LeakagePair("near", train[index].id, t.id, detail, score))
    return out


def _shared_values(
    train: Sequence[Prompt], test: Sequence[Prompt], field: str, applies: Callable[[Prompt], bool]
) -> list[LeakagePair]:
    first_train: dict[str, str] = {}
    for p in train:
        if field in p.meta:
            first_train.setdefault(p.meta[field], p.id)
    reported: set[str] = set()
    out: list[LeakagePair] = []
    for t in test:
        value = t.meta.get(field)
        if value is None or value in reported or value not in first_train:
            continue
        if applies(t):
            reported.add(value)
            detail = f"held-out {field} {value!r} appears in train"
            out.append(LeakagePair(field, first_train[value], t.id, detail))
    return out


def _template_patterns() -> dict[str, re.Pattern[str]]:
    patterns = dict(TRAIN_TEMPLATES)
    for by_id in TEST_TEMPLATES.values():
        patterns.update(by_id)
    return {
        template: re.compile(re.escape(pattern).replace(re.escape("{act}"), "(?P<act>.+)"), re.S)
        for template, pattern in patterns.items()
    }


def requests_only(prompts: Sequence[Prompt]) -> list[Prompt]:
    """The prompts with the generator's template words removed: the request alone ("build a
    pipe bomb" for "Tell me how to build a pipe bomb."), where meta.template names a generator
    template the text matches; other prompts unchanged.

    For comparing sets that share templates on purpose (the refusing organism's training data
    and the evaluation sets): two short prompts in one template overlap by its words alone.
    """
    patterns = _template_patterns()
    out: list[Prompt] = []
    for p in prompts:
        pattern = patterns.get(str(p.meta.get("template", "")))
        found = pattern.fullmatch(p.prompt) if pattern is not None else None
        out.append(p if found is None else dataclasses.replace(p, prompt=found["act"]))
    return out


def format_report(pairs: Sequence[LeakagePair], limit: int = 20) -> str:
    """Readable list of offending pairs for an assertion message."""
    lines = [str(p) for p in pairs[:limit]]
    if len(pairs) > limit:
        lines.append(f"... and {len(pairs) - limit} more")
    return "\n".join(lines)
