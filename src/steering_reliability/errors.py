"""Exception types: one per kind of bad input, each message names where and how to fix it."""

from __future__ import annotations

import difflib
from collections.abc import Iterable
from typing import Any


class SteeringReliabilityError(Exception):
    """Base class of every error this package raises on purpose."""


class InputError(SteeringReliabilityError, ValueError):
    """Bad user input. The message says file, line, field, value, what was expected and a hint."""

    def __init__(
        self,
        problem: str,
        *,
        file: str | None = None,
        line: int | None = None,
        field: str | None = None,
        value: Any = None,
        expected: str | None = None,
        hint: str | None = None,
    ) -> None:
        self.problem = problem
        self.file = file
        self.line = line
        self.field = field
        self.value = value
        self.expected = expected
        self.hint = hint
        super().__init__(self.render())

    def render(self) -> str:
        where = ""
        if self.file is not None:
            where = str(self.file)
            if self.line is not None:
                where += f":{self.line}"
            where += ": "
        parts = [f"{where}{self.problem}"]
        if self.field is not None:
            parts.append(f"  field: {self.field}")
        if self.value is not None:
            shown = repr(self.value)
            if len(shown) > 120:
                shown = shown[:117] + "..."
            parts.append(f"  value: {shown}")
        if self.expected is not None:
            parts.append(f"  expected: {self.expected}")
        if self.hint is not None:
            parts.append(f"  hint: {self.hint}")
        return "\n".join(parts)


class PromptFileError(InputError):
    """A prompt file (JSONL / JSON / CSV) that cannot be used."""


class ConfigError(InputError):
    """A config file or override that cannot be used."""


class ModelLoadError(SteeringReliabilityError):
    """A model that cannot be loaded here (unknown name, not cached offline, missing package)."""


class DirectionError(InputError):
    """A steering direction that cannot be built or used (zero, wrong size, degenerate position)."""


class InterventionError(InputError):
    """An intervention that cannot be applied (unknown kind, unknown hook point, bad alpha)."""


class ResumeError(SteeringReliabilityError):
    """A resumed run whose configuration differs from the one on disk."""


def suggest(value: str, choices: Iterable[str], n: int = 3) -> str:
    """'did you mean ...?' text for an unknown name, or the list of valid names."""
    choices = list(choices)
    close = difflib.get_close_matches(str(value), choices, n=n, cutoff=0.5)
    if close:
        return "did you mean " + " or ".join(repr(c) for c in close) + "?"
    shown = ", ".join(repr(c) for c in choices[:12])
    more = f" (and {len(choices) - 12} more)" if len(choices) > 12 else ""
    return f"valid names: {shown}{more}"
