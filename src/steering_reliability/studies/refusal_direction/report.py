"""The refusal-direction pipeline's report: the Arditi-style table and the scan figure.

Rows: baseline (test_baseline's rows of the same report prompts), all-layer ablation, activation
addition (-v on harmful prompts, +v on harmless), and on a model organism all-layer ablation of
its base model's direction. Columns: refusal rate and first-token refusal
probability on the harmful splits, refusal and collapse rates on the harmless split, CE on the
baseline's own benign completions and on the general text, each mean with its 95% bootstrap
interval.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import pandas as pd

from steering_reliability.analysis import markdown as md
from steering_reliability.analysis.data import BASELINE
from steering_reliability.analysis.section import Section
from steering_reliability.metrics.refusal import measurable_halves
from steering_reliability.metrics.stats import Estimate, diff_ci, mean_ci

EXPERIMENT = "refusal_direction"
ORDER = ("baseline", "ablation", "actadd")
BASE = "ablation_base"  # refusal_direction.BASE_SETTING: run on model organisms only
LABEL = {BASE: "ablation, base model's direction"}
HARMFUL = ("harm_train", "harm_test")


def has_rows(df: pd.DataFrame) -> bool:
    return bool(df["experiment"].astype(str).str.startswith(EXPERIMENT).any())


def _prompt_rows(df: pd.DataFrame, setting: str, split: str) -> pd.DataFrame:
    """One setting's prompt rows of a split; the baseline's are restricted to the prompts the
    evaluation settings generated for (the same report prompts)."""
    if setting == "baseline":
        ids = set(df[(df["experiment"] == EXPERIMENT) & (df["split"] == split)]["prompt_id"])
        rows = df[(df["experiment"] == BASELINE) & (df["split"] == split)]
        return rows[rows["prompt_id"].isin(ids)]
    return df[
        (df["experiment"] == EXPERIMENT)
        & (df["case_id"] == f"rd-{setting}")
        & (df["split"] == split)
    ]


def _by_prompt(rows: pd.DataFrame, column: str) -> pd.Series:
    return rows.set_index("prompt_id")[column].astype("float64")


def harmful_splits(df: pd.DataFrame) -> tuple[str, ...]:
    """HARMFUL, then every benchmark split this pipeline evaluated (prompts.benchmarks), by name."""
    evaluated = set(df.loc[df["experiment"] == EXPERIMENT, "split"].dropna().astype(str))
    return (*HARMFUL, *sorted(evaluated - {*HARMFUL, "benign", ""}))


def settings(df: pd.DataFrame) -> tuple[str, ...]:
    """The table's rows: ORDER, and BASE where the run has it."""
    return ORDER + ((BASE,) if (df["case_id"] == f"rd-{BASE}").any() else ())


def table(df: pd.DataFrame) -> dict[str, dict[str, Estimate]]:
    """setting -> column -> Estimate (NaN estimates where a setting was not run)."""
    out: dict[str, dict[str, Estimate]] = {}
    ce_text = df[df["experiment"] == f"{EXPERIMENT}:ce_text"].set_index("case_id")["value"]
    for setting in settings(df):
        cols: dict[str, Estimate] = {}
        for split in harmful_splits(df):
            rows = _prompt_rows(df, setting, split)
            cols[f"{split} refusal"] = mean_ci(_by_prompt(rows, "is_refusal"))
            cols[f"{split} first-token p"] = mean_ci(_by_prompt(rows, "first_token_refusal_prob"))
        benign = _prompt_rows(df, setting, "benign")
        cols["benign refusal"] = mean_ci(_by_prompt(benign, "is_refusal"))
        cols["benign collapsed"] = mean_ci(_by_prompt(benign, "collapsed"))
        if setting == "baseline":
            benign = df[df["experiment"] == f"{EXPERIMENT}:ce_baseline"]
        ce = _by_prompt(benign, "ce_on_baseline")
        cols["CE benign completions"] = mean_ci(ce)
        v = float(ce_text.get(f"rd-{setting}", float("nan")))
        cols["CE general text"] = Estimate(v, float("nan"), float("nan"), 1)
        out[setting] = cols
    return out


