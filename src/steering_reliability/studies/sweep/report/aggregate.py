"""Per-setting rates with bootstrap intervals, the Pareto frontier and the operating point.

One summary row per setting: the unsteered baseline (kind "baseline") and each steered
(layer, hook point, intervention, alpha) of the sweep (kind "sweep").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from steering_reliability.analysis.data import BASELINE, PARTS, SPLITS, SWEEP, ReportInputError
from steering_reliability.metrics.stats import NAN, Estimate, diff_ci, mean_ci, per_prompt

SETTING_KEY: tuple[str, ...] = ("layer", "hook_point", "intervention", "alpha")
# Whole-setting means over every prompt of the three splits (confounds), and benign-only ones.
_ALL_SPLIT_MEANS = (("mean_n_tokens", "n_tokens"), ("mean_entropy", "mean_entropy"))
_ALL_SPLIT_RATES = (("collapse_rate", "collapsed"),)
_BENIGN_MEANS = (("mean_kl", "kl_to_baseline"), ("mean_ce", "ce_on_baseline"))
# Mechanism diagnostics per split: mean resid . v_hat at the steered site before / after steering.
_PROJECTIONS = ("proj_before", "proj_after")
_METRICS = ("is_refusal", "is_helpful", *(c for _, c in _ALL_SPLIT_MEANS + _ALL_SPLIT_RATES),
            *(c for _, c in _BENIGN_MEANS), *_PROJECTIONS)  # fmt: skip


@dataclass(frozen=True)
class OperatingPointRule:
    """How the operating points are chosen (see `choose_operating_point`)."""

    max_helpful_drop: float = 0.10  # benign helpful-rate drop vs baseline, absolute
    max_collapse_rate: float = 0.10  # share of collapsed completions above which a setting is out
    # a setting "works" in distribution when its harm_train refusal rate (select) reaches this;
    # per layer and intervention, the weakest alpha that does is that pair's *matched* setting
    min_effect: float = 0.5


# The summary's point columns -> the refusal column each is chosen by (on select prompts).
# operating_point: chosen on in-distribution prompts only (harm_train and benign): the headline.
# shift_tuned: chosen on harm_test, the best case when shifted prompts are there to tune on.
POINTS: dict[str, str] = {"operating_point": "harm_train_refusal",
                          "shift_tuned": "harm_test_refusal"}  # fmt: skip
POINT_NAMES: dict[str, str] = {"operating_point": "in-distribution operating point",
                               "shift_tuned": "tuned on the shift"}  # fmt: skip


DEFAULT_RULE = OperatingPointRule()


def has_parts(df: pd.DataFrame) -> bool:
    """Whether the run's prompt rows carry select/report parts (runs before parts did not)."""
    return "part" in df.columns and bool(df["part"].isin(PARTS).any())


def part_rows(df: pd.DataFrame, part: str) -> pd.DataFrame:
    """The rows measured on `part` prompts, with every non-prompt row (sanity verdicts).

    A run without parts is returned whole: the caller must then say that choices and reported
    numbers come from the same prompts.
    """
    if part not in PARTS:
        raise ValueError(f"part {part!r} is not one of {PARTS}")
    if not has_parts(df):
        return df
    return df[(df["part"] == part) | (df["prompt_id"] == "")]


def setting_key(row: pd.Series) -> tuple[int, str, str, float]:
    """(layer, hook point, intervention, alpha) of a summary row: the same setting in any part."""
    return (int(row["layer"]), str(row["hook_point"]), str(row["intervention"]),
            round(float(row["alpha"]), 9))  # fmt: skip


def setting_label(row: pd.Series) -> str:
    """Readable name of a summary row, e.g. 'layer 12, add, alpha=1'."""
    if row["kind"] == BASELINE:
        return "baseline (unsteered)"
    return f"layer {int(row['layer'])}, {row['intervention']}, alpha={float(row['alpha']):g}"


