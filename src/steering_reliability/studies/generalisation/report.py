"""The generalisation map's report: transfer matrix, geometry, steerability, equal-KL layers.

Reads the rows of experiments/test_generalisation.py. Every rate is on *report* prompts with a
95% bootstrap interval over prompts; alphas were calibrated on benign *select* prompts.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from steering_reliability.analysis import markdown as md
from steering_reliability.analysis.plotting import figure
from steering_reliability.analysis.section import Section
from steering_reliability.metrics.refusal import measurable_halves
from steering_reliability.metrics.stats import diff_ci, mean_ci

EXPERIMENT = "generalisation"
NONE, POOLED = "none", "pooled"  # generalisation.NONE / POOLED


def has_rows(df: pd.DataFrame) -> bool:
    return bool(df["experiment"].astype(str).str.startswith(EXPERIMENT).any())


def _rows(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    return df[df["experiment"] == f"{EXPERIMENT}:{kind}"]


def _extra(rows: pd.DataFrame) -> list[dict[str, Any]]:
    return [json.loads(x) for x in rows["extra_json"]]


def _refusal(rows: pd.DataFrame) -> pd.Series:
    return rows.set_index("prompt_id")["is_refusal"].astype("float64")


# ---------------------------------------------------------------- transfer


def _transfer(df: pd.DataFrame) -> pd.DataFrame:
    return _rows(df, "transfer")


def sources(df: pd.DataFrame) -> list[str]:
    """Transfer sources in the order none, pooled, families (those that ran)."""
    found = list(dict.fromkeys(_transfer(df)["direction_variant"]))
    first = [s for s in (NONE, POOLED) if s in found]
    return first + sorted(s for s in found if s not in first)


def targets(df: pd.DataFrame) -> list[tuple[str, str]]:
    """(split, family) columns: harm_train families (the direction's style), harm_test families
    (shifted styles; some held out), then benign as one column (family "")."""
    t = _transfer(df)
    cols = []
    for split in ("harm_train", "harm_test"):
        fams = sorted(set(t[t["split"] == split]["family"].dropna()))
        cols += [(split, f) for f in fams]
    if (t["split"] == "benign").any():
        cols.append(("benign", ""))
    return cols


def transfer_matrix(df: pd.DataFrame) -> pd.DataFrame:
    """Refusal rate per source (rows) and target (split, family) column."""
    t = _transfer(df)
    out = {}
    for split, fam in targets(df):
        cell = t[(t["split"] == split) & ((t["family"] == fam) if fam else True)]
        out[(split, fam)] = cell.groupby("direction_variant")["is_refusal"].mean()
    return pd.DataFrame(out).reindex(sources(df))


def _train_families(df: pd.DataFrame) -> list[str]:
    return [s for s in sources(df) if s not in (NONE, POOLED)]


def in_vs_out(df: pd.DataFrame, split: str, comparisons: int = 2) -> tuple[Any, Any, Any, int]:
    """Per target prompt of `split` whose family has its own source direction: refusal under its
    own family's direction (in-family), the mean under the other families' (out-of-family), and
    the paired difference; with the number of prompts."""
    t = _transfer(df)
    t = t[t["split"] == split]
    fams = _train_families(df)
    own, other = {}, {}
    for pid, rows in t[t["family"].isin(fams)].groupby("prompt_id"):
        by = rows.set_index("direction_variant")["is_refusal"].astype(float)
        fam = rows["family"].iloc[0]
        if fam in by.index and len(by.reindex(fams).dropna()) == len(fams):
            own[pid] = by[fam]
            other[pid] = by.reindex([f for f in fams if f != fam]).mean()
    a, b = pd.Series(own, dtype=float), pd.Series(other, dtype=float)
    k = comparisons  # one per harmful split
    return (
        mean_ci(a, comparisons=k),
        mean_ci(b, comparisons=k),
        diff_ci(a, b, comparisons=k),
        len(a),
    )


def _transfer_lines(df: pd.DataFrame) -> list[str]:
    t = _transfer(df)
    if t.empty:
        return []
    steered = t[t["direction_variant"] != NONE]
    layer = int(steered["layer"].iloc[0]) if not steered.empty else -1
    kind = steered["intervention"].iloc[0] if not steered.empty else "n/a"
    method = steered["direction_method"].iloc[0] if not steered.empty else "n/a"
    cal = _rows(df, "calibration")
    cal = cal[cal["case_id"].str.startswith("transfer-")]
    alpha = float(steered["alpha"].iloc[0]) if not steered.empty else math.nan
    strength = f"alpha {alpha:g} for every source, each at the sweep direction's norm"
    if not cal.empty:
        budget = _extra(cal)[0]["budget"]
        alphas = ", ".join(f"{r['direction_variant']} {r['alpha']:.3g}" for _, r in cal.iterrows())
        strength = f"equal cost: the alpha whose benign next-token KL is {budget:g} nats ({alphas})"
    m = transfer_matrix(df)
    held_out = set(t[t["split"] == "harm_test"]["family"]) - set(
        t[t["split"] == "harm_train"]["family"]
    )
    header = ["source \\ target"] + [
        ("benign" if s == "benign" else f"{'train' if s == 'harm_train' else 'test'}: {f}"
         + (" (held out)" if s == "harm_test" and f in held_out else ""))
        for s, f in m.columns
    ]  # fmt: skip
    n = t[t["direction_variant"] == (sources(df) or [NONE])[0]].groupby(["split", "family"]).size()
    rows = [[src] + [md.num(v) for v in m.loc[src]] for src in m.index]
    rows.append(["n prompts"] + [str(int(n.get((s, f), 0))) if f else
                                 str(int(n.xs(s, level=0).sum()) if s in n.index.get_level_values(0) else 0)
                                 for s, f in m.columns])  # fmt: skip
    lines = [
        "### Cross-family transfer",
        "",
        f"Each family's direction ({method}, from its harm_train *select* prompts) at layer "
        f"{layer}, {kind}, at {strength}. Refusal rates on the "
        "*report* prompts of each target family (train: harm_train's direct style; test: "
        "harm_test's shifted styles; benign: false refusals). Row `none` is unsteered at the "
        "same length. Cells are rates over a handful of prompts each: read rows and columns, "
        "not single cells.",
        "",
        md.table(header, rows),
        "",
    ]
    said = []
    for split, what in (("harm_train", "same style"), ("harm_test", "shifted style")):
        own, other, d, k = in_vs_out(df, split)
        if k:
            verdict = (
                "no difference detected"
                if not d.excludes(0.0)
                else ("in-family higher" if d.value > 0 else "out-of-family higher")
            )
            said.append(f"{what} ({split}, {k} prompts): in-family {md.ci(own)}, out-of-family "
                        f"{md.ci(other)}, paired difference {md.ci(d)}, {verdict}")  # fmt: skip
    if said:
        lines += [
            "Does a direction from family A move family B as much as A? Per prompt, refusal "
            "under its own family's direction vs the mean under the other families' (intervals "
            "adjusted for the 2 splits): " + "; ".join(said) + ".",
            "",
        ]
    lines += _by_source(df) + _least(df, m)
    return lines


def _by_source(df: pd.DataFrame) -> list[str]:
    """Each source over all harmful report prompts: refusal, and its paired change from
    unsteered; and its benign false refusals. How much a direction moves refusal at equal cost
    depends on which family it came from (rows), more than on which family it is applied to."""
    t = _transfer(df)
    harm = t[t["split"] != "benign"]
    base = _refusal(harm[harm["direction_variant"] == NONE])
    k = max(len(sources(df)) - 1, 1)
    rows = []
    for src in sources(df):
        if src == NONE:
            continue
        mine = _refusal(harm[harm["direction_variant"] == src])
        benign = _refusal(t[(t["split"] == "benign") & (t["direction_variant"] == src)])
        change = diff_ci(mine, base, comparisons=k) if set(mine.index) == set(base.index) else None
        rows.append([src, md.ci(mean_ci(mine, comparisons=k)),
                     md.ci(change) if change is not None else "n/a",
                     md.ci(mean_ci(benign, comparisons=k))])  # fmt: skip
    if not rows:
        return []
    return [
        f"Per source, over every harmful report prompt (intervals adjusted for {k} sources; the "
        f"unsteered rate is {md.num(float(base.mean()))}):",
        "",
        md.table(["source", "harmful refusal", "change (paired)", "benign false refusal"], rows),
        "",
    ]


def _least(df: pd.DataFrame, m: pd.DataFrame) -> list[str]:
    """The target families the family directions move least (mean over the other families'
    directions, minus the unsteered rate), among harmful targets."""
    fams = _train_families(df)
    if NONE not in m.index or not fams:
        return []
    gains = {}
    for split, fam in m.columns:
        if split == "benign":
            continue
        others = [f for f in fams if f != fam]
        gains[(split, fam)] = float(m.loc[others, (split, fam)].mean() - m.loc[NONE, (split, fam)])
    order = sorted(gains, key=lambda c: gains[c])
    text = ", ".join(f"{f} ({s}) {gains[(s, f)]:+.2f}" for s, f in order[:3])
    return [
        "Families moved least by the other families' directions (refusal over unsteered, "
        f"point estimates): {text}.",
        "",
    ]


# ---------------------------------------------------------------- geometry


def _geometry_lines(df: pd.DataFrame) -> list[str]:
    geo, fam = _rows(df, "geometry"), _rows(df, "family")
    if geo.empty:
        return []
    lines = ["### Geometry of the family directions", ""]
    shares = []
    for (method, layer), rows in geo.groupby(["direction_method", "layer"]):
        e = json.loads(rows.iloc[0]["extra_json"])
        c = np.asarray(e["cosines"])
        off = c[~np.eye(len(c), dtype=bool)]
        shares.append([method, str(layer), str(len(c)), md.num(e["axis_shares"][0], 3),
                       md.num(float(off.mean()), 3), md.num(float(off.min()), 3),
                       md.num(e["consistency_all"], 3)])  # fmt: skip
    lines += [
        "How much of refusal is one direction? The share of the unit family directions' "
        "summed squared length on their first principal axis (uncentred PCA: 1 = one direction "
        "up to sign, 1/k for k orthogonal ones), with their pairwise cosines:",
        "",
        md.table(["method", "layer", "families", "first-axis share", "mean cosine", "min cosine",
                  "consistency (all prompts)"], shares),
        "",
    ]  # fmt: skip
    layer = int(fam["layer"].mode().iloc[0]) if not fam.empty else -1
    pick = fam[fam["layer"] == _gen_layer(df, layer)]
    rows = []
    for _, r in pick.iterrows():
        e = json.loads(r["extra_json"])
        rows.append([e["method"], e["family"], str(e["n_prompts"]), md.num(e["norm"], 1),
                     md.num(e["split_half_cosine"], 3),
                     f"{md.num(e['bootstrap_cosine'], 3)} [{md.num(e['bootstrap_cosine_lo'], 3)}, "
                     f"{md.num(e['bootstrap_cosine_hi'], 3)}]",
                     md.num(e["consistency"], 3), md.num(e["cosine_to_pooled"], 3)])  # fmt: skip
    if rows:
        lines += [
            f"Per-family directions at layer {_gen_layer(df, layer)} (from harm_train *select* "
            "prompts; bootstrap: cosine of resampled-prompt directions to the family's, median "
            "and 95% interval; consistency: mean pairwise cosine of the family's per-prompt "
            "differences):",
            "",
            md.table(["method", "family", "n", "norm", "split-half cosine", "bootstrap cosine",
                      "consistency", "cosine to pooled"], rows),
            "",
        ]  # fmt: skip
    ang = _rows(df, "angles")
    if not ang.empty:
        arows = []
        for _, r in ang.iterrows():
            e = json.loads(r["extra_json"])
            arows.append([r["direction_variant"], str(r["layer"]),
                          " / ".join(str(n) for n in e.get("axes", [])),
                          ", ".join(f"{a:.0f}" for a in e["angles_deg"]), md.num(r["value"], 1)])  # fmt: skip
        share = json.loads(ang.iloc[0]["extra_json"]).get("share", 1.0)
        lines += [
            "Principal angles (degrees, smallest first) between the family subspaces of two "
            f"conditions, each the fewest principal axes holding {share:.0%} of its family "
            "directions (`axes`); `random-vs-random` shows what unrelated subspaces give:",
            "",
            md.table(["subspaces", "layer", "axes", "angles", "mean"], arows),
            "",
        ]
    return lines


def _gen_layer(df: pd.DataFrame, fallback: int) -> int:
    """The transfer and steerability layer, from their rows."""
    s = _rows(df, "steerability")
    return int(s["layer"].iloc[0]) if not s.empty else fallback


# ---------------------------------------------------------------- steerability


def _slopes(df: pd.DataFrame) -> pd.DataFrame:
    return _rows(df, "steerability")


def steerability_table(df: pd.DataFrame) -> list[list[str]]:
    """Per split, and per family within it: mean slope and anti-steerable fraction, with CIs."""
    s = _slopes(df)
    out = []
    for split, rows in s.groupby("split", sort=False):
        groups = [("all", rows)]
        if split != "benign":  # harm families; benign topics hold a prompt or two each
            groups += [(f, r) for f, r in rows.groupby("family")]
        for fam, r in groups:
            v = r.set_index("prompt_id")["value"].astype(float)
            out.append([split, fam, str(len(v)), md.ci(mean_ci(v), 2),
                        md.ci(mean_ci((v < 0).astype(float)), 2)])  # fmt: skip
    return out


def consistency_vs_steerability(df: pd.DataFrame) -> list[str]:
    """Braun et al. 2025: does a family's consistency (mean pairwise cosine of its training
    differences) predict its steerability? Spearman rank correlation across the families with
    both, at the steerability layer, per method."""
    s, fam = _slopes(df), _rows(df, "family")
    if s.empty or fam.empty:
        return []
    slope = s[s["split"] == "harm_train"].groupby("family")["value"].mean()
    layer = _gen_layer(df, -1)
    said = []
    for method, rows in fam[fam["layer"] == layer].groupby("direction_method"):
        cons = pd.Series(
            {json.loads(x)["family"]: json.loads(x)["consistency"] for x in rows["extra_json"]}
        )
        both = pd.concat([cons, slope], axis=1, join="inner").dropna()
        if len(both) >= 3:
            ranks = both.rank()  # Spearman: Pearson's r of the ranks (pandas' own needs scipy)
            rho = ranks.iloc[:, 0].corr(ranks.iloc[:, 1])
            said.append(f"{method}: Spearman rho {rho:+.2f} over {len(both)} families")
    if not said:
        return []
    return ["Does consistency predict steerability (Braun et al. 2025)? Family consistency vs "
            "the family's mean slope on harm_train report prompts: " + "; ".join(said)
            + ". With this few families only a rank correlation near +-1 means much.", ""]  # fmt: skip


def _steer_lines(df: pd.DataFrame) -> list[str]:
    s = _slopes(df)
    if s.empty:
        return []
    alphas = json.loads(s.iloc[0]["extra_json"])["alphas"]
    return [
        "### Per-prompt steerability",
        "",
        f"Slope of first-token refusal log-odds against alpha ({', '.join(f'{a:g}' for a in alphas)}; "
        f"addition of the pooled direction at layer {int(s['layer'].iloc[0])}), per *report* "
        "prompt (Tan et al. 2024). Anti-steerable: slope < 0, the direction pushes that prompt "
        "away from refusal.",
        "",
        md.table(["split", "family", "n", "mean slope", "anti-steerable fraction"],
                 steerability_table(df)),
        "",
        *consistency_vs_steerability(df),
    ]  # fmt: skip


# ---------------------------------------------------------------- equal KL


def _equal_kl_lines(df: pd.DataFrame) -> list[str]:
    cal = _rows(df, "calibration")
    cal = cal[~cal["case_id"].str.startswith("transfer-")]
    if cal.empty:
        return []
    ek, none = _rows(df, "equal_kl"), _transfer(df)
    none = none[none["direction_variant"] == NONE]
    rows = []
    cal = cal.assign(budget=[json.loads(x)["budget"] for x in cal["extra_json"]])
    for _, c in cal.sort_values(["layer", "intervention", "budget"]).iterrows():
        e = json.loads(c["extra_json"])
        cells = [f"layer {c['layer']}", c["intervention"], f"{e['budget']:g}"]
        if e["status"] != "found":
            rows.append(cells + [f"out of reach (max {e['cost']:.2f})", "", ""])
            continue
        mine = ek[(ek["case_id"] == f"{c['case_id']}-{c['direction_variant']}")]
        cells.append(f"{e['alpha']:.3g}")
        for split in ("harm_train", "harm_test"):
            steered = _refusal(mine[mine["split"] == split])
            base = _refusal(none[none["split"] == split])
            cell = md.ci(mean_ci(steered))
            if not base.empty and set(base.index) == set(steered.index):
                cell += f" (change {md.ci(diff_ci(steered, base))})"
            cells.append(cell)
        rows.append(cells)
    return [
        "### Layers at equal cost",
        "",
        "Each layer and intervention at the alpha whose mean next-token KL on benign *select* "
        "prompts equals each budget (bisection on the rising part of the KL curve), refusal on "
        "*report* prompts, and its paired change from the unsteered rate at the same length:",
        "",
        md.table(["layer", "intervention", "KL budget", "alpha", "harm_train refusal",
                  "harm_test refusal"], rows),
        "",
    ]  # fmt: skip


def _measurable(df: pd.DataFrame) -> list[str]:
    """Which half of the question the model can show here (`findings.measurable_halves`, on the
    unsteered transfer rows' harmful report prompts), and so what a transfer cell measures."""
    t = _transfer(df)
    none = t[(t["direction_variant"] == NONE) & (t["split"] != "benign")]
    if none.empty:
        return []
    rates = none.groupby("split")["is_refusal"].mean()
    half = measurable_halves(float(rates.max()))
    kind = t[t["direction_variant"] != NONE]["intervention"]
    what = (
        "bypass (refusal removed)"
        if (not kind.empty and kind.iloc[0] == "ablate")
        else "induced refusal"
    )
    return [f"Measurable on this model: **{half}** (unsteered refusal on the harmful report "
            f"prompts {md.num(float(rates.max()))} at its highest split); the transfer cells "
            f"measure {what}.", ""]  # fmt: skip


def section(df: pd.DataFrame) -> str:
    """The findings section of the generalisation map."""
    lines = ["## What generalises: families, transfer, geometry, steerability", ""]
    lines += (
        _measurable(df)
        + _transfer_lines(df)
        + _geometry_lines(df)
        + _steer_lines(df)
        + _equal_kl_lines(df)
    )
    return "\n".join(lines)


# ---------------------------------------------------------------- figures


def transferfigure(df: pd.DataFrame) -> Figure:
    """Source x target refusal heatmap; train and test blocks split by a line."""
    m = transfer_matrix(df)
    fig = figure(1.2 + 0.55 * len(m.columns), 1.2 + 0.42 * len(m.index))
    ax = fig.add_subplot()
    im = ax.imshow(m.to_numpy(dtype=float), vmin=0, vmax=1, cmap="magma", aspect="auto")
    ax.set_yticks(range(len(m.index)), list(m.index))
    ax.set_xticks(range(len(m.columns)),
                  [("benign" if s == "benign" else f"{'tr' if s == 'harm_train' else 'te'}:{f}")
                   for s, f in m.columns], rotation=60, ha="right")  # fmt: skip
    n_train = sum(1 for s, _ in m.columns if s == "harm_train")
    ax.axvline(n_train - 0.5, color="white", linewidth=2)
    for i in range(m.shape[0]):
        for j in range(m.shape[1]):
            v = m.iat[i, j]
            if not math.isnan(v):
                ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=6,
                        color="black" if v > 0.6 else "white")  # fmt: skip
    fig.colorbar(im, ax=ax, label="refusal rate (report prompts)")
    ax.set_title("cross-family transfer: source direction (rows) x target family (columns)")
    return fig