def _cell(e: Estimate) -> str:
    return md.num(e.value, 3) if math.isnan(e.lo) and not math.isnan(e.value) else md.ci(e)


def section(df: pd.DataFrame) -> str:
    """The findings section: what was selected, the table, and which half is measurable."""
    sel = df[df["experiment"] == f"{EXPERIMENT}:select"]
    lines = ["## The refusal direction (Arditi et al. 2024 pipeline)", ""]
    if not sel.empty:
        meta = json.loads(sel.iloc[0]["extra_json"])
        lines += [_selected(meta), "", *_frontier(meta)]
    t = table(df)
    cols = list(t["baseline"])
    lines += ["Measured on *report* prompts (95% bootstrap intervals over prompts; CE on the general "
              "text is one number over all its tokens):", "",
              md.table(["setting", *cols], [[LABEL.get(name, name), *(_cell(t[name][c]) for c in cols)]
                                            for name in t])]  # fmt: skip
    lines += ["", _measurable(df), "", *_by_style(df), *_two_directions(df), _checks(df), ""]
    return "\n".join(lines)


def _selected(meta: dict[str, Any]) -> str:
    """What was selected and on what terms, or why nothing was."""
    if "reason" in meta:
        return f"No direction was selected: {meta['reason']}"
    s, th = meta.get("scores", {}), meta.get("thresholds", {})

    def num(key: str) -> str:
        return f"{s.get(key, float('nan')):.3f}"

    if "ablation_kl" in s:  # a run whose selection bounded the ablation's KL
        bound = (f"induce refusal and whose all-layer ablation moves the harmless next-token "
                 f"distributions by KL <= {th.get('kl_max')}. Its scores: induce {num('induce_score')} "
                 f"(benign baseline {num('baseline_refusal_prob_benign')}), KL under ablation "
                 f"{num('ablation_kl')}, under +v {num('addition_kl')}")  # fmt: skip
    else:  # a run from before the ablation-KL bound: its KL was the addition's
        bound = (f"induce refusal and whose *addition* moves the harmless next-token distributions "
                 f"by KL <= {th.get('kl_max')} (this run predates the bound on the ablation's KL). "
                 f"Its scores: induce {num('induce_score')} (benign baseline "
                 f"{num('baseline_refusal_prob_benign')}), KL under +v {num('kl')}")  # fmt: skip
    return (f"Selected on *select* prompts (these scores are select-part numbers): layer "
            f"{meta.get('layer')}, position {meta.get('position')} (post-instruction token, "
            f"counted from the end), ranked by {meta.get('criterion')} among candidates in the "
            f"first {th.get('max_layer_frac', float('nan')):.0%} of layers that {bound}, harmful "
            f"select prompts refusing at baseline: {s.get('n_refusing_baseline')}.")  # fmt: skip


def _frontier(meta: dict[str, Any]) -> list[str]:
    """What selection would take under looser ablation-KL bounds (select-part scores): the
    price of the bound, or of a direction that bypasses more."""
    rows = meta.get("frontier") or []
    if len(rows) < 2:
        return []
    score = f"{meta.get('criterion')}_score"

    def cell(r: dict[str, Any]) -> list[str]:
        if r.get("candidate") is None:
            return ["none passes", "", ""]
        return [f"layer {r['layer']}, position {r['position']}", md.num(r[score], 3),
                md.num(r["ablation_kl"], 3)]  # fmt: skip

    configured = meta.get("thresholds", {}).get("kl_max")

    def bound(r: dict[str, Any]) -> str:
        if r["kl_max"] is None:
            return "no bound"
        return f"<= {r['kl_max']:g}" + (" (configured)" if r["kl_max"] == configured else "")

    ran = ("no setting ran, as nothing passes the configured bound" if "reason" in meta
           else "the report prompts ran only on the configured bound's candidate")  # fmt: skip
    body = [[bound(r), *cell(r)] for r in rows]
    return [f"What a looser bound on the ablation KL would select (same cut-off, induce filter "
            f"and ranking; select-part scores; {ran}):", "",
            md.table(["ablation KL bound", "candidate", score.replace("_", " "), "its ablation KL"],
                     body), ""]  # fmt: skip


