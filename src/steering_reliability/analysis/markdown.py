"""Small Markdown helpers shared by examples.md and findings.md (escaping, tables, intervals)."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from steering_reliability.metrics.stats import Estimate

_SPECIAL = re.compile(r"([\\`*_\[\]<>#|~&])")


def escape(text: str) -> str:
    """Escape Markdown/HTML specials so model text renders literally."""
    return _SPECIAL.sub(r"\\\1", text)


def excerpt(text: str, max_lines: int = 4, max_chars: int = 400) -> list[str]:
    """The first lines of a completion, escaped, with a marker when anything was cut."""
    lines = text.strip("\n").splitlines() or [""]
    kept: list[str] = []
    used, cut = 0, len(lines) > max_lines
    for line in lines[:max_lines]:
        room = max_chars - used
        if len(line) > room:
            kept.append(escape(line[:room]))
            cut = True
            break
        kept.append(escape(line))
        used += len(line)
    if cut:
        kept.append("[...]")
    return kept


def quote(lines: Sequence[str]) -> str:
    """A block quote; empty lines keep the quote marker so it stays one block."""
    return "\n".join(f"> {line}" if line else ">" for line in lines)


def table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub-flavoured Markdown table (cells must already be escaped)."""
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(row) + " |" for row in rows]
    return "\n".join(out)


def num(value: float, digits: int = 2) -> str:
    """A number for prose, 'n/a' for NaN."""
    return "n/a" if value is None or math.isnan(value) else f"{value:.{digits}f}"


def ci(est: Estimate, digits: int = 2) -> str:
    """'0.45 [0.30, 0.60]': estimate with its 95% interval."""
    if math.isnan(est.value):
        return "n/a"
    text = f"{num(est.value, digits)} [{num(est.lo, digits)}, {num(est.hi, digits)}]"
    # a skewed resample distribution can leave the estimate outside its percentile interval
    return text + " (estimate outside its interval)" if est.outside else text
