"""The report of the behaviours beside refusal (experiments/test_behaviours.py): per behaviour,
its rate vs alpha on each set, the trade-off with the benign control, a layer x alpha heatmap,
and a findings section.

Choices on the select part, numbers on the report part (VALIDITY.md section 1): the operating
point is the steered setting with the highest rate on the learn set's *select* prompts among
those whose control outputs collapse in at most MAX_COLLAPSE of cases; its rates, changes
against the unsteered model (paired by prompt) and costs are then read on *report* prompts,
each with a 95% bootstrap interval over prompts.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from steering_reliability import behaviours
from steering_reliability.analysis import markdown as md
from steering_reliability.analysis.plotting import figure
from steering_reliability.analysis.section import Section
from steering_reliability.metrics.stats import Estimate, diff_ci, mean_ci

PREFIX = "behaviour:"
MAX_COLLAPSE = 0.2  # an operating point whose control outputs collapse more often is not chosen
MEASURABLE = 0.05  # below this unsteered rate, lowering the behaviour cannot be shown


def has_rows(df: pd.DataFrame) -> bool:
    return bool(df["experiment"].astype(str).str.startswith(PREFIX).any())


def names(df: pd.DataFrame) -> list[str]:
    found = df.loc[df["experiment"].astype(str).str.startswith(PREFIX), "experiment"]
    return sorted({str(x)[len(PREFIX) :] for x in found})


def _rows(df: pd.DataFrame, name: str) -> pd.DataFrame:
    rows = df[df["experiment"] == PREFIX + name].copy()
    rows["behaviour_flag"] = rows["behaviour_flag"].astype("float64")
    for col in ("is_helpful", "collapsed"):
        rows[col] = rows[col].astype("float64")
    return rows


def _record(info: Mapping[str, Any], name: str) -> dict[str, Any]:
    """What run.json keeps of the behaviour (files, scorer, calibration, parts)."""
    found = (info.get("provenance") or {}).get(f"behaviour:{name}")
    return dict(found or {})


def _splits(rows: pd.DataFrame, info: Mapping[str, Any], name: str) -> list[str]:
    """The behaviour's sets in role order (learn, shifted, control): from run.json, else from
    the behaviour's registered definition."""
    order = list(_record(info, name).get("sets") or [])
    if not order:
        known = behaviours.registered().get(name)
        order = list(known.split_names) if known is not None else []
    found = list(dict.fromkeys(rows["split"]))
    return [s for s in order if s in found] + [s for s in found if s not in order]


def grid(rows: pd.DataFrame) -> pd.DataFrame:
    """Per (layer, alpha, split, part): n, rate, mean score, helpful, collapse, tokens, entropy,
    KL (the baseline is layer -1, alpha 0)."""
    g = rows.groupby(["layer", "alpha", "split", "part"], dropna=False)
    out = g.agg(
        n=("prompt_id", "size"),
        rate=("behaviour_flag", "mean"),
        score=("behaviour_score", "mean"),
        helpful=("is_helpful", "mean"),
        collapsed=("collapsed", "mean"),
        tokens=("n_tokens", "mean"),
        entropy=("mean_entropy", "mean"),
        kl=("kl_to_baseline", "mean"),
    )
    return out.reset_index()


def _flags(rows: pd.DataFrame, layer: int, alpha: float, split: str, part: str,
           col: str = "behaviour_flag") -> pd.Series:  # fmt: skip
    sel = rows[(rows["layer"] == layer) & (rows["alpha"] == alpha) & (rows["split"] == split)
               & (rows["part"] == part)]  # fmt: skip
    return sel.set_index("prompt_id")[col].astype("float64")


def operating_point(table: pd.DataFrame, learn: str, control: str) -> tuple[int, float] | None:
    """(layer, alpha) with the highest learn-set rate on select prompts among positive alphas
    whose control collapse on select prompts is <= MAX_COLLAPSE (ties: the smaller alpha)."""
    sel = table[(table["part"] == "select") & (table["alpha"] > 0)]
    learn_rates = sel[sel["split"] == learn].set_index(["layer", "alpha"])["rate"]
    collapse = sel[sel["split"] == control].set_index(["layer", "alpha"])["collapsed"]
    ok = [k for k in learn_rates.index if collapse.get(k, 1.0) <= MAX_COLLAPSE]
    if not ok:
        return None
    best = max(ok, key=lambda k: (learn_rates[k], -k[1], -k[0]))
    return int(best[0]), float(best[1])