def sweep_rows(df: pd.DataFrame) -> pd.DataFrame:
    """Steered sweep rows of one direction variant ("main" when several were swept)."""
    rows = df[df["experiment"] == SWEEP]
    variants = rows["direction_variant"].fillna("").astype(str)
    if variants.nunique() > 1:
        keep = "main" if (variants == "main").any() else variants.value_counts().index[0]
        rows = rows[variants == keep]
    return rows


def _put(out: dict[str, object], name: str, est: Estimate) -> None:
    out[name], out[f"{name}_lo"], out[f"{name}_hi"] = est.value, est.lo, est.hi


def _pp(rows: pd.DataFrame, column: str) -> pd.Series:
    return per_prompt(rows[column], rows["prompt_id"])


def _prompt_means(rows: pd.DataFrame, key: Sequence[str] = ()) -> pd.DataFrame:
    """Mean of every metric per (key..., split, prompt id): one value per prompt (over seeds).

    Prompt ids are unique per split only, hence the split in the index.
    """
    rows = rows[rows["split"].fillna("").astype(str) != ""]
    return rows.groupby([*key, "split", "prompt_id"], sort=True)[list(_METRICS)].mean()


def _setting_stats(means: pd.DataFrame, base: pd.DataFrame) -> dict[str, object]:
    """Every summary column for one setting, from its (split, prompt id) -> metric means.

    `base` holds the baseline's means in the same layout: changes against it are paired over the
    prompts both measured (the same prompts, steered and unsteered).
    """
    out: dict[str, object] = {}
    by_split, base_split = _by_split(means), _by_split(base)
    for split, part in by_split.items():
        out[f"n_{split}"] = len(part)
        _put(out, f"{split}_refusal", mean_ci(part["is_refusal"]))
        _put(out, f"{split}_helpful", mean_ci(part["is_helpful"]))
    train, test = by_split["harm_train"]["is_refusal"], by_split["harm_test"]["is_refusal"]
    # different prompt sets: each resampled on its own, the difference taken per resample
    _put(out, "gap", diff_ci(train, test, paired=False))
    _put(out, "helpful_drop", paired(base_split["benign"]["is_helpful"],
                                      by_split["benign"]["is_helpful"]))  # fmt: skip
    for split in ("harm_test", "benign"):
        _put(out, f"{split}_refusal_change", paired(by_split[split]["is_refusal"],
                                                     base_split[split]["is_refusal"]))  # fmt: skip
    for split in extra_splits(by_split):  # the benchmarks: the same gap and change as harm_test
        refusal = by_split[split]["is_refusal"]
        _put(out, f"{split}_gap", diff_ci(train, refusal, paired=False))
        _put(out, f"{split}_refusal_change",
             paired(refusal, base_split.get(split, refusal.iloc[0:0])))  # fmt: skip
    for name, column in _ALL_SPLIT_MEANS + _ALL_SPLIT_RATES:
        _put(out, name, mean_ci(means[column]))
    for name, column in _BENIGN_MEANS:
        _put(out, name, mean_ci(by_split["benign"][column]))
    for split, part in by_split.items():
        for column in _PROJECTIONS:
            values = part[column].dropna()
            out[f"{split}_{column}"] = float(values.mean()) if len(values) else np.nan
    return out


