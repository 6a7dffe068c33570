"""examples.md: a few prompts per split, unsteered vs steered at the operating point."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from steering_reliability.analysis import markdown as md
from steering_reliability.analysis.data import BASELINE, SPLITS
from steering_reliability.studies.sweep.report.aggregate import (
    operating_point_row,
    setting_label,
    setting_rows,
)

N_PER_SPLIT = 5
MAX_LINES = 4
MAX_CHARS = 400


def pick_prompts(ids: list[str], n: int = N_PER_SPLIT) -> list[str]:
    """n ids evenly spaced over the sorted ids: a spread, never chosen by outcome."""
    ids = sorted(ids)
    if len(ids) <= n:
        return ids
    return [ids[int(i)] for i in np.linspace(0, len(ids) - 1, n).round()]


def _first(rows: pd.DataFrame) -> dict[str, pd.Series]:
    """One row per prompt id (the lowest seed when a prompt was generated several times)."""
    ordered = rows.sort_values(["prompt_id", "seed"], kind="stable", na_position="last")
    return {str(pid): part.iloc[0] for pid, part in ordered.groupby("prompt_id", sort=True)}


def _flag(value: float) -> str:
    return "n/a" if math.isnan(value) else ("yes" if value >= 0.5 else "no")


def _score_row(name: str, row: pd.Series) -> list[str]:
    phrases = ", ".join(f"`{p.replace('`', '')}`" for p in row["matched_phrases"]) or "none"
    return [
        name,
        _flag(float(row["is_refusal"])),
        md.num(float(row["refusal_score"])),
        _flag(float(row["is_helpful"])),
        md.num(float(row["helpfulness_score"])),
        phrases.replace("|", "\\|"),
        md.num(float(row["n_tokens"]), 0),
    ]


def _prompt_section(pid: str, base: pd.Series, steered: pd.Series) -> str:
    meta = f"family: {base['family'] or 'n/a'}, style: {base['style'] or 'n/a'}"
    header = ["", "refusal", "refusal score", "helpful", "helpfulness score", "matched phrases",
              "tokens"]  # fmt: skip
    parts = [
        f"### {md.escape(pid)} ({md.escape(meta)})",
        md.quote(md.excerpt(str(base["prompt"]), MAX_LINES, MAX_CHARS)),
        md.table(header, [_score_row("baseline", base), _score_row("steered", steered)]),
        "**Baseline completion**",
        md.quote(md.excerpt(str(base["completion"]), MAX_LINES, MAX_CHARS)),
        "**Steered completion**",
        md.quote(md.excerpt(str(steered["completion"]), MAX_LINES, MAX_CHARS)),
    ]
    return "\n\n".join(parts)


def render_examples(df: pd.DataFrame, summary: pd.DataFrame) -> str:
    """The whole examples.md text for one run."""
    op = operating_point_row(summary)
    base_rows = df[df["experiment"] == BASELINE]
    op_rows = setting_rows(df, op)
    out = [
        "# Examples: baseline vs operating point",
        f"Operating point: {md.escape(setting_label(op))} (case `{op['case_id']}`; the rule is "
        "in findings.md). Up to "
        f"{N_PER_SPLIT} prompts per split, evenly spaced over the prompt ids present in both "
        f"settings (not chosen by outcome). Texts are cut to {MAX_LINES} lines / {MAX_CHARS} "
        "characters; [...] marks a cut. `refusal` and `helpful` are the metric verdicts.",
    ]
    for split in SPLITS:
        base = _first(base_rows[base_rows["split"] == split])
        steered = _first(op_rows[op_rows["split"] == split])
        ids = pick_prompts([pid for pid in base if pid in steered])
        out.append(f"## {split}")
        if not ids:
            out.append("No prompt of this split has both a baseline and a steered row.")
        out += [_prompt_section(pid, base[pid], steered[pid]) for pid in ids]
    return "\n\n".join(out) + "\n"
