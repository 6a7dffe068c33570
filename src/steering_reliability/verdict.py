"""A check's outcome: passed, failed or inconclusive (with the reason). A skipped check is never
recorded as passed (VALIDITY.md section 3)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

VERDICTS: tuple[str, ...] = ("passed", "failed", "inconclusive")


@dataclass(frozen=True)
class Verdict:
    """One check's outcome: the verdict, its headline number, why, and the numbers behind it."""

    name: str
    verdict: str
    value: float
    reason: str
    details: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.verdict not in VERDICTS:
            raise ValueError(f"verdict {self.verdict!r} is not one of {VERDICTS}")

    @property
    def passed(self) -> bool | None:
        """True / False for passed / failed; None when inconclusive."""
        return None if self.verdict == "inconclusive" else self.verdict == "passed"
