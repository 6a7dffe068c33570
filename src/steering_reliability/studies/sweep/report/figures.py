"""Report figures: pure `DataFrame -> Figure` functions (no I/O, no pyplot global state).

Figures are built on `matplotlib.figure.Figure` with their own Agg canvas (headless, and the
global backend is left alone for notebooks), so nothing is registered with pyplot and nothing
needs closing; the caller (report.py) saves them.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.image import AxesImage
from matplotlib.lines import Line2D
from matplotlib.ticker import NullLocator

from steering_reliability.analysis.data import BASELINE, SWEEP
from steering_reliability.analysis.plotting import figure
from steering_reliability.studies.sweep.report.aggregate import (
    DEFAULT_RULE,
    setting_key,
    setting_label,
    setting_rows,
)

_MARKERS = ("o", "s", "^", "D", "v", "P")
_BASE_COLOR, _BASE_WIDTH = "0.45", 1.2  # the unsteered baseline's dotted line
Color = tuple[float, float, float, float]


def _split(summary: pd.DataFrame) -> tuple[pd.Series, pd.DataFrame]:
    base = summary[summary["kind"] == BASELINE]
    return base.iloc[0], summary[summary["kind"] == SWEEP]


def _baseline_line(ax: Axes, y: float) -> None:
    ax.axhline(y, color=_BASE_COLOR, linestyle=":", linewidth=_BASE_WIDTH)


def _baseline_handle(label: str) -> Line2D:
    return Line2D([], [], color=_BASE_COLOR, linestyle=":", linewidth=_BASE_WIDTH,
                  label=label)  # fmt: skip


def _layer_colors(layers: Sequence[int]) -> dict[int, Color]:
    cmap = colormaps["viridis"]
    n = max(len(layers) - 1, 1)
    return {layer: cmap(0.85 * i / n) for i, layer in enumerate(sorted(layers))}


def _alpha_ticks(ax: Axes, alphas: Sequence[float]) -> None:
    """Ticks at the swept alphas; a log2 axis when the grid is geometric-ish (0.5, 1, 2, 4)."""
    alphas = sorted(alphas)
    if alphas and alphas[0] > 0 and alphas[-1] / alphas[0] >= 4:
        ax.set_xscale("log", base=2)
        ax.xaxis.set_minor_locator(NullLocator())
    if len(alphas) <= 10:
        ax.set_xticks(alphas, [f"{a:g}" for a in alphas])


def gapfigure(summary: pd.DataFrame) -> Figure:
    """Generalisation gap (harm_train - harm_test refusal) vs alpha: one panel per layer,
    one row per intervention; hollow markers are collapsed settings."""
    base, sweep = _split(summary)
    interventions = sorted(set(sweep["intervention"]))
    layers = sorted(set(sweep["layer"]))
    colors = _layer_colors(layers)
    fig = figure(max(6.0, 2.5 * len(layers) + 0.8), 2.6 * len(interventions) + 0.9)
    axes = fig.subplots(len(interventions), len(layers), sharex=True, sharey=True, squeeze=False)
    for row_axes, intervention in zip(axes, interventions, strict=True):
        for ax, layer in zip(row_axes, layers, strict=True):
            rows = sweep[(sweep["intervention"] == intervention) & (sweep["layer"] == layer)]
            rows = rows.sort_values("alpha")
            color = colors[int(layer)]
            ax.fill_between(rows["alpha"], rows["gap_lo"], rows["gap_hi"], color=color, alpha=0.2)
            ax.plot(rows["alpha"], rows["gap"], color=color, label="gap (95% CI band)")
            collapsed = rows["collapse_rate"].fillna(0.0) > DEFAULT_RULE.max_collapse_rate
            faces = ["white" if c else color for c in collapsed]
            ax.scatter(rows["alpha"], rows["gap"], s=22, zorder=3, facecolors=faces,
                       edgecolors=[color])  # fmt: skip
            ax.axhline(0.0, color="black", linewidth=0.8)
            _baseline_line(ax, float(base["gap"]))
            ax.set_title(f"layer {layer}, {intervention}", fontsize=9)
            ax.grid(alpha=0.3)
            _alpha_ticks(ax, sorted(set(sweep["alpha"])))
            ax.tick_params(labelsize=7)
        row_axes[0].set_ylabel("harm_train - harm_test\nrefusal rate", fontsize=8)
    for ax in axes[-1]:
        ax.set_xlabel("alpha", fontsize=8)
    handles = [
        Line2D([], [], color="0.3", marker="o", label="gap, 95% bootstrap CI band"),
        Line2D([], [], color="0.3", marker="o", markerfacecolor="white", linestyle="",
               label=f"collapsed (> {DEFAULT_RULE.max_collapse_rate:.0%} of outputs)"),
        _baseline_handle("baseline (unsteered) gap"),
    ]  # fmt: skip
    fig.legend(handles=handles, loc="outside lower center", ncol=3, fontsize=8)
    fig.suptitle("Generalisation gap vs alpha: refusal on harm_train minus refusal on harm_test "
                 "(report prompts)")  # fmt: skip
    return fig


def tradeofffigure(summary: pd.DataFrame) -> Figure:
    """Benign helpfulness drop vs harm_test refusal for every setting, Pareto frontier marked."""
    base, sweep = _split(summary)
    colors = _layer_colors(sorted(set(sweep["layer"])))
    interventions = sorted(set(sweep["intervention"]))
    markers = {iv: _MARKERS[i % len(_MARKERS)] for i, iv in enumerate(interventions)}
    collapsed = sweep["collapse_rate"].fillna(0.0) > DEFAULT_RULE.max_collapse_rate
    fig = figure(10.0, 5.5)
    ax = fig.subplots()
    # Error bars on the frontier and the operating point only: on every point they hide the data.
    shown = sweep[sweep["pareto"] | sweep["operating_point"]]
    x, y = shown["harm_test_refusal"], shown["helpful_drop"]
    ax.errorbar(
        x, y, xerr=[x - shown["harm_test_refusal_lo"], shown["harm_test_refusal_hi"] - x],
        yerr=[y - shown["helpful_drop_lo"], shown["helpful_drop_hi"] - y],
        fmt="none", ecolor="0.55", elinewidth=0.9, capsize=2, zorder=1,
    )  # fmt: skip
    for (_, row), is_collapsed in zip(sweep.iterrows(), collapsed, strict=True):
        color = colors[int(row["layer"])]
        ax.scatter(
            row["harm_test_refusal"], row["helpful_drop"], s=55, zorder=3,
            marker=markers[row["intervention"]], edgecolors=color,
            facecolors="none" if is_collapsed else [color], linewidths=1.5,
        )  # fmt: skip
    front = sweep[sweep["pareto"]].sort_values(["harm_test_refusal", "helpful_drop"])
    ax.plot(front["harm_test_refusal"], front["helpful_drop"], color="black", zorder=2,
            linewidth=1.2)  # fmt: skip
    ax.scatter(front["harm_test_refusal"], front["helpful_drop"], s=150, zorder=2,
               facecolors="none", edgecolors="black", linewidths=1.0)  # fmt: skip
    ax.scatter([base["harm_test_refusal"]], [0.0], marker="X", s=90, color="black", zorder=4)
    op = sweep[sweep["operating_point"]]
    ax.scatter(op["harm_test_refusal"], op["helpful_drop"], marker="*", s=320, zorder=5,
               facecolors="none", edgecolors="red", linewidths=1.8)  # fmt: skip
    handles = [Line2D([], [], color=c, marker="o", linestyle="", label=f"layer {layer}")
               for layer, c in colors.items()]  # fmt: skip
    handles += [Line2D([], [], color="0.3", marker=m, linestyle="", label=iv)
                for iv, m in markers.items()]  # fmt: skip
    handles += [
        Line2D([], [], color="0.3", marker="o", markerfacecolor="none", linestyle="",
               label=f"collapsed (> {DEFAULT_RULE.max_collapse_rate:.0%} of outputs)"),
        Line2D([], [], color="black", marker="o", markersize=11, markerfacecolor="none",
               label="Pareto frontier"),
        Line2D([], [], color="black", marker="X", linestyle="", label="baseline (unsteered)"),
    ]  # fmt: skip
    if not op.empty:
        handles.append(Line2D([], [], color="red", marker="*", markersize=14, linestyle="",
                              markerfacecolor="none", label="operating point: "
                              + setting_label(op.iloc[0])))  # fmt: skip
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.02, 1.0), fontsize=8)
    ax.set_xlabel("harm_test refusal rate (higher = steering transfers)")
    ax.set_ylabel("benign helpful-rate drop vs baseline (lower = cheaper)")
    ax.set_xlim(-0.03, 1.03)
    ax.grid(alpha=0.3)
    ax.set_title(
        "Refusal on shifted prompts vs cost on benign prompts\n"
        "(report prompts; bars: 95% bootstrap CI, on frontier and operating point)",
        fontsize=11,
    )
    return fig


def _heatmap(ax: Axes, table: pd.DataFrame, title: str, cmap: str) -> AxesImage:
    values = table.to_numpy(dtype="float64")
    image = ax.imshow(values, cmap=cmap, vmin=0.0, vmax=1.0, aspect="auto", origin="lower")
    for (i, j), v in np.ndenumerate(values):
        if not np.isnan(v):
            ax.text(j, i, f"{v:.2f}", ha="center", va="center", fontsize=8,
                    color="white" if v < 0.55 else "black")  # fmt: skip
    ax.set_xticks(range(len(table.columns)), [f"{a:g}" for a in table.columns])
    ax.set_yticks(range(len(table.index)), [str(layer) for layer in table.index])
    ax.set_xlabel("alpha")
    ax.set_ylabel("layer")
    ax.set_title(title, fontsize=10)
    return image


def heatmapfigure(summary: pd.DataFrame) -> Figure:
    """Layer x alpha heatmaps of harm_test refusal and benign helpful rate, per intervention."""
    base, sweep = _split(summary)
    interventions = sorted(set(sweep["intervention"]))
    n_layers, n_alphas = sweep["layer"].nunique(), sweep["alpha"].nunique()
    size = (max(8.0, 1.1 * n_alphas * 2 + 2.5), max(3.2, 0.42 * n_layers + 1.6))
    fig = figure(size[0], size[1] * len(interventions))
    axes = fig.subplots(len(interventions), 2, squeeze=False)
    metrics = (("harm_test_refusal", "harm_test refusal rate", "viridis"),
               ("benign_helpful", "benign helpful rate", "cividis"))  # fmt: skip
    for row_axes, intervention in zip(axes, interventions, strict=True):
        part = sweep[sweep["intervention"] == intervention]
        for ax, (column, name, cmap) in zip(row_axes, metrics, strict=True):
            table = part.pivot_table(index="layer", columns="alpha", values=column, aggfunc="mean")
            image = _heatmap(ax, table, f"{name}: {intervention}", cmap)
            fig.colorbar(image, ax=ax, label=name)
    fig.suptitle(
        f"Layer x alpha, report prompts (baseline: harm_test refusal "
        f"{base['harm_test_refusal']:.2f}, benign helpful {base['benign_helpful']:.2f})"
    )
    return fig


def confoundfigure(summary: pd.DataFrame) -> Figure:
    """Completion length, entropy and collapse rate vs alpha (all splits), one row per
    intervention: is induced 'refusal' just broken or shortened text?"""
    base, sweep = _split(summary)
    colors = _layer_colors(sorted(set(sweep["layer"])))
    interventions = sorted(set(sweep["intervention"]))
    panels = (("mean_n_tokens", "mean length (tokens)"),
              ("mean_entropy", "mean token entropy (nats)"),
              ("collapse_rate", "collapsed completions (share)"))  # fmt: skip
    fig = figure(14.0, 3.3 * len(interventions) + 0.6)
    axes = fig.subplots(len(interventions), len(panels), sharex=True, squeeze=False)
    for row_axes, intervention in zip(axes, interventions, strict=True):
        part = sweep[sweep["intervention"] == intervention]
        for ax, (column, label) in zip(row_axes, panels, strict=True):
            for layer, rows in part.groupby("layer", sort=True):
                rows = rows.sort_values("alpha")
                color = colors[int(layer)]
                ax.plot(rows["alpha"], rows[column], marker="o", markersize=3.5, color=color)
                ax.fill_between(rows["alpha"], rows[f"{column}_lo"], rows[f"{column}_hi"],
                                color=color, alpha=0.08)  # fmt: skip
            _baseline_line(ax, float(base[column]))
            _alpha_ticks(ax, sorted(set(sweep["alpha"])))
            ax.set_title(f"{label}: {intervention}", fontsize=9)
            ax.set_ylabel(label, fontsize=8)
            ax.grid(alpha=0.3)
    for ax in axes[-1]:
        ax.set_xlabel("steering strength alpha")
    handles = [Line2D([], [], color=c, marker="o", label=f"layer {layer}")
               for layer, c in colors.items()]  # fmt: skip
    handles.append(_baseline_handle("baseline (unsteered)"))
    fig.legend(handles=handles, loc="outside right upper", fontsize=8)
    fig.suptitle("Confounds vs alpha over all splits, report prompts (bands: 95% bootstrap CI)")
    return fig


def shiftfigure(rates: pd.DataFrame, op_label: str) -> Figure:
    """harm_test refusal per family and per style: baseline vs the operating point."""
    kinds = [k for k in ("family", "style") if (rates["by"] == k).any()] or ["family"]
    widths = [max(3.0, 0.9 * rates[rates["by"] == k]["group"].nunique() + 1.5) for k in kinds]
    fig = figure(sum(widths) + 1.0, 4.6)
    axes = np.atleast_1d(fig.subplots(1, len(kinds), width_ratios=widths, sharey=True))
    styles = {"baseline": ("0.6", "baseline (unsteered)"),
              "operating point": ("tab:red", f"operating point: {op_label}")}  # fmt: skip
    for ax, kind in zip(axes, kinds, strict=True):
        part = rates[rates["by"] == kind]
        groups = sorted(set(part["group"]))
        for k, (setting, (color, label)) in enumerate(styles.items()):
            rows = part[part["setting"] == setting].set_index("group").reindex(groups)
            pos = np.arange(len(groups)) + (k - 0.5) * 0.38
            err = [rows["rate"] - rows["lo"], rows["hi"] - rows["rate"]]
            ax.bar(pos, rows["rate"], width=0.38, color=color, label=label,
                   yerr=err, capsize=3, error_kw={"elinewidth": 0.9})  # fmt: skip
        n = part[part["setting"] == "operating point"].set_index("group")["n"].reindex(groups)
        ticks = [f"{g}\n(n={int(k)})" if k == k else g for g, k in zip(groups, n, strict=True)]
        ax.set_xticks(range(len(groups)), ticks, rotation=30 if len(groups) > 4 else 0,
                      ha="right" if len(groups) > 4 else "center")  # fmt: skip
        ax.set_xlabel(f"harm_test {kind}")
        ax.set_ylim(0.0, 1.05)
        ax.grid(axis="y", alpha=0.3)
    axes[0].set_ylabel("refusal rate")
    axes[0].legend(loc="upper left", fontsize=8)
    fig.suptitle("Which shifts fail to transfer: harm_test refusal by family and style "
                 "(report prompts, 95% CI)")  # fmt: skip
    return fig


def strong_setting(summary: pd.DataFrame) -> pd.Series | None:
    """The sweep setting with the highest harm_test refusal (ties: lower alpha, then layer)."""
    _, sweep = _split(summary)
    if sweep.empty:
        return None
    rows = sweep.sort_values(["alpha", "layer"], kind="stable")
    return rows.loc[rows["harm_test_refusal"].fillna(-np.inf).astype("float64").idxmax()]


def projectionfigure(
    summary: pd.DataFrame, rows: pd.DataFrame, select: pd.DataFrame | None = None
) -> Figure:
    """resid . v_hat at the steered site before and after steering, per split, at the operating
    point and at the strongest setting: where the baseline sits along v and where steering moves it.
    """
    _, sweep = _split(summary)
    op = sweep[sweep["operating_point"].astype(bool)]
    settings = [("operating point", op.iloc[0])] if not op.empty else []
    # the strongest setting is picked on the select part (when given), drawn from `rows`
    strong = strong_setting(summary if select is None else select)
    same = (
        settings and setting_key(strong) == setting_key(settings[0][1])
        if strong is not None
        else True
    )
    if strong is not None and not same:
        settings.append(("strongest harm_test refusal", strong))
    splits = ("harm_train", "harm_test", "benign")
    fig = figure(3.2 * len(splits), 2.6 * max(len(settings), 1))
    axes = fig.subplots(max(len(settings), 1), len(splits), squeeze=False)
    for i, (title, row) in enumerate(settings):
        data = setting_rows(rows, row)
        for j, split in enumerate(splits):
            ax = axes[i][j]
            part = data[data["split"] == split]
            before = part["proj_before"].dropna().to_numpy(dtype="float64")
            after = part["proj_after"].dropna().to_numpy(dtype="float64")
            if before.size == 0:
                ax.text(0.5, 0.5, "no projections recorded", ha="center", va="center",
                        transform=ax.transAxes)  # fmt: skip
            else:
                both = np.concatenate([before, after])
                bins = np.linspace(both.min(), both.max() + 1e-9, 25)
                ax.hist(before, bins=bins, color="0.6", alpha=0.7, label="unsteered")
                ax.hist(after, bins=bins, color="tab:red", alpha=0.6, label="steered")
                ax.axvline(0.0, color="k", linewidth=0.8)
            ax.set_title(f"{split}", fontsize=9)
            if j == 0:
                ax.set_ylabel(f"{title}\n{setting_label(row)}", fontsize=8)
            ax.set_xlabel("mean resid . v_hat over the prompt", fontsize=8)
    if settings and axes[0][0].get_legend_handles_labels()[0]:
        axes[0][0].legend(fontsize=7)
    fig.suptitle("Projection onto the direction at the steered site (report prompts)", fontsize=10)
    return fig


def build_figures(
    summary: pd.DataFrame,
    rates: pd.DataFrame,
    rows: pd.DataFrame | None = None,
    select: pd.DataFrame | None = None,
) -> dict[str, Figure]:
    """Every report figure by file stem, in a fixed order (projections when rows are given)."""
    op = summary[summary["operating_point"]]
    op_label = setting_label(op.iloc[0]) if not op.empty else "none"
    figures = {
        "generalisation_gap": gapfigure(summary),
        "tradeoff": tradeofffigure(summary),
        "heatmaps": heatmapfigure(summary),
        "confounds": confoundfigure(summary),
        "refusal_by_shift": shiftfigure(rates, op_label),
    }
    if rows is not None:
        figures["projections"] = projectionfigure(summary, rows, select)
    return figures
