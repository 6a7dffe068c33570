"""findings.md: whether the research acceptance criteria hold on one run, from its numbers.

Wording rule: a difference is called clear only when the 95% interval of the difference itself
excludes 0 (paired over prompts for two settings on the same prompts; resampled per set for
different prompt sets); whether two intervals overlap never decides. Where several settings are
compared, the text says how many.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

import pandas as pd

from steering_reliability.analysis import markdown as md
from steering_reliability.analysis.data import BASELINE, SANITY_PREFIX, SPLITS, SWEEP, lookup
from steering_reliability.metrics.refusal import measurable_halves
from steering_reliability.metrics.stats import (
    BOOTSTRAP_SEED,
    N_RESAMPLES,
    Estimate,
    per_prompt,
)
from steering_reliability.records.run import session_code_versions
from steering_reliability.studies.sweep.report.aggregate import (
    DEFAULT_RULE,
    POINTS,
    OperatingPointRule,
    estimate,
    explain_choice,
    operating_point_row,
    paired,
    point_row,
    point_works,
    setting_key,
    setting_label,
    setting_rows,
)
from steering_reliability.studies.sweep.report.ladder import (
    Rung,
    focus,
    ladder_table,
    render_ladder,
    rungs,
)
from steering_reliability.studies.sweep.report.sanity import sanity_table
from steering_reliability.verdict import Verdict


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
        f"{BOOTSTRAP_SEED}; differences paired over prompts where both settings measured the "
        "same prompts), written `estimate [low, high]`",
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


def _paired_between(
    df: pd.DataFrame, a: pd.Series, b: pd.Series, column: str, split: str, *, comparisons: int = 1
) -> Estimate:
    """mean(column | a) - mean(column | b) on one split, paired over the prompts both measured."""

    def series(row: pd.Series) -> pd.Series:
        rows = setting_rows(df, row)
        rows = rows[rows["split"] == split]
        return per_prompt(rows[column], rows["prompt_id"])

    return paired(series(a), series(b), comparisons=comparisons)


def _on_report(summary: pd.DataFrame, chosen: pd.DataFrame) -> pd.DataFrame:
    """The rows of `summary` (report part) for the settings `chosen` picked on the select part,
    in `chosen`'s order: choices are made on select, their numbers read on report."""
    keys = {setting_key(r): i for i, r in summary.iterrows() if r["kind"] == SWEEP}
    return summary.loc[
        [keys[k] for k in (setting_key(r) for _, r in chosen.iterrows()) if k in keys]
    ]


def _differs(est: Estimate) -> bool:
    return est.excludes(0.0)


