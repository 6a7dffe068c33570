"""The shift ladder: refusal at settings of interest on harm_train (in distribution), harm_test
(our synthetic style shift) and each benchmark (real public prompt sets), with intervals, the
difference from harm_train with the interval of the difference, and the benign cost beside it.

Settings of interest are picked on the select prompts (the in-distribution operating point,
the matched settings, the point tuned on the shift, the Pareto frontier, the strongest setting
per layer); every number is read on the report prompts. Wording as in findings.py: a difference
is called clear only when the 95% interval of the difference excludes 0.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from steering_reliability.analysis import markdown as md
from steering_reliability.analysis.data import BASELINE, SWEEP
from steering_reliability.analysis.plotting import figure
from steering_reliability.metrics.stats import Estimate, diff_ci, mean_ci, per_prompt
from steering_reliability.studies.sweep.report.aggregate import (
    POINT_NAMES,
    OperatingPointRule,
    benchmark_columns,
    estimate,
    point_row,
    point_works,
    setting_key,
    setting_label,
    setting_rows,
)


@dataclass(frozen=True)
class Rung:
    """One setting of the ladder: its report-part summary row and why it is on the ladder."""

    row: pd.Series
    roles: tuple[str, ...]

    @property
    def label(self) -> str:
        return setting_label(self.row)


def ladder_splits(summary: pd.DataFrame) -> tuple[str, ...]:
    """The rungs of the ladder: harm_train, harm_test, then the benchmarks."""
    return ("harm_train", "harm_test", *benchmark_columns(summary))


def rungs(summary: pd.DataFrame, select: pd.DataFrame, rule: OperatingPointRule) -> list[Rung]:
    """The settings of interest, each once, with every reason it is there: the baseline, the
    points of `summary` (operating_point, matched, shift_tuned), then the select part's Pareto
    settings and the strongest setting per layer (highest harm_train refusal among
    non-collapsed settings)."""
    roles: dict[object, list[str]] = {}
    base = summary[summary["kind"] == BASELINE]
    roles[base.index[0]] = ["unsteered"]
    for column in ("operating_point", "matched", "shift_tuned"):
        for idx in summary.index[summary[column].astype(bool)]:
            roles.setdefault(idx, []).append(POINT_NAMES.get(column, "matched in distribution"))
    keys = {setting_key(r): i for i, r in summary.iterrows() if r["kind"] == SWEEP}
    sel = select[select["kind"] == SWEEP]
    for _, r in sel[sel["pareto"].astype(bool)].iterrows():
        if setting_key(r) in keys:
            roles.setdefault(keys[setting_key(r)], []).append("Pareto (harm_test)")
    fine = sel[sel["collapse_rate"].fillna(0.0) <= rule.max_collapse_rate]
    for layer, rows in fine.groupby("layer", sort=True):
        best = rows.sort_values(["harm_train_refusal", "alpha"], ascending=[False, True],
                                kind="stable").iloc[0]  # fmt: skip
        if setting_key(best) in keys:
            roles.setdefault(keys[setting_key(best)], []).append(f"strongest at layer {layer}")
    return [Rung(summary.loc[i], tuple(r)) for i, r in roles.items()]


def focus(summary: pd.DataFrame, select: pd.DataFrame, rule: OperatingPointRule) -> list[Rung]:
    """The settings the transfer question is answered at: the in-distribution operating point
    when it works in distribution (on the select prompts), else the matched settings."""
    if point_works(select, rule):
        return [Rung(point_row(summary, "operating_point"), ("in-distribution operating point",))]
    return [Rung(r, ("matched in distribution",))
            for _, r in summary[summary["matched"].astype(bool)].iterrows()]  # fmt: skip


def _series(rows: pd.DataFrame, split: str, by: str | None = None,
            group: str | None = None) -> pd.Series:  # fmt: skip
    """Per-prompt refusal of one setting's rows (`setting_rows`) on a split, or a group of it."""
    rows = rows[rows["split"] == split]
    if by is not None:
        rows = rows[rows[by].astype(str) == group]
    return per_prompt(rows["is_refusal"], rows["prompt_id"])