def geometryfigure(df: pd.DataFrame) -> Figure:
    """Cosine matrices of the family directions at the steerability layer, one per method, and
    the first-axis share per layer."""
    geo = _rows(df, "geometry")
    layer = _gen_layer(df, int(geo["layer"].iloc[0]))
    at = geo[geo["layer"] == layer]
    fig = figure(4.2 * (len(at) + 1), 4.0)
    axes = fig.subplots(1, len(at) + 1)
    for ax, (_, r) in zip(axes, at.iterrows(), strict=False):
        e = json.loads(r["extra_json"])
        im = ax.imshow(np.asarray(e["cosines"]), vmin=-1, vmax=1, cmap="RdBu_r")
        ax.set_xticks(range(len(e["families"])), e["families"], rotation=60, ha="right")
        ax.set_yticks(range(len(e["families"])), e["families"])
        ax.set_title(f"{e['method']}, layer {layer}: cosines")
    fig.colorbar(im, ax=axes[: len(at)], shrink=0.8)
    ax = axes[-1]
    for method, rows in geo.groupby("direction_method"):
        rows = rows.sort_values("layer")
        ax.plot(rows["layer"], rows["value"], marker="o", label=method)
    ax.set(xlabel="layer", ylabel="first-axis share", ylim=(0, 1.05),
           title="how much is one direction")  # fmt: skip
    ax.legend(fontsize=7)
    return fig