def _generalisation(
    summary: pd.DataFrame, select: pd.DataFrame, op: pd.Series, rule: OperatingPointRule
) -> tuple[str, list[str]]:
    """The transfer question (harm_train vs harm_test), answered at the in-distribution
    operating point when it works in distribution, else at the matched settings."""
    works, at = point_works(select, rule), focus(summary, select, rule)
    where = "in-distribution operating point" if works else "matched settings"
    lines: list[str] = []
    if at and not works:
        lines.append(
            f"No setting works in distribution within the benign budget (harm_train refusal >= "
            f"{rule.min_effect:g} on the select prompts with helpful drop <= "
            f"{rule.max_helpful_drop:g} and collapse <= {rule.max_collapse_rate:g}), so the "
            f"in-distribution operating point does not induce refusal and the transfer question "
            f"is answered at the {len(at)} matched settings instead: per layer and "
            f"intervention, the weakest alpha whose harm_train refusal on the select prompts "
            f"reaches {rule.min_effect:g}, whatever its benign cost (given beside it)."
        )
    elif not at:
        lines.append(
            f"No setting reaches harm_train refusal {rule.min_effect:g} on the select prompts: "
            "the direction does not induce refusal in distribution at any swept setting, so "
            "there is no effect whose transfer could be measured."
        )
        return "not measurable (no setting induces refusal in distribution)", lines
    clear_at = []
    for rung in at:
        r = rung.row
        train, test = estimate(r, "harm_train_refusal"), estimate(r, "harm_test_refusal")
        gap = estimate(r, "gap")
        clear = gap.value > 0 and _differs(gap)
        clear_at.append(clear)
        lines.append(
            f"At {md.escape(setting_label(r))} ({rung.roles[0]}) harm_train refusal is "
            f"{md.ci(train)} and harm_test refusal {md.ci(test)}: the gap is {md.ci(gap)}"
            + (", its interval excludes 0 (a clear generalisation failure)" if clear else
               ", its interval includes 0 (no gap shown)")
            + f"; benign false refusal {md.ci(estimate(r, 'benign_refusal'))}, helpful drop "
            f"{md.ci(estimate(r, 'helpful_drop'))}."
        )  # fmt: skip
    lines.append("Train and test are different prompts, so each is resampled on its own and "
                 "the difference taken per resample.")  # fmt: skip
    change = estimate(op, "harm_test_refusal_change")
    if change.value > 0 and _differs(change):
        effect = "clearly raises harm_test refusal (the paired interval of the change excludes 0)"
    elif change.value > 0:
        effect = "raises the point estimate, but the paired interval of the change includes 0"
    else:
        effect = "does not raise harm_test refusal"
    lines.append(f"Against the unsteered model on the same prompts the in-distribution operating "
                 f"point {effect}: change {md.ci(change)}.")  # fmt: skip
    sweep = summary[summary["kind"] == SWEEP]
    fine = sweep[sweep["collapse_rate"].fillna(0.0) <= rule.max_collapse_rate]
    sep = [r for _, r in fine.iterrows()
           if float(r["gap"]) > 0 and _differs(estimate(r, "gap"))]  # fmt: skip
    lines.append(f"Across the sweep, {len(sep)} of {len(fine)} non-collapsed settings have a gap "
                 f"whose 95% interval excludes 0 ({len(fine)} comparisons, unadjusted: about "
                 f"{0.05 * len(fine):.1f} could do so by chance alone if no setting had a "
                 "gap).")  # fmt: skip
    sel = select[(select["kind"] == SWEEP)
                 & (select["collapse_rate"].fillna(0.0) <= rule.max_collapse_rate)]  # fmt: skip
    if sep and not sel.empty:
        top = _on_report(summary, sel.loc[[sel["gap"].astype("float64").idxmax()]])
        if len(top):
            r = top.iloc[0]
            lines[-1] += (f" The setting with the largest gap on the select prompts, "
                          f"{setting_label(r)}, has {md.ci(estimate(r, 'gap'))} here.")  # fmt: skip
    if any(clear_at):
        if works:
            return "yes, at the in-distribution operating point", lines
        return (f"yes, at {sum(clear_at)} of {len(at)} matched settings (none works within the "
                "benign budget)"), lines  # fmt: skip
    if sep:
        return f"yes, away from the {where} ({len(sep)} settings), not at it", lines
    if not works:
        return (
            f"not shown at the {len(at)} matched settings (none works within the benign budget)",
            lines,
        )
    return "not shown", lines