def ladder_table(df: pd.DataFrame, summary: pd.DataFrame, ladder: Sequence[Rung]) -> pd.DataFrame:
    """Long table (shift_ladder.csv): per rung, split and group (family of a benchmark, style of
    harm_test; "" = the whole split), the refusal rate with its interval, the difference from
    harm_train (all of it) with the interval of the difference, and the rung's benign
    false-refusal rate and helpful-rate drop."""
    records = []
    for rung in ladder:
        rows = setting_rows(df, rung.row)
        train = _series(rows, "harm_train")
        for split in ladder_splits(summary):
            by = "style" if split == "harm_test" else "family"
            groups = [("", None)]
            if split != "harm_train":
                names = sorted(set(rows.loc[rows["split"] == split, by].astype(str)))
                groups += [(g, by) for g in names if len(names) > 1]
            for group, col in groups:
                values = _series(rows, split, col, group or None)
                est = mean_ci(values)
                diff = (diff_ci(train, values, paired=False) if split != "harm_train"
                        else Estimate(np.nan, np.nan, np.nan, 0))  # fmt: skip
                records.append({
                    "setting": rung.label, "case_id": rung.row["case_id"],
                    "roles": "; ".join(rung.roles), "split": split, "by": col or "",
                    "group": group, "n": est.n, "refusal": est.value, "refusal_lo": est.lo,
                    "refusal_hi": est.hi, "drop_from_train": diff.value,
                    "drop_from_train_lo": diff.lo, "drop_from_train_hi": diff.hi,
                    "benign_refusal": float(rung.row["benign_refusal"]),
                    "helpful_drop": float(rung.row["helpful_drop"]),
                })  # fmt: skip
    return pd.DataFrame.from_records(records)


def _carry(split: str, diff: Estimate) -> str:
    if np.isnan(diff.value):
        return f"{split}: not measured"
    if diff.excludes(0.0) and diff.value > 0:
        return f"{split}: carries only partly (drop {md.ci(diff)})"
    if diff.excludes(0.0):
        return f"{split}: carries further than harm_train (drop {md.ci(diff)})"
    return f"{split}: no drop shown (drop {md.ci(diff)})"


def render_ladder(
    df: pd.DataFrame,
    summary: pd.DataFrame,
    select: pd.DataFrame,
    rule: OperatingPointRule,
    ladder: Sequence[Rung],
    table: pd.DataFrame,
) -> tuple[str, list[str]]:
    """(one verdict phrase, the markdown of the ladder section)."""
    splits = ladder_splits(summary)
    benches = splits[2:]
    whole = table[table["group"] == ""]
    header = ["setting", "chosen as", *splits, "benign false refusal", "helpful drop"]
    rows, drops = [], []
    for rung in ladder:
        cells = whole[whole["case_id"] == rung.row["case_id"]].set_index("split")
        rate = [md.ci(Estimate(*(float(cells.loc[s, c]) for c in
                ("refusal", "refusal_lo", "refusal_hi")), int(cells.loc[s, "n"])))
                for s in splits]  # fmt: skip
        rows.append([md.escape(rung.label), "; ".join(rung.roles), *rate,
                     md.ci(estimate(rung.row, "benign_refusal")),
                     md.ci(estimate(rung.row, "helpful_drop"))])  # fmt: skip
        drops.append([md.escape(rung.label), *(md.ci(Estimate(
            *(float(cells.loc[s, c]) for c in ("drop_from_train", "drop_from_train_lo",
                                               "drop_from_train_hi")), int(cells.loc[s, "n"])))
            for s in splits[1:])])  # fmt: skip
    text = [
        "Refusal rate on each rung of the shift: harm_train (the direction's own distribution), "
        "harm_test (our synthetic style shift: fiction, role-play, hypotheticals...)"
        + (
            ", then the real benchmarks " + ", ".join(f"`{b}`" for b in benches)
            if benches
            else "; this run evaluated no benchmark (prompts.benchmarks is empty)"
        )
        + ". Settings are picked on the select prompts, numbers read on the report prompts "
        "(shift_ladder.csv has every number, by style and by benchmark category; "
        "shift_ladder.png plots them).",
        md.table(header, rows),
        "Drop from harm_train (harm_train minus the rung; different prompts, each resampled on "
        "its own): positive means the effect carries less far than on its own distribution.",
        md.table(["setting", *splits[1:]], drops),
    ]
    verdicts = []
    for rung in focus(summary, select, rule):
        cells = whole[whole["case_id"] == rung.row["case_id"]].set_index("split")
        parts = [_carry(s, Estimate(*(float(cells.loc[s, c]) for c in (
            "drop_from_train", "drop_from_train_lo", "drop_from_train_hi")),
            int(cells.loc[s, "n"]))) for s in splits[1:]]  # fmt: skip
        line = f"At {md.escape(rung.label)} ({rung.roles[0]}): " + "; ".join(parts) + "."
        rows = setting_rows(df, rung.row)
        test = _series(rows, "harm_test")
        compare = []
        for b in benches:
            d = diff_ci(_series(rows, b), test, paired=False)
            word = ("harder than" if d.excludes(0.0) and d.value > 0 else
                    "easier than" if d.excludes(0.0) else "not separated from")  # fmt: skip
            compare.append(f"{word} `{b}` (refusal {b} minus harm_test {md.ci(d)})")
            verdicts.append(word)
        if compare:
            line += " Our synthetic shift is " + "; ".join(compare) + "."
        text.append(line)
    if not benches:
        return "no benchmark evaluated", text
    if not verdicts:
        return "no setting to compare at", text
    harder = verdicts.count("harder than")
    easier = verdicts.count("easier than")
    return (f"synthetic shift harder than the benchmark in {harder}, easier in {easier}, not "
            f"separated in {len(verdicts) - harder - easier} of {len(verdicts)} comparisons"
            ), text  # fmt: skip