def anglesfigure(df: pd.DataFrame) -> Figure:
    """Principal angles per pair of subspaces, smallest first."""
    ang = _rows(df, "angles")
    fig = figure(6.5, 3.8)
    ax = fig.add_subplot()
    for _, r in ang.iterrows():
        a = json.loads(r["extra_json"])["angles_deg"]
        style = ":" if r["direction_variant"] == "random-vs-random" else "-"
        ax.plot(range(1, len(a) + 1), a, marker="o", linestyle=style, label=r["direction_variant"])
    ax.set(xlabel="principal angle index", ylabel="degrees", ylim=(0, 92),
           title="principal angles between family subspaces")  # fmt: skip
    ax.legend(fontsize=6)
    return fig


def steerabilityfigure(df: pd.DataFrame) -> Figure:
    """Distribution of per-prompt slopes per split (anti-steerable left of 0)."""
    s = _slopes(df)
    fig = figure(6.5, 3.6)
    ax = fig.add_subplot()
    splits = list(dict.fromkeys(s["split"]))
    data = [s[s["split"] == sp]["value"].astype(float).to_numpy() for sp in splits]
    ax.violinplot(data, orientation="horizontal", showmedians=True)
    ax.set_yticks(range(1, len(splits) + 1), splits)
    ax.axvline(0.0, color="0.4", linestyle=":")
    ax.set(xlabel="slope of first-token refusal log-odds per unit alpha",
           title="per-prompt steerability (report prompts)")  # fmt: skip
    return fig