# ---------------------------------------------------------------- figures


def figures(df: pd.DataFrame, info: Mapping[str, Any] | None = None) -> dict[str, Figure]:
    out: dict[str, Figure] = {}
    for name in names(df):
        rows = _rows(df, name)
        splits = _splits(rows, info or {}, name)
        table = grid(rows[rows["part"] == "report"])
        out[f"{name}_vs_alpha"] = _vs_alpha(table, splits, name)
        out[f"{name}_tradeoff"] = _tradeoff(table, splits, name)
        out[f"{name}_heatmap"] = _heatmap(table, splits, name)
    return out


def _base(table: pd.DataFrame, split: str, col: str = "rate") -> float:
    b = table[(table["alpha"] == 0) & (table["split"] == split)]
    return float(b[col].iloc[0]) if len(b) else math.nan


def _vs_alpha(table: pd.DataFrame, splits: list[str], name: str) -> Figure:
    fig = figure(4.0 * len(splits), 3.4)
    axes = fig.subplots(1, len(splits), sharey=True, squeeze=False)[0]
    layers = sorted(x for x in table["layer"].unique() if x >= 0)
    for ax, split in zip(axes, splits, strict=True):
        for layer in layers:
            t = table[(table["split"] == split) & (table["layer"] == layer)]
            base = table[(table["split"] == split) & (table["alpha"] == 0)]
            t = pd.concat([t, base]).sort_values("alpha")
            ax.plot(t["alpha"], t["rate"], marker="o", label=f"layer {layer}")
        ax.axvline(0, color="grey", lw=0.6, ls=":")
        ax.set_title(split)
        ax.set_xlabel("alpha (activation addition)")
        ax.set_ylim(-0.02, 1.02)
    axes[0].set_ylabel(f"{name} rate (report prompts)")
    axes[-1].legend(fontsize=7)
    fig.suptitle(f"{name}: rate vs alpha per set (alpha 0 = unsteered)")
    return fig


def _tradeoff(table: pd.DataFrame, splits: list[str], name: str) -> Figure:
    learn, control = splits[0], splits[-1]
    fig = figure(5.0, 4.0)
    ax = fig.subplots()
    for layer in sorted(table["layer"].unique()):
        t = table[table["layer"] == layer]
        x = t[t["split"] == control].set_index("alpha")["helpful"]
        y = t[t["split"] == learn].set_index("alpha")["rate"]
        both = x.index.intersection(y.index)
        label = "unsteered" if layer < 0 else f"layer {layer}"
        ax.scatter(x[both], y[both], label=label, marker="*" if layer < 0 else "o")
        for a in both:
            ax.annotate(f"{a:g}", (x[a], y[a]), fontsize=6, xytext=(2, 2),
                        textcoords="offset points")  # fmt: skip
    ax.set_xlabel(f"helpful on {control} (report)")
    ax.set_ylabel(f"{name} rate on {learn} (report)")
    ax.set_title(f"{name}: effect vs cost (labels: alpha)")
    ax.legend(fontsize=7)
    return fig


def _heatmap(table: pd.DataFrame, splits: list[str], name: str) -> Figure:
    shown = splits[:2]
    fig = figure(4.6 * len(shown), 3.4)
    axes = fig.subplots(1, len(shown), squeeze=False)[0]
    steered = table[table["layer"] >= 0]
    for ax, split in zip(axes, shown, strict=True):
        t = steered[steered["split"] == split].pivot(index="layer", columns="alpha", values="rate")
        im = ax.imshow(t.to_numpy(dtype="float64"), vmin=0, vmax=1, cmap="magma", aspect="auto")
        ax.set_xticks(range(len(t.columns)), [f"{a:g}" for a in t.columns])
        ax.set_yticks(range(len(t.index)), [str(i) for i in t.index])
        for (i, j), v in np.ndenumerate(t.to_numpy(dtype="float64")):
            if not math.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=7,
                        color="white" if v < 0.5 else "black")  # fmt: skip
        ax.set_xlabel("alpha")
        ax.set_ylabel("layer")
        ax.set_title(f"{split} (unsteered {md.num(_base(table, split))})")
        fig.colorbar(im, ax=ax, fraction=0.046)
    fig.suptitle(f"{name} rate, layer x alpha (report prompts)")
    return fig