def ladder_figure(summary: pd.DataFrame, table: pd.DataFrame, ladder: Sequence[Rung]) -> Figure:
    """shift_ladder.png: refusal per rung (with 95% intervals) for the ladder's settings, the
    benign false-refusal rate beside them."""
    splits = [*ladder_splits(summary), "benign (false refusal)"]
    whole = table[table["group"] == ""]
    fig = figure(max(6.0, 1.3 * len(splits) + 2.5), 4.2)
    ax = fig.add_subplot()
    x = np.arange(len(splits))
    shown = [r for r in ladder if any(k in " ".join(r.roles) for k in
             ("unsteered", "operating point", "matched", "tuned"))] or list(ladder)  # fmt: skip
    for k, rung in enumerate(shown):
        cells = whole[whole["case_id"] == rung.row["case_id"]].set_index("split")
        vals = [float(cells.loc[s, "refusal"]) for s in splits[:-1]]
        lo = [float(cells.loc[s, "refusal_lo"]) for s in splits[:-1]]
        hi = [float(cells.loc[s, "refusal_hi"]) for s in splits[:-1]]
        b = estimate(rung.row, "benign_refusal")
        vals, lo, hi = vals + [b.value], lo + [b.lo], hi + [b.hi]
        err = np.array([np.subtract(vals, lo), np.subtract(hi, vals)])
        offset = (k - (len(shown) - 1) / 2) * 0.06
        ax.errorbar(x[:-1] + offset, vals[:-1], yerr=err[:, :-1], marker="o", capsize=3,
                    label=rung.label if rung.roles[0] == "unsteered"
                    else f"{rung.label} ({rung.roles[0]})")  # fmt: skip
        ax.errorbar(x[-1:] + offset, vals[-1:], yerr=err[:, -1:], marker="s", capsize=3,
                    color=ax.lines[-1].get_color(), linestyle="none")  # fmt: skip
    ax.axvline(len(splits) - 1.5, color="0.7", linewidth=0.8)
    ax.set_xticks(x, splits, rotation=20, ha="right")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("refusal rate (report prompts)")
    ax.set_title("Shift ladder: in distribution -> synthetic shift -> real benchmarks")
    ax.legend(fontsize=7, loc="best")
    return fig
