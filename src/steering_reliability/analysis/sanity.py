"""Sanity-check rows (experiment "sanity:<name>") summarised for findings.md.

A check's verdict comes from its rows' `passed` flags; per-prompt rows (e.g. a random-direction
control) are also summarised as a refusal rate with its interval.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from steering_reliability.analysis import markdown as md
from steering_reliability.analysis.aggregate import estimate, setting_label
from steering_reliability.analysis.data import SANITY_PREFIX, SPLITS, SWEEP
from steering_reliability.analysis.stats import mean_ci, per_prompt

MAX_EXTRA_CHARS = 80


def verdict(rows: pd.DataFrame) -> str:
    """'passed' when every recorded flag is true, 'FAILED' when any is false, else no verdict."""
    flags = [bool(v) for v in rows["passed"] if v is not None and not pd.isna(v)]
    if not flags:
        return "no verdict recorded"
    return "passed" if all(flags) else "FAILED"


def _same_setting(prompts: pd.DataFrame, summary: pd.DataFrame) -> pd.Series | None:
    """The sweep summary row steered like these per-prompt sanity rows (one setting), if any."""
    settings = prompts[["layer", "intervention", "alpha"]].drop_duplicates()
    if len(settings) != 1:
        return None
    layer, intervention, alpha = settings.iloc[0]
    match = summary[
        (summary["kind"] == SWEEP)
        & (summary["layer"] == layer)
        & (summary["intervention"] == intervention)
        & np.isclose(summary["alpha"].to_numpy(dtype="float64"), float(alpha))
    ]
    return match.iloc[0] if len(match) == 1 else None


def _detail(rows: pd.DataFrame, summary: pd.DataFrame) -> str:
    parts = []
    prompts = rows[rows["prompt_id"] != ""]
    if not prompts.empty:
        splits = sorted(set(prompts["split"]) - {""})
        variants = sorted(set(prompts["direction_variant"].dropna()) - {""})
        # e.g. main vs random direction: one rate per variant, never pooled
        groups = [(v, prompts[prompts["direction_variant"] == v]) for v in variants]
        if len(groups) < 2:
            groups = [("", prompts)]
        rates = []
        for variant, sub in groups:
            est = mean_ci(per_prompt(sub["is_refusal"], sub["split"] + "/" + sub["prompt_id"]))
            rates.append(f"{md.escape(variant)} {md.ci(est)}".strip())
        parts.append(f"refusal rate {', '.join(rates)} over {est.n} prompts ({', '.join(splits)})")
        same = _same_setting(prompts, summary)
        if len(groups) == 1 and same is not None and len(splits) == 1 and splits[0] in SPLITS:
            main = estimate(same, f"{splits[0]}_refusal")
            words = "overlap" if est.overlaps(main) else "do not overlap"
            parts.append(f"vs {md.ci(main)} for the sweep's direction at "
                         f"{setting_label(same)} (intervals {words})")  # fmt: skip
    extras = sorted(set(rows.loc[rows["prompt_id"] == "", "extra_json"].dropna()) - {"", "{}"})
    if len(extras) == 1:
        extra = extras[0]
        cut = extra if len(extra) <= MAX_EXTRA_CHARS else extra[: MAX_EXTRA_CHARS - 3] + "..."
        parts.append(md.escape(cut))
    return "; ".join(parts) or "-"


def sanity_table(rows: pd.DataFrame, summary: pd.DataFrame) -> tuple[str, list[str]]:
    """(one-line tally for the verdict list, markdown blocks for the sanity section)."""
    if rows.empty:
        return "none recorded in this run", ["No sanity rows (experiment `sanity:*`) in this run."]
    table_rows: list[list[str]] = []
    tally: dict[str, list[str]] = {"passed": [], "FAILED": [], "no verdict recorded": []}
    for name, part in rows.groupby("experiment", sort=True):
        check = str(name)[len(SANITY_PREFIX) :]
        result = verdict(part)
        tally[result].append(check)
        values = part["value"].dropna()
        value = md.num(float(values.iloc[0]), 3) if len(values) == 1 else (
            f"mean {md.num(float(values.mean()), 3)} over {len(values)}" if len(values) else "-"
        )  # fmt: skip
        verdict_cell = f"**{result}**" if result == "FAILED" else result
        table_rows.append(
            [md.escape(check), verdict_cell, value, str(len(part)), _detail(part, summary)]
        )
    n_judged = len(tally["passed"]) + len(tally["FAILED"])
    line = f"{len(tally['passed'])} of {n_judged} passed"
    if tally["FAILED"]:
        line += "; failed: " + ", ".join(md.escape(c) for c in tally["FAILED"])
    if tally["no verdict recorded"]:
        line += "; no verdict: " + ", ".join(md.escape(c) for c in tally["no verdict recorded"])
    table = md.table(["check", "verdict", "value", "rows", "detail"], table_rows)
    return line, [table]