# ---------------------------------------------------------------- findings


def _sanity_lines(df: pd.DataFrame, name: str) -> list[str]:
    """The behaviour's sanity verdicts (passed / failed / inconclusive, never merged)."""
    import json

    rows = df[df["experiment"].astype(str).str.startswith(f"sanity:{name}_")]
    if rows.empty:
        return ["**Sanity checks**: none ran in this run (`pytest experiments -m "
                f"\"{name} and sanity\"`).", ""]  # fmt: skip
    out = ["**Sanity checks**:"]
    for _, r in rows.sort_values("experiment").iterrows():
        reason = json.loads(r["extra_json"]).get("reason", "") if r["extra_json"] else ""
        check = str(r["experiment"])[len(f"sanity:{name}_") :]
        out.append(f"- {check}: **{r['verdict']}**: {md.escape(str(reason))}")
    return [*out, ""]


def section(df: pd.DataFrame, info: Mapping[str, Any] | None = None) -> str:
    return "\n".join(_section(df, name, info or {}) for name in names(df))


def _section(df: pd.DataFrame, name: str, info: Mapping[str, Any]) -> str:
    rows = _rows(df, name)
    record = _record(info, name)
    splits = _splits(rows, info, name)
    learn, control = splits[0], splits[-1]
    shifted = splits[1] if len(splits) > 2 else None
    lines = [f"## Behaviour: {name}", ""]
    if record.get("description"):
        lines += [f"{record['description']}. Direction recipe: {record.get('recipe', '?')}; "
                  f"scorer: {record.get('scorer', '?')}.", ""]  # fmt: skip
    cal = record.get("calibration")
    if cal:
        wrong = ", ".join(f"{k} {v[0]}/{v[1]}" for k, v in cal["by_category"].items()
                          if v[0] < v[1])  # fmt: skip
        lines += [f"**Scorer calibration** ({cal['scorer']}, threshold {cal['threshold']:g}): "
                  f"accuracy {cal['accuracy']:.2f} on {cal['n']} labelled sentences"
                  + (f"; misses by category: {wrong}" if wrong else "") + ".", ""]  # fmt: skip
    lines += _sanity_lines(df, name)
    full = grid(rows)
    report = full[full["part"] == "report"]
    # unsteered rates and what they allow (VALIDITY.md section 8)
    base = {s: _flags(rows, -1, 0.0, s, "report") for s in splits}
    if any(base[s].empty for s in splits):
        missing = [s for s in splits if base[s].empty]
        lines += [f"**No unsteered rows** on the report prompts of {', '.join(missing)}: the "
                  f"changes below cannot be computed (`pytest experiments -m {name}` records "
                  "them).", ""]  # fmt: skip
        return "\n".join(lines)
    rates = ", ".join(f"{md.ci(mean_ci(base[s]))} ({s})" for s in splits)
    lines += [f"**Unsteered {name} rate** (report prompts): {rates}."]
    if max(float(base[s].mean()) for s in splits[:-1]) < MEASURABLE:
        lines += [f"The unsteered model's {name} rate is below {MEASURABLE:g} on the learn and "
                  "shifted sets, so *lowering* it (negative alphas) cannot be "
                  "shown on this model: negative alphas are measured only as \"no increase\". "
                  "This section measures *induction* (positive alphas) and its transfer."]  # fmt: skip
    else:
        lines += [f"The unsteered model is {name}-flagged at {MEASURABLE:g} or more on the "
                  "learn or shifted set, so both halves are measurable: *inducing* it (positive "
                  "alphas) and *lowering* it (negative alphas), each against that rate."]  # fmt: skip
    lines.append("")
    # the grid on report prompts
    header = ["layer", "alpha", *[f"{s} rate" for s in splits], f"{control} helpful",
              f"{control} collapsed", f"{control} KL", f"{control} tokens"]  # fmt: skip
    body = []
    for (layer, alpha), t in report.groupby(["layer", "alpha"]):
        by = t.set_index("split")
        cells = [md.num(float(by.loc[s, "rate"])) if s in by.index else "-" for s in splits]
        c = by.loc[control] if control in by.index else None
        cost = ["-"] * 4 if c is None else [md.num(float(c["helpful"])), md.num(float(c["collapsed"])),
                                            md.num(float(c["kl"])), md.num(float(c["tokens"]), 1)]  # fmt: skip
        body.append(["unsteered" if layer < 0 else str(layer), f"{alpha:g}", *cells, *cost])
    lines += [f"Rates on report prompts, every setting ({name} flagged by the scorer; KL: mean "
              "per-token KL to the unsteered model on its own control completions):", "",
              md.table(header, body), ""]  # fmt: skip
    # the operating point: chosen on select, reported on report
    op = operating_point(full, learn, control)
    if op is None:
        lines += ["**No operating point**: every steered setting collapses the control outputs "
                  f"in more than {MAX_COLLAPSE:g} of the select prompts.", ""]  # fmt: skip
        return "\n".join(lines)
    layer, alpha = op
    lines += [f"**Operating point** (chosen on select prompts: the highest {learn} rate among "
              f"settings whose {control} outputs collapse in at most {MAX_COLLAPSE:g}): layer "
              f"{layer}, alpha {alpha:g}. On report prompts:", ""]  # fmt: skip
    change: dict[str, Estimate] = {}
    for s in splits:
        steered = _flags(rows, layer, alpha, s, "report")
        change[s] = diff_ci(steered, base[s].reindex(steered.index))
        lines.append(f"- {s}: rate {md.ci(mean_ci(steered))}, change from unsteered "
                     f"{md.ci(change[s])}")  # fmt: skip
    if shifted is not None:
        learned = change[learn]
        if learned.lo > 0:  # a ratio only of a change that is there
            ratio = change[shifted].value / learned.value
            lines.append(f"- transfer: the change on {shifted} is {md.num(ratio)} of the change "
                         f"on {learn}")  # fmt: skip
        else:
            lines.append(f"- transfer: not computed: the change on {learn} ({md.ci(learned)}) "
                         "is not distinguishable from 0 or is negative")  # fmt: skip
    help_s = _flags(rows, layer, alpha, control, "report", "is_helpful")
    help_b = _flags(rows, -1, 0.0, control, "report", "is_helpful").reindex(help_s.index)
    coll = _flags(rows, layer, alpha, control, "report", "collapsed")
    lines += [f"- cost on {control}: helpful {md.ci(mean_ci(help_s))} vs {md.num(float(help_b.mean()))} "
              f"unsteered (change {md.ci(diff_ci(help_s, help_b))}); collapsed "
              f"{md.ci(mean_ci(coll))}", ""]  # fmt: skip
    # negative alphas
    neg = sorted(a for a in report["alpha"].unique() if a < 0)
    for a in neg:
        s = _flags(rows, layer, a, learn, "report")
        if len(s):
            lines.append(f"- alpha {a:g} at layer {layer}: {learn} rate {md.ci(mean_ci(s))} "
                         f"(change {md.ci(diff_ci(s, base[learn].reindex(s.index)))})")  # fmt: skip
    if neg:
        lines.append("")
    lines += [f"Figures: `{name}_vs_alpha`, `{name}_tradeoff`, `{name}_heatmap`.", ""]
    return "\n".join(lines)


def report_section(df: pd.DataFrame, info: Mapping[str, Any], source: str) -> Section | None:
    """The behaviours' part of the report: the findings section and its figures."""
    if not has_rows(df):
        return None
    return Section(section(df, info), figures=figures(df, info))
