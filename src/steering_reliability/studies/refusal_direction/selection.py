"""Choosing a direction among candidates (layers x positions), as in Arditi et al.

Each candidate gets an induce score (mean first-token refusal probability on held-out benign
prompts with the direction added), a bypass score (drop in first-token refusal probability
under full ablation, on harmful prompts that refuse at baseline; NaN if none does) and two KLs
of the benign next-token distributions from baseline: under all-layer ablation (the one
selection bounds, as Arditi et al. do: removing a refusal direction should leave harmless
prompts nearly as they were) and under the addition (recorded, not bounded: inducing refusal
on a harmless prompt *is* a large change of its next token). One prefill forward per batch and
setting; only the last position's logits are computed.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd
import torch

from steering_reliability.atomic import atomic_write_bytes
from steering_reliability.directions.direction import Direction
from steering_reliability.errors import DirectionError
from steering_reliability.generation import next_token_logits
from steering_reliability.interventions import Steering, full_ablation, steer
from steering_reliability.metrics.divergence import mean_next_token_kl
from steering_reliability.metrics.first_token import first_token_refusal_prob, refusal_token_ids
from steering_reliability.models import LoadedModel

TABLE_COLUMNS: tuple[str, ...] = (
    "candidate",
    "method",
    "layer",
    "position",
    "hook_point",
    "n_layers",
    "alpha",
    "alpha_scale",
    "norm",
    "split_half_cosine",
    "induce_score",
    "baseline_refusal_prob_benign",
    "ablation_kl",
    "addition_kl",
    "bypass_score",
    "n_refusing_baseline",
    "key",
)


def _label(key: Any, d: Direction) -> str:
    if isinstance(key, tuple) and len(key) == 2:
        return f"layer{key[0]}-pos{key[1]}"
    return (
        f"layer{d.layer}"
        if d.position in ("prefix_mean", "first_prefix")
        else f"layer{d.layer}-pos{d.position}"
    )


def score_candidates(
    model: LoadedModel,
    candidates: Mapping[Any, Direction] | Sequence[Direction],
    *,
    benign: Sequence[str],
    harmful: Sequence[str] = (),
    alpha: float = 1.0,
    alpha_scale: str = "raw",
    system_prompt: str | None = None,
    refusal_threshold: float = 0.5,
    batch_size: int = 16,
) -> pd.DataFrame:
    """One row per candidate (TABLE_COLUMNS): induce score, bypass score, and the KL on benign
    prompts under all-layer ablation and under the addition."""
    items = (
        list(candidates.items())
        if isinstance(candidates, Mapping)
        else [(d, d) for d in candidates]
    )
    if not items:
        raise DirectionError(
            "no candidate directions to score", field="candidates", expected="at least one"
        )
    if not benign:
        raise DirectionError(
            "selection needs held-out benign prompts", field="benign", expected="at least one"
        )
    ids = refusal_token_ids(model.tokenizer)
    kw: dict[str, Any] = {"system_prompt": system_prompt, "batch_size": batch_size}
    base_benign = next_token_logits(model, benign, **kw)  # [n_benign, vocab]
    base_prob = first_token_refusal_prob(base_benign, ids)
    refusing: list[str] = []
    base_harm_prob = torch.empty(0, dtype=torch.float64)
    if harmful:
        p = first_token_refusal_prob(next_token_logits(model, harmful, **kw), ids)
        keep = p >= refusal_threshold
        refusing = [h for h, k in zip(harmful, keep.tolist(), strict=True) if k]
        base_harm_prob = p[keep]
    rows: list[dict[str, Any]] = []
    for key, d in items:
        s = Steering("add", d.layer, d.scaled(alpha_scale), alpha, hook_point=d.hook_point)
        with steer(model, [s]):
            steered = next_token_logits(model, benign, **kw)
        bypass = math.nan
        with full_ablation(model, d.vector):
            ablated_benign = next_token_logits(model, benign, **kw)
            if refusing:
                ablated = first_token_refusal_prob(next_token_logits(model, refusing, **kw), ids)
                bypass = float(base_harm_prob.mean() - ablated.mean())
        rows.append(
            {
                "candidate": _label(key, d),
                "method": d.method,
                "layer": d.layer,
                "position": d.position,
                "hook_point": d.hook_point,
                "n_layers": model.info.n_layers,
                "alpha": float(alpha),
                "alpha_scale": alpha_scale,
                "norm": d.norm,
                "split_half_cosine": d.split_half_cosine,
                "induce_score": float(first_token_refusal_prob(steered, ids).mean()),
                "baseline_refusal_prob_benign": float(base_prob.mean()),
                "ablation_kl": mean_next_token_kl(base_benign, ablated_benign),
                "addition_kl": mean_next_token_kl(base_benign, steered),
                "bypass_score": bypass,
                "n_refusing_baseline": len(refusing),
                "key": d.key,
            }
        )
    return pd.DataFrame(rows, columns=list(TABLE_COLUMNS))


SCORE_COLUMNS = {"induce": "induce_score", "bypass": "bypass_score"}  # selection's rankings


def _eligible(
    t: pd.DataFrame, max_layer_frac: float, require_induce: bool, by: str
) -> tuple[pd.DataFrame, str]:
    """The candidates any ablation-KL bound may choose from (layer cut-off, a score to rank by,
    with `require_induce` an addition that raises the benign refusal probability), best first:
    by the `by` score, then ablation KL, lower first. Also the score's column."""
    score = SCORE_COLUMNS.get(by)
    if score is None:
        raise DirectionError("unknown ranking", field="by", value=by, expected="induce or bypass")
    need = ["layer", "n_layers", "ablation_kl", "induce_score", score]
    need += ["baseline_refusal_prob_benign"] if require_induce else []
    missing = [c for c in need if c not in t.columns]
    if missing:
        raise DirectionError(
            "candidate table lacks columns",
            field="candidates_table",
            value=missing,
            hint="build it with score_candidates",
        )
    keep = (t["layer"] < max_layer_frac * t["n_layers"]) & t[score].notna()
    if require_induce:
        keep &= t["induce_score"] > t["baseline_refusal_prob_benign"]
    ranked = t[keep].sort_values([score, "ablation_kl"], ascending=[False, True], kind="stable")
    return ranked, score


