"""Sanity-check rows (experiment "sanity:<name>") summarised for findings.md.

A check's verdict comes from its rows' `verdict` (passed / failed / inconclusive, with the reason
in extra_json); per-prompt rows are also summarised as a refusal rate with its interval. The
report stage runs one check of its own, on the finished sweep: collapse at the operating point.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from steering_reliability.analysis import markdown as md
from steering_reliability.analysis.data import BASELINE, SANITY_PREFIX
from steering_reliability.metrics.stats import mean_ci, per_prompt
from steering_reliability.studies.sweep.report.aggregate import (
    DEFAULT_RULE,
    OperatingPointRule,
    operating_point_row,
    setting_label,
)
from steering_reliability.verdict import Verdict

MAX_EXTRA_CHARS = 80


def verdict(rows: pd.DataFrame) -> str:
    """The check's recorded verdict: 'FAILED' if any row failed, else 'inconclusive' if any row
    was, else 'passed'; 'no verdict recorded' when no row carries one."""
    said = {str(v) for v in rows["verdict"] if isinstance(v, str) and v}
    if not said:  # rows written before verdicts had names: the boolean flag alone
        flags = [bool(v) for v in rows["passed"] if v is not None and not pd.isna(v)]
        said = {"passed" if f else "failed" for f in flags}
    if not said:
        return "no verdict recorded"
    if "failed" in said:
        return "FAILED"
    return "inconclusive" if "inconclusive" in said else "passed"


def collapse_at_operating_point(
    summary: pd.DataFrame, rule: OperatingPointRule = DEFAULT_RULE
) -> Verdict:
    """The report stage's own sanity check, on the finished sweep's operating point (never a
    fallback): its output is not degenerate, so its refusal changes are not collapse.

    Passed when its collapse rate is <= the rule's bound and its mean entropy is >= 0.2 x the
    unsteered mean entropy (on the rows the summary was computed from).
    """
    op = operating_point_row(summary)
    base = summary[summary["kind"] == BASELINE].iloc[0]
    collapse = float(op["collapse_rate"])
    ent, ent0 = float(op["mean_entropy"]), float(base["mean_entropy"])
    details = {"setting": setting_label(op), "collapse_rate": collapse,
               "mean_entropy": ent, "mean_entropy_baseline": ent0,
               "mean_tokens": float(op["mean_n_tokens"]),
               "mean_tokens_baseline": float(base["mean_n_tokens"])}  # fmt: skip
    if np.isnan(collapse) or np.isnan(ent) or np.isnan(ent0):
        return Verdict("collapse_at_operating_point", "inconclusive", collapse,
                       "no collapse or entropy values at the operating point", details)  # fmt: skip
    ok = collapse <= rule.max_collapse_rate and ent >= 0.2 * ent0
    return Verdict(
        "collapse_at_operating_point",
        "passed" if ok else "failed",
        collapse,
        f"{setting_label(op)}: collapse rate {collapse:.2f} (bound {rule.max_collapse_rate:g}), "
        f"mean entropy {ent:.2f} vs {ent0:.2f} unsteered (bound 0.2x)",
        details,
    )


def _reason(rows: pd.DataFrame) -> str:
    """The verdict's reason as the check recorded it (extra_json "reason"), else its extras."""
    import json

    extras = sorted(set(rows.loc[rows["prompt_id"] == "", "extra_json"].dropna()) - {"", "{}"})
    if len(extras) != 1:
        return ""
    try:
        data = json.loads(extras[0])
    except ValueError:
        data = None
    if isinstance(data, dict) and data.get("reason"):
        return str(data["reason"])
    cut = extras[0]
    return cut if len(cut) <= MAX_EXTRA_CHARS else cut[: MAX_EXTRA_CHARS - 3] + "..."


def _detail(rows: pd.DataFrame) -> str:
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
    reason = _reason(rows)
    if reason:
        parts.append(md.escape(reason))
    return "; ".join(parts) or "-"


TALLY = ("passed", "FAILED", "inconclusive", "no verdict recorded")


def sanity_table(
    rows: pd.DataFrame, analysis_checks: Sequence[Verdict] = ()
) -> tuple[str, list[str]]:
    """(one-line tally for the verdict list, markdown blocks for the sanity section).

    `rows` are the sanity rows the experiments recorded; `analysis_checks` are the checks the
    report stage itself ran (e.g. collapse at the finished sweep's operating point).
    """
    if rows.empty and not analysis_checks:
        return "none recorded in this run", ["No sanity rows (experiment `sanity:*`) in this run."]
    table_rows: list[list[str]] = []
    tally: dict[str, list[str]] = {k: [] for k in TALLY}
    for name, part in rows.groupby("experiment", sort=True):
        check = str(name)[len(SANITY_PREFIX) :]
        result = verdict(part)
        tally[result].append(check)
        values = part["value"].dropna()
        value = md.num(float(values.iloc[0]), 3) if len(values) == 1 else (
            f"mean {md.num(float(values.mean()), 3)} over {len(values)}" if len(values) else "-"
        )  # fmt: skip
        verdict_cell = f"**{result}**" if result != "passed" else result
        table_rows.append([md.escape(check), verdict_cell, value, _detail(part)])
    for v in analysis_checks:
        result = "FAILED" if v.verdict == "failed" else v.verdict
        tally[result].append(v.name)
        verdict_cell = f"**{result}**" if result != "passed" else result
        table_rows.append([f"{md.escape(v.name)} (report stage)", verdict_cell,
                           md.num(v.value, 3), md.escape(v.reason)])  # fmt: skip
    n = sum(len(v) for v in tally.values())
    line = f"{len(tally['passed'])} of {n} passed"
    for key, words in (("FAILED", "failed"), ("inconclusive", "inconclusive"),
                       ("no verdict recorded", "no verdict")):  # fmt: skip
        if tally[key]:
            line += f"; {words}: " + ", ".join(md.escape(c) for c in tally[key])
    table = md.table(["check", "verdict", "value", "detail"], table_rows)
    return line, [table]
