"""Text normalisation shared by the text metrics, with a map back to the original offsets.

Every text metric scores the *normalised* text, so case, whitespace runs and typographic
apostrophes cannot change a score; the offset map lets evidence point into the original.
"""

from __future__ import annotations

import bisect
import functools
import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass, field

from steering_reliability.errors import InputError

# Typographic quotes and look-alikes folded to ASCII, so "I’m" and "I'm" match the same marker.
_FOLD = str.maketrans(
    {
        "\u2018": "'",  # left single quotation mark
        "\u2019": "'",  # right single quotation mark
        "\u201a": "'",
        "\u201b": "'",
        "\u02bc": "'",  # modifier letter apostrophe
        "\u2032": "'",  # prime
        "\u00b4": "'",  # acute accent
        "\u0060": "'",  # grave accent
        "\uff07": "'",  # fullwidth apostrophe
        "\u201c": '"',
        "\u201d": '"',
        "\u201e": '"',
        "\u2033": '"',
    }
)


@dataclass(frozen=True)
class NormalizedText:
    """`text` is NFKC-normalised, case-folded, quote-folded, with whitespace runs -> one space.

    `offsets[i]` is the index in the original string of the character that produced `text[i]`.
    """

    text: str
    offsets: tuple[int, ...]
    spaces: tuple[int, ...] = field(default=(), repr=False)  # positions of " " in text

    def original_span(self, start: int, end: int) -> tuple[int, int]:
        """The (start, end) in the original text covered by normalised text[start:end]."""
        if end <= start:
            at = self.offsets[start] if start < len(self.offsets) else 0
            return at, at
        return self.offsets[start], self.offsets[end - 1] + 1

    def word_index(self, start: int) -> int:
        """How many words precede normalised position `start` (a position measure that case
        and whitespace changes cannot move)."""
        return bisect.bisect_left(self.spaces, start)


def normalize(text: str) -> NormalizedText:
    """Normalise `text` for matching: see NormalizedText."""
    if not isinstance(text, str):
        raise InputError(
            "text metrics take a string",
            field="text",
            value=text,
            expected="str (decode token ids with the tokenizer first)",
        )
    folded, origin = _fold(text)
    chars: list[str] = []
    offsets: list[int] = []
    spaces: list[int] = []
    for m in _NON_SPACE.finditer(folded):
        if chars:  # a whitespace run between words becomes one space; leading/trailing go
            spaces.append(len(offsets))
            chars.append(" ")
            offsets.append(origin[m.start() - 1])
        chars.append(m.group())
        offsets.extend(origin[m.start() : m.end()])
    return NormalizedText("".join(chars), tuple(offsets), tuple(spaces))


_NON_SPACE = re.compile(r"\S+")


def _fold(text: str) -> tuple[str, Sequence[int]]:
    """NFKC + casefold + quote folding, and the original index of each output character."""
    if text.isascii():  # NFKC is the identity and casefold is lower(): one char per char
        return text.lower().translate(_FOLD), range(len(text))
    parts: list[str] = []
    origin: list[int] = []
    for i, raw in enumerate(text):
        # Per character so that every output character keeps its origin.
        folded = _fold_char(raw)
        parts.append(folded)
        origin.extend([i] * len(folded))
    return "".join(parts), origin


@functools.lru_cache(maxsize=4096)
def _fold_char(ch: str) -> str:
    return unicodedata.normalize("NFKC", ch).casefold().translate(_FOLD)