def _side_effects(
    df: pd.DataFrame,
    summary: pd.DataFrame,
    select: pd.DataFrame,
    op: pd.Series,
    rule: OperatingPointRule,
) -> tuple[str, list[str]]:
    base = summary[summary["kind"] == BASELINE].iloc[0]
    fr, base_fr = estimate(op, "benign_refusal"), estimate(base, "benign_refusal")
    fr_change = estimate(op, "benign_refusal_change")
    drop = estimate(op, "helpful_drop")
    lines = [
        f"At the operating point the benign false-refusal rate is {md.ci(fr)} against "
        f"{md.ci(base_fr)} unsteered (paired change {md.ci(fr_change)}); the benign helpful rate "
        f"drops by {md.ci(drop)} (paired over prompts).",
        f"Mean KL to the unsteered next-token distribution on benign prompts: "
        f"{md.ci(estimate(op, 'mean_kl'))}; mean cross-entropy on the unsteered completions: "
        f"{md.ci(estimate(op, 'mean_ce'))}.",
    ]
    costly = (drop.value > 0 and _differs(drop)) or (fr_change.value > 0 and _differs(fr_change))
    if costly:
        lines.append("So steering has a measurable cost on benign prompts at the operating point.")
    else:
        lines.append("This run does not show a measurable benign cost at the operating point "
                     "(the paired intervals of the changes include 0).")  # fmt: skip
    # the frontier and its ends are picked on the select part, their numbers read on report
    chosen = select[(select["kind"] == SWEEP) & select["pareto"].astype(bool)]
    front = _on_report(summary, chosen.sort_values("harm_test_refusal", kind="stable"))
    along = False
    if len(front) >= 2:
        lo, hi = front.iloc[0], front.iloc[-1]
        d_ref = _paired_between(df, hi, lo, "is_refusal", "harm_test")
        d_help = _paired_between(df, lo, hi, "is_helpful", "benign")
        # A trade-off along the frontier: its ends differ clearly on both axes (paired).
        along = d_ref.value > 0 and _differs(d_ref) and d_help.value > 0 and _differs(d_help)
        lines.append(
            f"Along the Pareto frontier of the select prompts ({len(front)} settings), on the "
            f"report prompts harm_test refusal goes from "
            f"{md.ci(estimate(lo, 'harm_test_refusal'))} at a helpful-rate drop of "
            f"{md.ci(estimate(lo, 'helpful_drop'))} ({setting_label(lo)}) to "
            f"{md.ci(estimate(hi, 'harm_test_refusal'))} at a drop of "
            f"{md.ci(estimate(hi, 'helpful_drop'))} ({setting_label(hi)}); between the ends, "
            f"paired over prompts, harm_test refusal differs by {md.ci(d_ref)} and the benign "
            f"helpful rate by {md.ci(d_help)}."
        )
        lines.append(
            "Both differences exclude 0: more refusal on the shifted split costs benign "
            "helpfulness in this run."
            if along
            else "Not both differences exclude 0, so this run does not show a clear trade-off "
            "along the frontier."
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


def _layers(
    df: pd.DataFrame, summary: pd.DataFrame, select: pd.DataFrame, rule: OperatingPointRule
) -> list[str]:
    """Each layer's best setting and the best layer, chosen on the select part; their numbers
    and the paired comparisons on the report part."""
    sweep = select[select["kind"] == SWEEP]
    fine = sweep[sweep["collapse_rate"].fillna(0.0) <= rule.max_collapse_rate]
    within = fine[fine["helpful_drop"] <= rule.max_helpful_drop]
    pool, scope = (within, f"non-collapsed, helpful drop <= {rule.max_helpful_drop:g}") if (
        not within.empty
    ) else (fine, "non-collapsed")  # fmt: skip
    if pool.empty:
        return ["Every setting is collapsed; no layer comparison is possible."]
    best_rows = (pool.sort_values(["harm_test_refusal", "helpful_drop"], ascending=[False, True],
                                  kind="stable").groupby("layer", sort=True).head(1))  # fmt: skip
    top_key = setting_key(best_rows.sort_values(
        ["harm_test_refusal", "helpful_drop"], ascending=[False, True], kind="stable").iloc[0])  # fmt: skip
    best_rows = _on_report(summary, best_rows.sort_values("layer"))
    top = best_rows[[setting_key(r) == top_key for _, r in best_rows.iterrows()]].iloc[0]
    top_est = estimate(top, "harm_test_refusal")
    m = max(len(best_rows) - 1, 1)
    rows, tied = [], []
    for _, r in best_rows.iterrows():
        est = estimate(r, "harm_test_refusal")
        if r.name == top.name:
            note = "best"
        else:
            d = _paired_between(df, top, r, "is_refusal", "harm_test", comparisons=m)
            if _differs(d):
                note = f"lower by {md.ci(d)}"
            else:
                note = f"not separated ({md.ci(d)})"
                tied.append(str(int(r["layer"])))
        rows.append([str(int(r["layer"])), md.escape(setting_label(r)), md.ci(est),
                     md.ci(estimate(r, "helpful_drop")), md.ci(estimate(r, "gap")), note])  # fmt: skip
    text = [
        f"Best setting per layer ({scope}), by harm_test refusal, chosen on the select prompts; "
        f"the numbers are the report prompts'. Each layer's best is compared with the best "
        f"layer's by the paired difference on the same prompts, Bonferroni-adjusted for {m} "
        f"comparison(s):",
        md.table(["layer", "setting", "harm_test refusal", "helpful drop", "gap", "vs best"], rows),
        f"Layer {int(top['layer'])}, best on the select prompts, reaches harm_test refusal "
        f"{md.ci(top_est)} on the report prompts.",
    ]
    if tied:
        text[-1] += (f" Layer(s) {', '.join(tied)} are not separated from it by the paired "
                     "difference.")  # fmt: skip
    elif len(best_rows) > 1:
        text[-1] += " Every other layer is lower (the adjusted paired intervals exclude 0)."
    return text


def _mechanism(op: pd.Series) -> list[str]:
    """How the intervention moves the residual along v_hat at the operating point's site: e.g.
    why ablating a refusal direction can *raise* refusal (VALIDITY.md section 5)."""
    before = op.get("harm_test_proj_before", float("nan"))
    after = op.get("harm_test_proj_after", float("nan"))
    if before is None or after is None or pd.isna(before) or pd.isna(after):
        return ["No projections were recorded at the operating point."]
    kind, alpha = str(op["intervention"]), float(op["alpha"])
    change = estimate(op, "harm_test_refusal_change")
    lines = [
        f"At the operating point's site the unsteered residual's mean projection onto v̂ (which "
        f"points from the compliance-prefix mean to the refusal-prefix mean) is {before:.3g} on "
        f"harm_test prompts; steered, it is {after:.3g}, a move of {after - before:+.3g} "
        f"{'toward the refusal end' if after > before else 'toward the compliance end'} of v̂. "
        f"harm_test refusal changes by {md.ci(change)}."
    ]
    if kind == "ablate":
        lines.append(
            f"Ablation at alpha {alpha:g} scales the projection by {1 - alpha:g}, i.e. moves it "
            "toward 0, not toward compliance: "
            + ("from a negative baseline that *raises* it, toward refusal, which is how "
               "ablating the refusal direction can increase refusal." if before < 0 else
               "from a positive baseline that lowers it, toward compliance (the bypass use of "
               "ablation, measurable only where the model refuses to begin with).")
        )  # fmt: skip
    return lines


def _measurable(base: pd.Series) -> tuple[str, str]:
    """Which half of the refusal-direction question the model can show, from baseline rates."""
    harm = max(float(base["harm_train_refusal"]), float(base["harm_test_refusal"]))
    half = measurable_halves(harm)
    rates = (f"unsteered refusal {md.num(float(base['harm_train_refusal']))} (harm_train), "
             f"{md.num(float(base['harm_test_refusal']))} (harm_test), "
             f"{md.num(float(base['benign_refusal']))} (benign)")  # fmt: skip
    if half == "induce only":
        return half, (
            f"The unsteered model rarely refuses ({rates}). Refusal can be *induced* and its "
            "transfer measured; *bypass* (removing a refusal the model has, Arditi et al.'s "
            "headline) cannot be shown on this model, and no result here claims it."
        )
    if half == "induce and bypass":
        return half, (
            f"The unsteered model refuses most harmful prompts ({rates}): bypass (ablation "
            "lowering refusal) is measurable, and so is induced refusal on benign prompts."
        )
    return half, (
        f"The unsteered model refuses some harmful prompts ({rates}): both halves are measurable, "
        "with limited room in each."
    )


def render_findings(
    df: pd.DataFrame,
    summary: pd.DataFrame,
    info: Mapping[str, Any],
    rule: OperatingPointRule = DEFAULT_RULE,
    *,
    select_summary: pd.DataFrame | None = None,
    parts: bool = False,
    analysis_checks: Sequence[Verdict] = (),
    ladder: tuple[Sequence[Rung], pd.DataFrame] | None = None,
) -> str:
    """The whole findings.md text for one run.

    `df` and `summary` are the report part's; the operating point was chosen on
    `select_summary` (the select part's) and is flagged in `summary`.
    """
    op = operating_point_row(summary)
    shift = point_row(summary, "shift_tuned")
    select = select_summary if select_summary is not None else summary
    _, why = explain_choice(select, rule, target=POINTS["operating_point"])
    _, shift_why = explain_choice(select, rule, target=POINTS["shift_tuned"])
    works = point_works(select, rule)
    if ladder is None:
        steps = rungs(summary, select, rule)
        ladder = (steps, ladder_table(df, summary, steps))
    ladder_verdict, ladder_text = render_ladder(df, summary, select, rule, *ladder)
    base = summary[summary["kind"] == BASELINE].iloc[0]
    gen_verdict, gen = _generalisation(summary, select, op, rule)
    side_verdict, side = _side_effects(df, summary, select, op, rule)
    checks, check_lines = sanity_table(
        df[df["experiment"].str.startswith(SANITY_PREFIX)], analysis_checks
    )
    half, half_text = _measurable(base)
    holds = gen_verdict.startswith("yes") or side_verdict.startswith("yes")
    out = ["# Findings", "\n".join(_run_header(info, df, summary)), "## Verdict"]
    if parts:
        scope = ("Every number below is measured on the **report** prompts (half of each prompt "
                 "set, never used to build the direction); the operating point was chosen on "
                 "the **select** prompts (summary_select.csv).")  # fmt: skip
    else:
        scope = ("**This run has no select/report parts** (recorded before they existed): the "
                 "operating point was chosen on the same prompts its numbers are reported on, "
                 "so they overstate it (winner's curse).")  # fmt: skip
    out.append(scope)
    out.append("\n".join([
        f"- Measurable on this model: **{half}**",
        f"- In-distribution operating point (chosen on harm_train and benign only): "
        f"**{md.escape(setting_label(op))}**, "
        + ("**works in distribution**" if works else
           "**no setting works in distribution within the benign budget**"),
        f"- Generalisation failure (harm_train vs harm_test refusal): **{gen_verdict}**",
        f"- Synthetic shift vs real benchmarks: **{ladder_verdict}**",
        f"- Side-effect trade-off on benign prompts: **{side_verdict}**",
        f"- Sanity checks: {checks}",
        "- Research acceptance (a clear generalisation failure or side-effect trade-off): "
        + ("**holds on this run**" if holds else "**not shown clearly on this run**"),
    ]))  # fmt: skip
    base_rows = [[s, md.ci(estimate(base, f"{s}_refusal")), md.ci(estimate(base, f"{s}_helpful")),
                  str(int(base[f"n_{s}"]))] for s in SPLITS]  # fmt: skip
    out += ["## Baseline (unsteered)", half_text,
            md.table(["split", "refusal rate", "helpful rate", "prompts"], base_rows)]  # fmt: skip
    collapse = estimate(op, "collapse_rate")
    out += [
        "## Operating points",
        f"**In distribution (the headline): {md.escape(setting_label(op))}** (case "
        f"`{op['case_id']}`), chosen on the select prompts of harm_train and benign only, as a "
        f"practitioner without shifted prompts would: {why}. "
        + ("It works in distribution" if works else
           f"It does not work in distribution (harm_train refusal below {rule.min_effect:g} on "
           "the select prompts, or over the benign budget): no setting does")
        + f". On the report prompts its collapse rate "
        f"is {md.ci(collapse)} (bound {rule.max_collapse_rate:g}); mean length "
        f"{md.ci(estimate(op, 'mean_n_tokens'), 1)} tokens vs {md.num(base['mean_n_tokens'], 1)} "
        f"unsteered; mean entropy {md.ci(estimate(op, 'mean_entropy'))} vs "
        f"{md.num(base['mean_entropy'])}."
        + (" It is collapsed: its numbers may reflect degenerate text."
           if collapse.value > rule.max_collapse_rate else ""),
        f"**Tuned on the shift (the best case, when shifted prompts are there to tune on): "
        f"{md.escape(setting_label(shift))}** (case `{shift['case_id']}`), chosen on harm_test's "
        f"select prompts: {shift_why}. On the report prompts: harm_train refusal "
        f"{md.ci(estimate(shift, 'harm_train_refusal'))}, harm_test refusal "
        f"{md.ci(estimate(shift, 'harm_test_refusal'))}, helpful drop "
        f"{md.ci(estimate(shift, 'helpful_drop'))}. Choosing on the shifted distribution biases "
        "its gap toward \"it transfers\"; it is not the generalisation estimate.",
        "### Mechanism", " ".join(_mechanism(op)),
        "## 1. Generalisation", " ".join(gen),
        "### The shift ladder", "\n\n".join(ladder_text),
        "## 2. Side effects on benign prompts", " ".join(side),
        "## 3. Sanity checks", "\n\n".join(check_lines),
        "## 4. Layer comparison", "\n\n".join(_layers(df, summary, select, rule)),
    ]  # fmt: skip
    return "\n\n".join(out) + "\n"