def equal_klfigure(df: pd.DataFrame) -> Figure:
    """Refusal rate against layer at each KL budget: one panel per intervention, one colour per
    budget, solid harm_train and dashed harm_test; dotted: unsteered (same length)."""
    ek, t = _rows(df, "equal_kl"), _transfer(df)
    kinds = sorted(set(ek["intervention"]))
    fig = figure(4.2 * len(kinds), 3.8)
    axes = np.atleast_1d(fig.subplots(1, len(kinds), sharey=True))
    budgets = sorted(set(ek["direction_variant"]), key=lambda v: float(v.removeprefix("kl")))
    colors = dict(
        zip(budgets, ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple"), strict=False)
    )
    for ax, kind in zip(axes, kinds, strict=True):
        for (variant, split), rows in ek[ek["intervention"] == kind].groupby(
            ["direction_variant", "split"]
        ):
            rates = rows.groupby("layer")["is_refusal"].mean()
            ax.plot(rates.index, rates.to_numpy(), marker="o", color=colors.get(variant),
                    linestyle="-" if split == "harm_train" else "--",
                    label=f"KL {variant.removeprefix('kl')}, {split}")  # fmt: skip
        for split in ("harm_train", "harm_test"):
            none = t[(t["direction_variant"] == NONE) & (t["split"] == split)]
            if not none.empty:
                ax.axhline(
                    float(none["is_refusal"].mean()), color="0.5", linestyle=":", linewidth=1
                )
        ax.set(xlabel="layer", title=f"{kind} at equal benign KL", ylim=(-0.02, 1.02))
    axes[0].set_ylabel("refusal rate (report prompts)")
    axes[-1].legend(fontsize=6)
    return fig


def figures(df: pd.DataFrame) -> dict[str, Figure]:
    """The map's figures that have rows in this run."""
    out: dict[str, Figure] = {}
    if not _transfer(df).empty:
        out["generalisation_transfer"] = transferfigure(df)
    if not _rows(df, "geometry").empty:
        out["generalisation_geometry"] = geometryfigure(df)
    if not _rows(df, "angles").empty:
        out["generalisation_angles"] = anglesfigure(df)
    if not _slopes(df).empty:
        out["generalisation_steerability"] = steerabilityfigure(df)
    if not _rows(df, "equal_kl").empty:
        out["generalisation_equal_kl"] = equal_klfigure(df)
    return out


def report_section(df: pd.DataFrame, info: Mapping[str, Any], source: str) -> Section | None:
    """This study's part of the report: the findings section and its figures."""
    if not has_rows(df):
        return None
    return Section(section(df), figures=figures(df))
