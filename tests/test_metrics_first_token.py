"""First-token refusal ids (derived from a tokenizer built here) and their probability mass."""

from __future__ import annotations

from collections.abc import Sequence

import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from steering_reliability.errors import InputError
from steering_reliability.metrics import (
    default_opener_phrases,
    first_token_refusal_prob,
    refusal_token_ids,
)

CORPUS = [
    "I'm sorry, but I can't help with that.",
    "Sure! Here is how to bake bread: mix, knead, rise, bake.",
    "As an AI, I cannot taste soup. Unfortunately, I am unable to help.",
    "Sorry, but no. It is a sunny day and the garden needs water.",
    "i must decline. Of course you can plant tomatoes in spring.",
]


@pytest.fixture(scope="module")
def tokenizer() -> object:
    """A small byte-level BPE trained here: no download, no files."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(CORPUS * 20, trainer=trainer)
    return PreTrainedTokenizerFast(tokenizer_object=tok)


class CharTokenizer:
    """One token per character, a space included: the leading space is its own token."""

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(c) for c in text]

    def decode(self, ids: Sequence[int]) -> str:
        return "".join(chr(i) for i in ids)


def test_ids_are_the_first_tokens_of_the_opener_variants(tokenizer: object) -> None:
    ids = refusal_token_ids(tokenizer)
    assert ids == tuple(sorted(set(ids)))
    encode, decode = tokenizer.encode, tokenizer.decode  # type: ignore[attr-defined]

    def first_visible(text: str) -> int:
        # The first token that shows text: a bare "Ġ" (space) token is skipped.
        return next(t for t in encode(text, add_special_tokens=False) if decode([t]).strip())

    for phrase in default_opener_phrases():
        for variant in (phrase, " " + phrase):
            assert first_visible(variant) in ids, variant
        for variant in (phrase.lower(), " " + phrase.lower()):
            tid = first_visible(variant)
            first_word = variant.split()[0].split("'")[0].strip(",")
            if decode([tid]).strip() == first_word:  # "i", " sorry": whole words are kept
                assert tid in ids, variant
    decoded = {tokenizer.decode([i]) for i in ids}  # type: ignore[attr-defined]
    assert {"I", " I", "i"} <= decoded
    assert "Sure" not in decoded and " Sure" not in decoded


def test_ids_follow_the_tokenizer_not_a_fixed_table(tokenizer: object) -> None:
    chars = refusal_token_ids(CharTokenizer())
    assert ord("I") in chars and ord("i") in chars and ord(" ") not in chars
    assert chars != refusal_token_ids(tokenizer)


def test_custom_phrases_and_empty_phrases() -> None:
    got = refusal_token_ids(CharTokenizer(), ["Nope", "i'm out"])
    assert got == (ord("I"), ord("N"), ord("i"))  # "n" of "nope" is a fragment: left out
    with pytest.raises(InputError, match="no refusal-opening token"):
        refusal_token_ids(CharTokenizer(), ["", "   "])


def test_lower_case_fragments_that_open_other_words_are_left_out() -> None:
    # "u" (of "unfortunately") opens countless words; "U" at the start of an answer is kept.
    assert refusal_token_ids(CharTokenizer(), ["Unfortunately, I"]) == (ord("U"),)


def test_default_openers_come_from_the_refusal_markers() -> None:
    openers = default_opener_phrases()
    assert "I'm sorry, but" in openers and "As an AI" in openers
    assert not any(p.startswith(("It ", "That", "My ")) for p in openers)


@st.composite
def logits_and_ids(draw: st.DrawFn) -> tuple[torch.Tensor, list[int]]:
    batch, vocab = draw(st.integers(1, 4)), draw(st.integers(1, 30))
    finite = st.floats(
        allow_nan=False, allow_infinity=False, min_value=-1e4, max_value=1e4, width=32
    )
    logits = torch.as_tensor(draw(arrays("float32", (batch, vocab), elements=finite)))
    ids = draw(st.lists(st.integers(0, vocab - 1), max_size=vocab))
    return logits, ids


@given(logits_and_ids())
def test_probability_is_in_unit_interval_and_additive(case: tuple[torch.Tensor, list[int]]) -> None:
    logits, ids = case
    p = first_token_refusal_prob(logits, ids)
    assert p.shape == (logits.shape[0],)
    assert bool(((p >= 0) & (p <= 1)).all())
    rest = [i for i in range(logits.shape[-1]) if i not in set(ids)]
    total = p + first_token_refusal_prob(logits, rest)
    assert torch.allclose(total, torch.ones_like(total), atol=1e-9)


def test_all_mass_on_refusal_ids_gives_one() -> None:
    logits = torch.full((2, 10), -float("inf"))
    logits[:, [3, 7]] = torch.tensor([[0.0, 1.0], [5.0, -2.0]])
    assert torch.equal(first_token_refusal_prob(logits, [3, 7]), torch.ones(2, dtype=torch.float64))
    assert torch.equal(
        first_token_refusal_prob(logits, [7, 3, 3]), torch.ones(2, dtype=torch.float64)
    )
    assert torch.equal(first_token_refusal_prob(logits, []), torch.zeros(2, dtype=torch.float64))


def test_end_to_end_with_tokenizer(tokenizer: object) -> None:
    ids = refusal_token_ids(tokenizer)
    vocab = len(tokenizer)  # type: ignore[arg-type]
    logits = torch.zeros(1, vocab)
    logits[0, list(ids)] = 30.0  # exp(30) ~ 1e13 per id: nearly all mass
    assert first_token_refusal_prob(logits, ids).item() == pytest.approx(1.0, abs=1e-9)
    assert first_token_refusal_prob(torch.zeros(1, vocab), ids).item() == pytest.approx(
        len(ids) / vocab
    )


def test_out_of_vocabulary_ids_are_an_input_error() -> None:
    with pytest.raises(InputError, match="outside the vocabulary"):
        first_token_refusal_prob(torch.zeros(1, 5), [1, 5])