def select_direction(
    candidates_table: pd.DataFrame,
    kl_max: float,
    max_layer_frac: float = 0.8,
    *,
    require_induce: bool = False,
    by: str = "induce",
) -> pd.Series:
    """The best candidate among those whose all-layer ablation moves the benign next-token
    distributions by KL <= kl_max, with layer < max_layer_frac * n_layers (late layers steer the
    output, not the decision) and, with `require_induce`, whose addition raises the benign
    refusal probability above baseline. `by`: "induce" ranks by the induce score, "bypass" by the
    drop in refusal under all-layer ablation (then ablation KL, lower first)."""
    t = candidates_table
    ranked, _ = _eligible(t, max_layer_frac, require_induce, by)
    ok = ranked[ranked["ablation_kl"] <= kl_max]
    if ok.empty:
        best = t.sort_values("ablation_kl").head(3)[["candidate", "ablation_kl", "induce_score"]]
        raise DirectionError(
            "no candidate passes the ablation-KL bound, the layer cut-off"
            + (" and the induce filter" if require_induce else ""),
            field="kl_max",
            value=kl_max,
            expected=f"a bound some candidate meets (lowest: {best.to_dict('records')})",
            hint=f"raise kl_max, or max_layer_frac (now {max_layer_frac})",
        )
    return ok.iloc[0]


def write_candidate_table(df: pd.DataFrame, path: str | Path) -> Path:
    """The whole candidate table as CSV, published atomically (temp file + os.replace)."""
    return atomic_write_bytes(path, df.to_csv(index=False).encode("utf-8"))


def kl_frontier(
    candidates_table: pd.DataFrame,
    budgets: Sequence[float],
    max_layer_frac: float = 0.8,
    *,
    require_induce: bool = False,
    by: str = "induce",
) -> list[dict[str, Any]]:
    """What `select_direction` would take under each ablation-KL bound in `budgets` (math.inf:
    none), under the same layer cut-off, induce filter and ranking: one record per bound, with
    the candidate, its layer, position, score and ablation KL, or candidate None where nothing
    passes; kl_max None for no bound (JSON has no infinity). It shows what the bound costs: the
    best bypass a looser bound buys, and at what KL."""
    ranked, score = _eligible(candidates_table, max_layer_frac, require_induce, by)
    out: list[dict[str, Any]] = []
    for bound in sorted(set(budgets)):
        shown = None if math.isinf(bound) else float(bound)
        ok = ranked[ranked["ablation_kl"] <= bound]
        if ok.empty:
            out.append({"kl_max": shown, "candidate": None})
            continue
        row = ok.iloc[0]
        out.append(
            {
                "kl_max": shown,
                "candidate": str(row["candidate"]),
                "layer": int(row["layer"]),
                "position": str(row.get("position", "")),
                score: float(row[score]),
                "ablation_kl": float(row["ablation_kl"]),
            }
        )
    return out
