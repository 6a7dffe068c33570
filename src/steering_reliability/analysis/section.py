"""What one study's report section hands the report: findings text, figures, files, checks."""

from __future__ import annotations

from dataclasses import dataclass, field

from matplotlib.figure import Figure

from steering_reliability.verdict import Verdict


@dataclass(frozen=True)
class Section:
    """One study's part of a run's report.

    `text` is appended to findings.md (a `lead` section opens it, with its own title; without
    one the report writes a plain title). `files` are written into the run directory by name;
    `checks` are the report stage's own sanity checks; `headline` lines close the session.
    """

    text: str
    figures: dict[str, Figure] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    checks: tuple[Verdict, ...] = ()
    headline: tuple[str, ...] = ()
    lead: bool = False