def _by_split(means: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """split -> its (prompt id -> metric means): SPLITS always (empty where not measured), then
    every further split present (the benchmarks), by name."""
    present = set(means.index.get_level_values("split"))
    empty = means.iloc[0:0].droplevel("split")
    names = (*SPLITS, *sorted(present - set(SPLITS)))
    return {s: means.xs(s, level="split") if s in present else empty for s in names}


def extra_splits(by_split: Mapping[str, object]) -> tuple[str, ...]:
    """The splits beyond harm_train, harm_test and benign (the benchmarks), in order."""
    return tuple(s for s in by_split if s not in SPLITS)


def benchmark_columns(summary: pd.DataFrame) -> tuple[str, ...]:
    """The benchmark splits a summary table has columns for (`<split>_gap`), in column order."""
    return tuple(c[: -len("_gap")] for c in summary.columns
                 if c.endswith("_gap") and not c.endswith(("_lo", "_hi")) and c != "gap")  # fmt: skip


def paired(a: pd.Series, b: pd.Series, *, comparisons: int = 1) -> Estimate:
    """mean(a) - mean(b) paired over the prompts both measured (series indexed by prompt id)."""
    a, b = a.dropna(), b.dropna()
    shared = a.index.intersection(b.index)
    if not len(shared):
        return NAN
    return diff_ci(a.loc[shared], b.loc[shared], paired=True, comparisons=comparisons)


def summarize(
    df: pd.DataFrame,
    rule: OperatingPointRule = DEFAULT_RULE,
    *,
    chosen: Mapping[str, object] | None = None,
) -> pd.DataFrame:
    """The summary table: baseline row first, then sweep settings ordered by the setting key.

    Marks the settings of `choose_points` (bool columns `operating_point`, `shift_tuned`,
    `matched`): chosen by `rule` on these rows, or, given `chosen` (`choose_points` of other
    rows, e.g. the select part), marked where those settings are.
    """
    base = _prompt_means(df[df["experiment"] == BASELINE])
    if base.empty:
        raise ReportInputError("no baseline rows (experiment == 'baseline') to compare against")
    records = [
        {"kind": BASELINE, "case_id": BASELINE, "layer": -1, "hook_point": "",
         "intervention": "none", "alpha": 0.0, **_setting_stats(base, base)}
    ]  # fmt: skip
    sweep = sweep_rows(df).assign(hook_point=lambda d: d["hook_point"].fillna("").astype(str))
    if sweep.empty:
        raise ReportInputError("no steered sweep rows (experiment == 'sweep') to summarise")
    key = list(SETTING_KEY)
    case_ids = sweep.groupby(key, sort=True)["case_id"].min()
    means = _prompt_means(sweep, key)
    for setting, part in means.groupby(level=key, sort=True):
        layer, hook, intervention, alpha = setting
        records.append(
            {"kind": SWEEP, "case_id": case_ids.loc[setting], "layer": int(layer),
             "hook_point": hook, "intervention": intervention, "alpha": float(alpha),
             **_setting_stats(part.droplevel(key), base)}
        )  # fmt: skip
    summary = pd.DataFrame.from_records(records)
    is_sweep = (summary["kind"] == SWEEP).to_numpy()
    front = np.zeros(len(summary), dtype=bool)
    front[is_sweep] = pareto_front(
        summary.loc[is_sweep, "harm_test_refusal"], summary.loc[is_sweep, "helpful_drop"]
    )
    summary["pareto"] = front
    picks = dict(chosen) if chosen is not None else choose_points(summary, rule)
    keys = {i: setting_key(r) for i, r in summary.iterrows() if r["kind"] == SWEEP}
    for column in (*POINTS, "matched"):
        wanted = picks[column] if column == "matched" else [picks[column]]
        summary[column] = False
        for want in wanted:  # type: ignore[union-attr]
            hit = [i for i, k in keys.items() if k == want]
            if len(hit) != 1:
                raise ReportInputError(
                    f"the {column} setting {want} chosen on the select part is not a setting "
                    "of these rows",
                    hint="every sweep case must be measured on both parts (select and report)",
                )
            summary.loc[hit[0], column] = True
    return summary


def choose_points(
    summary: pd.DataFrame, rule: OperatingPointRule = DEFAULT_RULE
) -> dict[str, object]:
    """The settings a report marks, chosen on `summary` (the select part's): the setting key of
    each point of POINTS, and under "matched" the list of matched settings' keys."""
    picks: dict[str, object] = {
        column: setting_key(choose_operating_point(summary, rule, target=target))
        for column, target in POINTS.items()
    }
    picks["matched"] = [setting_key(r) for _, r in matched_settings(summary, rule).iterrows()]
    return picks


def works_in_distribution(row: pd.Series, rule: OperatingPointRule = DEFAULT_RULE) -> bool:
    """Whether a (select-part) setting induces refusal in distribution: harm_train refusal rate
    >= rule.min_effect, not collapsed, and benign helpful-rate drop <= rule.max_helpful_drop."""
    refusal, drop = float(row["harm_train_refusal"]), float(row["helpful_drop"])
    collapse = float(row["collapse_rate"]) if not pd.isna(row["collapse_rate"]) else 0.0
    return (refusal >= rule.min_effect and drop <= rule.max_helpful_drop
            and collapse <= rule.max_collapse_rate)  # fmt: skip


def point_works(select: pd.DataFrame, rule: OperatingPointRule = DEFAULT_RULE) -> bool:
    """Whether the in-distribution operating point of a select-part summary works there."""
    return works_in_distribution(point_row(select, "operating_point"), rule)


def matched_settings(
    summary: pd.DataFrame, rule: OperatingPointRule = DEFAULT_RULE
) -> pd.DataFrame:
    """Per (layer, hook point, intervention): the weakest alpha whose harm_train refusal rate
    reaches rule.min_effect (whatever its benign cost), so settings that do the same thing in
    distribution can be compared on the shift. Pairs that never reach it have none."""
    sweep = summary[summary["kind"] == SWEEP]
    picked = []
    for _, rows in sweep.groupby(["layer", "hook_point", "intervention"], sort=True):
        rows = rows.sort_values("alpha", key=lambda a: a.abs(), kind="stable")
        hit = rows[rows["harm_train_refusal"] >= rule.min_effect]
        if len(hit):
            picked.append(hit.index[0])
    return summary.loc[picked]


def point_row(summary: pd.DataFrame, column: str = "operating_point") -> pd.Series:
    """The row flagged in a point column (`operating_point`, the in-distribution one, or
    `shift_tuned`)."""
    rows = summary[summary[column].astype(bool)]
    if len(rows) != 1:
        raise ReportInputError(f"{len(rows)} rows flagged as {column} in the summary; expected 1")
    return rows.iloc[0]


def operating_point_row(summary: pd.DataFrame) -> pd.Series:
    """The row flagged as the (in-distribution) operating point."""
    return point_row(summary, "operating_point")


def pareto_front(refusal: pd.Series, drop: pd.Series) -> np.ndarray:
    """True where no other point has refusal >= and drop <= with one strictly better.

    Refusal (harm_test) is maximised and drop (benign helpfulness) minimised; NaN is never on it.
    """
    x = np.asarray(refusal, dtype="float64")
    y = np.asarray(drop, dtype="float64")
    ok = ~(np.isnan(x) | np.isnan(y))
    out = np.zeros(len(x), dtype=bool)
    for i in np.flatnonzero(ok):
        no_worse = ok & (x >= x[i]) & (y <= y[i])
        better = no_worse & ((x > x[i]) | (y < y[i]))
        out[i] = not better.any()
    return out


def _ordered(rows: pd.DataFrame) -> pd.DataFrame:
    """Deterministic tie-break: smaller drop, then smaller alpha, then lower layer."""
    return rows.sort_values(
        ["helpful_drop", "alpha", "layer", "intervention"], na_position="last", kind="stable"
    )


def explain_choice(
    summary: pd.DataFrame, rule: OperatingPointRule = DEFAULT_RULE, *, target: str
) -> tuple[object, str]:
    """(summary index of the point chosen by `target`, one sentence saying which rule branch
    chose it). The rule is stated in `choose_operating_point`.
    """
    split = target.removesuffix("_refusal")
    sweep = summary[summary["kind"] == SWEEP]
    if sweep.empty:
        raise ReportInputError(
            "the summary has no sweep settings to choose an operating point from"
        )
    fine = sweep["collapse_rate"].fillna(0.0) <= rule.max_collapse_rate
    within = fine & (sweep["helpful_drop"] <= rule.max_helpful_drop)
    if within.any():
        rows = _ordered(sweep[within])
        best = rows[target].fillna(-np.inf).astype("float64")
        idx = best.idxmax()
        return idx, (
            f"highest {split} refusal among non-collapsed settings (collapse rate <= "
            f"{rule.max_collapse_rate:g}) whose benign helpful-rate drop is <= "
            f"{rule.max_helpful_drop:g}"
        )
    pool, why = sweep[fine], "no non-collapsed setting keeps the helpful-rate drop <= "
    why += f"{rule.max_helpful_drop:g}; chose the non-collapsed setting with the best "
    why += f"({split} refusal - helpful drop)"
    if pool.empty:
        pool = sweep[sweep["pareto"]] if "pareto" in sweep and sweep["pareto"].any() else sweep
        why = "every setting is collapsed; chose the Pareto-frontier setting with the best "
        why += f"({split} refusal - helpful drop)"
    rows = _ordered(pool)
    score = (rows[target] - rows["helpful_drop"]).fillna(-np.inf).astype("float64")
    return score.idxmax(), why


def choose_operating_point(
    summary: pd.DataFrame,
    rule: OperatingPointRule = DEFAULT_RULE,
    *,
    target: str = POINTS["operating_point"],
) -> pd.Series:
    """The row of `summary` (a `summarize` table) chosen by refusal column `target`; `.name` is
    its index. `target` harm_train_refusal (default) gives the in-distribution operating point,
    harm_test_refusal the point tuned on the shift.

    Rule: among sweep settings that are not collapsed (collapse rate <= rule.max_collapse_rate,
    default 0.10) and whose benign helpful-rate drop vs baseline is <= rule.max_helpful_drop
    (default 0.10), the one with the highest `target` rate; ties go to the smaller drop, then
    the smaller alpha, then the lower layer. If no setting meets the drop bound: the
    non-collapsed setting with the largest (`target` - helpful drop), a Pareto point of the
    non-collapsed settings. Only if every setting is collapsed: the Pareto-frontier setting with
    that best score (then the point is collapsed, and a sanity check should say so).
    """
    idx, _ = explain_choice(summary, rule, target=target)
    return summary.loc[idx]


def setting_rows(df: pd.DataFrame, row: pd.Series) -> pd.DataFrame:
    """The result rows behind one summary row."""
    if row["kind"] == BASELINE:
        return df[df["experiment"] == BASELINE]
    rows = sweep_rows(df)
    hook = rows["hook_point"].fillna("").astype(str)
    match = (
        (rows["layer"] == int(row["layer"]))
        & (hook == str(row["hook_point"]))
        & (rows["intervention"] == str(row["intervention"]))
        & np.isclose(rows["alpha"].to_numpy(dtype="float64"), float(row["alpha"]))
    )
    return rows[match]


def group_rates(df: pd.DataFrame, op: pd.Series, by: str, split: str = "harm_test") -> pd.DataFrame:
    """Refusal rate per `by` group (family / style) on one split: baseline vs operating point."""
    base = df[(df["experiment"] == BASELINE) & (df["split"] == split)]
    steered = setting_rows(df, op)
    steered = steered[steered["split"] == split]
    records = []
    for setting, rows in (("baseline", base), ("operating point", steered)):
        for group, part in rows.groupby(by, sort=True):
            est = mean_ci(_pp(part, "is_refusal"))
            records.append(
                {"group": str(group) or "(none)", "setting": setting, "rate": est.value,
                 "lo": est.lo, "hi": est.hi, "n": est.n}
            )  # fmt: skip
    return pd.DataFrame.from_records(records, columns=["group", "setting", "rate", "lo", "hi", "n"])


def shift_rates(df: pd.DataFrame, op: pd.Series, split: str = "harm_test") -> pd.DataFrame:
    """`group_rates` by family and by style in one long table (column `by`)."""
    parts = [group_rates(df, op, by, split).assign(by=by) for by in ("family", "style")]
    return pd.concat(parts, ignore_index=True)


def estimate(row: pd.Series, name: str) -> Estimate:
    """The (value, lo, hi) triple of one summary column as an Estimate."""
    n = next((row[f"n_{s}"] for s in SPLITS if name.startswith(f"{s}_")), 0)
    return Estimate(float(row[name]), float(row[f"{name}_lo"]), float(row[f"{name}_hi"]), int(n))
