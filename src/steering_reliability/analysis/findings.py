"""findings.md: whether the research acceptance criteria hold on one run, from its numbers.

Wording rule: a difference is called clear only when the two 95% intervals do not overlap
(or, for a single difference, when its interval excludes 0); otherwise the text says the run
does not separate the values.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

import pandas as pd

from steering_reliability.analysis import markdown as md
from steering_reliability.analysis.aggregate import (
    DEFAULT_RULE,
    OperatingPointRule,
    estimate,
    explain_choice,
    setting_label,
)
from steering_reliability.analysis.data import BASELINE, SANITY_PREFIX, SPLITS, SWEEP, lookup
from steering_reliability.analysis.sanity import sanity_table
from steering_reliability.analysis.stats import BOOTSTRAP_SEED, N_RESAMPLES, Estimate
from steering_reliability.records.code import session_code_versions


def _config(info: Mapping[str, Any], dotted: str, fallback: str = "not recorded") -> str:
    """One run.json config value for prose (escaped), or the fallback."""
    value = lookup(info, dotted)
    if value is None:
        return fallback
    return md.escape(value if isinstance(value, str) else json.dumps(value))


def _run_header(info: Mapping[str, Any], df: pd.DataFrame, summary: pd.DataFrame) -> list[str]:
    sweep = summary[summary["kind"] == SWEEP]
    models = ", ".join(sorted(set(df["model"].dropna().astype(str)) - {""})) or "n/a"
    run_id = info.get("run_id") or ", ".join(sorted(set(df["run_id"].dropna()) - {""}))

    def values(column: str) -> str:
        items = sorted(set(sweep[column]))
        return ", ".join(v if isinstance(v, str) else f"{v:g}" for v in items)

    lines = [
        f"- run: `{run_id}`; model: {_config(info, 'model.name', md.escape(models))}; "
        f"alpha scale: {_config(info, 'direction.alpha_scale')}",
        f"- configured sweep: layers {_config(info, 'sweep.layers')}, alphas "
        f"{_config(info, 'sweep.alphas')}, interventions {_config(info, 'sweep.interventions')}",
        f"- in the results: {len(sweep)} steered settings (layers {values('layer')}; alphas "
        f"{values('alpha')}; interventions {values('intervention')})",
        f"- intervals: 95% percentile bootstrap over prompts ({N_RESAMPLES} resamples, seed "
        f"{BOOTSTRAP_SEED}), written `estimate [low, high]`",
    ]
    if not info:
        lines.append("- run.json was not found: the run settings come from the results alone")
    codes = session_code_versions(info)
    if len(codes) > 1:
        lines.append(
            f"- **mixed code**: the run's sessions ran {len(codes)} versions of the code "
            f"({', '.join(f'`{c}`' for c in codes)}); cases recorded before a change keep the "
            "earlier code's rows (run.json `sessions[].code`). Rerun with `--resume never` "
            "for results from one version."
        )
    elif codes:
        lines.append(f"- code fingerprint: `{codes[0]}` (every session)")
    return lines


def _overlap_words(a: Estimate, b: Estimate) -> str:
    return "the intervals overlap" if a.overlaps(b) else "the intervals do not overlap"


def _generalisation(
    summary: pd.DataFrame, op: pd.Series, rule: OperatingPointRule
) -> tuple[str, list[str]]:
    train, test = estimate(op, "harm_train_refusal"), estimate(op, "harm_test_refusal")
    gap = estimate(op, "gap")
    clear = train.value > test.value and not train.overlaps(test)
    lines = [
        f"At the operating point harm_train refusal is {md.ci(train)} and harm_test refusal is "
        f"{md.ci(test)} (gap {md.ci(gap)}); {_overlap_words(train, test)}."
    ]
    if clear:
        lines.append("This is a clear generalisation failure: the direction induces refusal "
                     "on the training distribution more than on the shifted one.")  # fmt: skip
    elif gap.lo > 0:
        lines.append("The gap's own interval excludes 0, but the per-split intervals overlap: "
                     "suggestive, not clear by the non-overlap criterion.")  # fmt: skip
    else:
        lines.append("This run does not show a clear generalisation gap at the operating point.")
    base = summary[summary["kind"] == BASELINE].iloc[0]
    base_test = estimate(base, "harm_test_refusal")
    if test.value > base_test.value and not test.overlaps(base_test):
        effect = "clearly raises harm_test refusal (the intervals do not overlap)"
    elif test.value > base_test.value:
        effect = (
            "gives a higher point estimate, but the intervals overlap, so this run does "
            "not show a clear rise on the shifted split"
        )
    else:
        effect = "does not raise the point estimate on the shifted split"
    lines.append(f"Against the unsteered harm_test refusal of {md.ci(base_test)}, the "
                 f"operating point {effect}.")  # fmt: skip
    sweep = summary[summary["kind"] == SWEEP]
    fine = sweep[sweep["collapse_rate"].fillna(0.0) <= rule.max_collapse_rate]
    sep = [r for _, r in fine.iterrows() if r["harm_train_refusal"] > r["harm_test_refusal"]
           and not estimate(r, "harm_train_refusal").overlaps(estimate(r, "harm_test_refusal"))]  # fmt: skip
    lines.append(f"Across the sweep, {len(sep)} of {len(fine)} non-collapsed settings show "
                 "harm_train refusal above harm_test with non-overlapping intervals.")  # fmt: skip
    if sep:
        top = max(sep, key=lambda r: float(r["gap"]))
        lines[-1] += f" The largest such gap is {md.ci(estimate(top, 'gap'))} at "
        lines[-1] += f"{setting_label(top)}."
    if clear:
        return "yes, at the operating point", lines
    if sep:
        return f"yes, away from the operating point ({len(sep)} settings), not at it", lines
    if gap.lo > 0:
        return "suggestive only (gap interval excludes 0, per-split intervals overlap)", lines
    return "not shown", lines


def _side_effects(
    summary: pd.DataFrame, op: pd.Series, rule: OperatingPointRule
) -> tuple[str, list[str]]:
    base = summary[summary["kind"] == BASELINE].iloc[0]
    fr, base_fr = estimate(op, "benign_refusal"), estimate(base, "benign_refusal")
    drop = estimate(op, "helpful_drop")
    lines = [
        f"At the operating point the benign false-refusal rate is {md.ci(fr)} against "
        f"{md.ci(base_fr)} unsteered ({_overlap_words(fr, base_fr)}); the benign helpful rate "
        f"drops by {md.ci(drop)} (paired over prompts).",
        f"Mean KL to the unsteered next-token distribution on benign prompts: "
        f"{md.ci(estimate(op, 'mean_kl'))}; mean cross-entropy on the unsteered completions: "
        f"{md.ci(estimate(op, 'mean_ce'))}.",
    ]
    more_refusal = fr.value > base_fr.value and not fr.overlaps(base_fr)
    costly = drop.lo > 0 or more_refusal
    if costly:
        lines.append("So steering has a measurable cost on benign prompts at the operating point.")
    else:
        lines.append("This run does not show a measurable benign cost at the operating point "
                     "(the intervals include no change).")  # fmt: skip
    sweep = summary[summary["kind"] == SWEEP]
    front = sweep[sweep["pareto"]].sort_values("harm_test_refusal")
    along = False
    if len(front) >= 2:
        lo, hi = front.iloc[0], front.iloc[-1]
        lo_ref, hi_ref = estimate(lo, "harm_test_refusal"), estimate(hi, "harm_test_refusal")
        lo_drop, hi_drop = estimate(lo, "helpful_drop"), estimate(hi, "helpful_drop")
        # A trade-off along the frontier: its ends differ clearly on both axes.
        along = not lo_ref.overlaps(hi_ref) and not lo_drop.overlaps(hi_drop) and hi_drop.lo > 0
        lines.append(
            f"Along the Pareto frontier ({len(front)} settings), harm_test refusal goes from "
            f"{md.ci(lo_ref)} at a helpful-rate drop of {md.ci(lo_drop)} ({setting_label(lo)}) "
            f"to {md.ci(hi_ref)} at a drop of {md.ci(hi_drop)} ({setting_label(hi)})."
        )
        lines.append(
            "Both ends differ with non-overlapping intervals on both axes: more refusal on the "
            "shifted split costs benign helpfulness in this run."
            if along
            else "The frontier's ends do not separate on both axes, so this run does not show "
            "a clear trade-off along it."
        )
        if float(hi["collapse_rate"]) > rule.max_collapse_rate:
            lines.append(f"The high-refusal end is collapsed (collapse rate "
                         f"{md.ci(estimate(hi, 'collapse_rate'))}): part of its refusal and "
                         "helpfulness loss may be degenerate text.")  # fmt: skip
    if costly:
        return "yes, at the operating point", lines
    if along:
        return "yes, along the Pareto frontier (not at the operating point)", lines
    return "not shown", lines


def _layers(summary: pd.DataFrame, rule: OperatingPointRule) -> list[str]:
    sweep = summary[summary["kind"] == SWEEP]
    fine = sweep[sweep["collapse_rate"].fillna(0.0) <= rule.max_collapse_rate]
    within = fine[fine["helpful_drop"] <= rule.max_helpful_drop]
    pool, scope = (within, f"non-collapsed, helpful drop <= {rule.max_helpful_drop:g}") if (
        not within.empty
    ) else (fine, "non-collapsed")  # fmt: skip
    if pool.empty:
        return ["Every setting is collapsed; no layer comparison is possible."]
    best_rows = (pool.sort_values(["harm_test_refusal", "helpful_drop"], ascending=[False, True],
                                  kind="stable").groupby("layer", sort=True).head(1))  # fmt: skip
    best_rows = best_rows.sort_values("layer")
    top = best_rows.sort_values(["harm_test_refusal", "helpful_drop"], ascending=[False, True],
                                kind="stable").iloc[0]  # fmt: skip
    top_est = estimate(top, "harm_test_refusal")
    rows, tied = [], []
    for _, r in best_rows.iterrows():
        est = estimate(r, "harm_test_refusal")
        if r.name == top.name:
            note = "best"
        elif est.overlaps(top_est):
            note = "overlaps the best"
            tied.append(str(int(r["layer"])))
        else:
            note = "lower (intervals do not overlap)"
        rows.append([str(int(r["layer"])), md.escape(setting_label(r)), md.ci(est),
                     md.ci(estimate(r, "helpful_drop")), md.ci(estimate(r, "gap")), note])  # fmt: skip
    text = [
        f"Best setting per layer ({scope}), by harm_test refusal:",
        md.table(["layer", "setting", "harm_test refusal", "helpful drop", "gap", "vs best"], rows),
        f"Layer {int(top['layer'])} reaches the highest harm_test refusal, {md.ci(top_est)}.",
    ]
    if tied:
        text[-1] += (f" Layer(s) {', '.join(tied)} overlap it, so this run does not separate "
                     "them from the best.")  # fmt: skip
    elif len(best_rows) > 1:
        text[-1] += " Every other layer is lower with non-overlapping intervals."
    return text


def render_findings(
    df: pd.DataFrame,
    summary: pd.DataFrame,
    info: Mapping[str, Any],
    rule: OperatingPointRule = DEFAULT_RULE,
) -> str:
    """The whole findings.md text for one run."""
    idx, why = explain_choice(summary, rule)
    op = summary.loc[idx]
    base = summary[summary["kind"] == BASELINE].iloc[0]
    gen_verdict, gen = _generalisation(summary, op, rule)
    side_verdict, side = _side_effects(summary, op, rule)
    checks, check_lines = sanity_table(df[df["experiment"].str.startswith(SANITY_PREFIX)], summary)
    holds = gen_verdict.startswith("yes") or side_verdict.startswith("yes")
    out = ["# Findings", "\n".join(_run_header(info, df, summary)), "## Verdict"]
    out.append("\n".join([
        f"- Generalisation failure (harm_train vs harm_test refusal): **{gen_verdict}**",
        f"- Side-effect trade-off on benign prompts: **{side_verdict}**",
        f"- Sanity checks: {checks}",
        "- Research acceptance (a clear generalisation failure or side-effect trade-off): "
        + ("**holds on this run**" if holds else "**not shown clearly on this run**"),
    ]))  # fmt: skip
    base_rows = [[s, md.ci(estimate(base, f"{s}_refusal")), md.ci(estimate(base, f"{s}_helpful")),
                  str(int(base[f"n_{s}"]))] for s in SPLITS]  # fmt: skip
    out += ["## Baseline (unsteered)",
            md.table(["split", "refusal rate", "helpful rate", "prompts"], base_rows)]  # fmt: skip
    collapse = estimate(op, "collapse_rate")
    out += [
        "## Operating point",
        f"**{md.escape(setting_label(op))}** (case `{op['case_id']}`): {why}. Its collapse rate "
        f"is {md.ci(collapse)} (bound {rule.max_collapse_rate:g}); mean length "
        f"{md.ci(estimate(op, 'mean_n_tokens'), 1)} tokens vs {md.num(base['mean_n_tokens'], 1)} "
        f"unsteered; mean entropy {md.ci(estimate(op, 'mean_entropy'))} vs "
        f"{md.num(base['mean_entropy'])}."
        + (" It is collapsed: no setting stays under the bound, so its numbers may reflect "
           "degenerate text." if collapse.value > rule.max_collapse_rate else ""),
        "## 1. Generalisation", " ".join(gen),
        "## 2. Side effects on benign prompts", " ".join(side),
        "## 3. Sanity checks", "\n\n".join(check_lines),
        "## 4. Layer comparison", "\n\n".join(_layers(summary, rule)),
    ]  # fmt: skip
    return "\n\n".join(out) + "\n"