def _harm_refusal(df: pd.DataFrame) -> float:
    """The baseline's refusal rate on the harmful report prompts evaluated here (the higher split)."""
    rates = [_prompt_rows(df, "baseline", s)["is_refusal"].astype(float).mean() for s in HARMFUL]
    return max((float(r) for r in rates if not math.isnan(r)), default=math.nan)


def _by_style(df: pd.DataFrame) -> list[str]:
    """Bypass per prompt style, where bypass is measurable: refusal at baseline and under each
    ablation on harm_train (the style the direction was chosen on) and on every shifted style of
    harm_test, with paired differences whose intervals are adjusted for the number of rows."""
    if measurable_halves(_harm_refusal(df)) == "induce only":
        return []
    ablations = [s for s in ("ablation", BASE) if not _prompt_rows(df, s, "harm_train").empty]
    if not ablations:
        return []
    groups: list[tuple[str, str, str | None]] = [("harm_train (direct)", "harm_train", None)]
    styles = sorted(set(_prompt_rows(df, "baseline", "harm_test")["style"].dropna()))
    groups += [(f"harm_test {style}", "harm_test", style) for style in styles]
    groups += [(f"{b} (benchmark)", b, None) for b in harmful_splits(df)[len(HARMFUL) :]]
    k = len(groups)
    header = ["prompts", "n", "baseline refusal"]
    for s in ablations:
        header += [f"{LABEL.get(s, s)} refusal", "change (paired)"]
    rows = []
    for name, split, style in groups:
        base = _style_refusal(df, "baseline", split, style)
        row = [name, str(len(base)), md.ci(mean_ci(base, comparisons=k))]
        for s in ablations:
            steered = _style_refusal(df, s, split, style)
            row += [
                md.ci(mean_ci(steered, comparisons=k)),
                md.ci(diff_ci(steered, base, comparisons=k)),
            ]
        rows.append(row)
    return [
        f"Bypass by prompt style (report prompts; intervals adjusted for {k} comparisons; a "
        "negative change is refusal removed):",
        "",
        md.table(header, rows),
        "",
    ]


def _style_refusal(df: pd.DataFrame, setting: str, split: str, style: str | None) -> pd.Series:
    rows = _prompt_rows(df, setting, split)
    return _by_prompt(rows if style is None else rows[rows["style"] == style], "is_refusal")


def _two_directions(df: pd.DataFrame) -> list[str]:
    """On a model organism: the base model's direction (which induces refusal in the base) vs
    the organism's own (which mediates its learned refusal): cosine, and what ablating each does."""
    rows = df[df["experiment"] == f"{EXPERIMENT}:base_direction"]
    if rows.empty:
        return []
    r = rows.iloc[0]
    extra = json.loads(r["extra_json"])
    base = _by_prompt(_prompt_rows(df, "baseline", "harm_train"), "is_refusal")
    said = []
    for s, who in (
        ("ablation", "the organism's own direction"),
        (BASE, "the base model's direction"),
    ):
        d = diff_ci(_by_prompt(_prompt_rows(df, s, "harm_train"), "is_refusal"), base)
        said.append(f"ablating {who} changes harm_train refusal by {md.ci(d)}")
    layer, frozen = int(r["layer"]), int(extra.get("frozen_below", 0))
    same = layer < frozen or (layer == frozen and r.get("hook_point") == "resid_pre")
    return [
        f"Two directions on this organism, at layer {layer}, position {int(float(r['position']))}: "
        f"the one selected on the organism (norm {extra['norm']:.1f}) and {extra['base_model']}'s "
        f"difference in means from the same prompts (norm {extra['base_norm']:.1f}). Cosine "
        f"{float(r['value']):.3f}; {'; '.join(said)} (paired, from the baseline's "
        f"{md.num(float(base.mean()))}).",
        *(
            [
                f"The fine-tune left the embeddings and blocks 0-{frozen - 1} untouched (recipe "
                f"`train_from_layer` {frozen}), so the two models' residual streams are the same "
                f"up to block {frozen}'s input"
                + (
                    ": at this site the two directions are the same by construction, and the "
                    "comparison says that the learned refusal reads a feature the base computes."
                    if same
                    else "; this site is above it, so the organism's direction is its own."
                )
            ]
            if frozen
            else []
        ),
        "",
    ]


def _measurable(df: pd.DataFrame) -> str:
    """What each setting did to refusal, from paired differences with the baseline on the same
    report prompts, and which half of the question the model can show."""
    return " ".join([
        _change(df, "actadd", "benign", "Induction: +v on harmless prompts"),
        _change(df, "ablation", "benign", "All-layer ablation on harmless prompts"),
        _bypass(df),
    ])  # fmt: skip


def _change(df: pd.DataFrame, setting: str, split: str, what: str) -> str:
    rows = _prompt_rows(df, setting, split)
    if rows.empty:
        return f"{what}: not run."
    d = diff_ci(
        _by_prompt(rows, "is_refusal"),
        _by_prompt(_prompt_rows(df, "baseline", split), "is_refusal"),
    )
    said = (
        "no change detected"
        if not d.excludes(0.0)
        else ("raises" if d.value > 0 else "lowers") + " it"
    )
    return (
        f"{what}: refusal rate change {d.value:+.2f} [{d.lo:+.2f}, {d.hi:+.2f}] (paired), {said}."
    )


def _bypass(df: pd.DataFrame) -> str:
    """Bypass, where the report's one measurability rule (`findings.measurable_halves`, on the
    baseline's harmful report prompts evaluated here) says the model refuses enough to show it."""
    harm = _harm_refusal(df)
    if measurable_halves(harm) == "induce only":
        return (f"Bypass is not measurable on this model: it refuses {md.num(harm)} of the harmful "
                "report prompts at baseline, so ablation has little refusal to remove.")  # fmt: skip
    return _change(df, "ablation", "harm_train", "Bypass: all-layer ablation on harm_train")


def _checks(df: pd.DataFrame) -> str:
    rows = df[df["experiment"] == "sanity:orthogonalized_equals_ablation"]
    if rows.empty:
        return ""
    r = rows.iloc[0]
    reason = (
        json.loads(r["extra_json"]).get("reason", "")
        if isinstance(r.get("extra_json"), str)
        else ""
    )
    return f"Weight orthogonalisation vs hook ablation: **{r['verdict']}**, {reason}."


def scan_figure(df: pd.DataFrame) -> Any:
    """Induce score and the KL on harmless prompts under all-layer ablation (the one selection
    bounds) and under +v, against layer, one line per post-instruction position."""
    import matplotlib.pyplot as plt

    scan = df[df["experiment"] == f"{EXPERIMENT}:scan"].copy()
    scan["ablation_kl"] = [
        json.loads(x).get("ablation_kl", math.nan) if isinstance(x, str) else math.nan
        for x in scan["extra_json"]
    ]
    fig, (a, b, c) = plt.subplots(1, 3, figsize=(14, 3.6))
    for pos, rows in scan.groupby("position"):
        rows = rows.sort_values("layer")
        a.plot(rows["layer"], rows["value"], marker=".", label=f"pos {pos}")
        if rows["ablation_kl"].notna().any():  # a run from before the bound has none
            b.plot(rows["layer"], rows["ablation_kl"], marker=".", label=f"pos {pos}")
        c.plot(rows["layer"], rows["kl_to_baseline"], marker=".", label=f"pos {pos}")
    a.set(xlabel="layer", ylabel="first-token refusal p under +v (harmless)", title="induce")
    b.set(xlabel="layer", ylabel="KL on harmless prompts", yscale="log",
          title="KL under all-layer ablation (bounded)")  # fmt: skip
    c.set(xlabel="layer", ylabel="KL on harmless prompts", title="KL under +v", yscale="log")
    a.legend(fontsize=7)
    fig.suptitle("refusal-direction candidates, select prompts")
    fig.tight_layout()
    return fig


def report_section(df: pd.DataFrame, info: Mapping[str, Any], source: str) -> Section | None:
    """This study's part of the report: the findings section and the scan figure."""
    if not has_rows(df):
        return None
    return Section(section(df), figures={"refusal_direction_scan": scan_figure(df)})
