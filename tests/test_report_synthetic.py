"""A small synthetic run (results.parquet + run.json) for the report tests, and its own checks.

Texts are placeholders ("[synthetic completion 3]"); the numbers follow a simple made-up
pattern: refusal grows with alpha, less on the shifted harm_test split, and benign helpfulness
falls with alpha, so every section of the report has something to show.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow.parquet as pq

from steering_reliability.records.schema import COLUMNS, ROW_SCHEMA, rows_to_table

LAYERS = (4, 8)
INTERVENTIONS = ("add", "ablate")
ALPHAS = (1.0, 2.0)
N_PER_SPLIT = 10
FAMILIES = {"harm_train": ("fam_a", "fam_b"), "harm_test": ("fam_c", "fam_d"), "benign": ("fam_e",)}
STYLES = ("direct", "roleplay")


def _prompt_row(split: str, i: int) -> dict[str, Any]:
    families = FAMILIES.get(split, ("cat_a", "cat_b"))  # a benchmark: two categories
    return {
        "split": split,
        "prompt_id": f"{split}_{i:04d}",
        "family": families[i % len(families)],
        "style": STYLES[(i // 2) % len(STYLES)],
        "template": "t0",
        "prompt": f"[synthetic prompt {split} {i}]",
    }


def _refusal_prob(split: str, layer: int, intervention: str, alpha: float) -> float:
    if intervention == "none":
        return 0.1 if split != "benign" else 0.0
    strength = (
        alpha
        * (0.45 if layer == 8 else 0.25 + 0.01 * layer)
        * (1.0 if intervention == "add" else 0.6)
    )
    shift = {"harm_train": 1.0, "harm_test": 0.45, "benign": 0.2}.get(split, 0.8)
    return float(min(1.0, 0.1 + strength * shift))


def _scored(
    rng: np.random.Generator, base: dict[str, Any], p_refuse: float, **kw: Any
) -> dict[str, Any]:
    refused = bool(rng.random() < p_refuse)
    collapsed = bool(kw.pop("collapse", 0.0) > rng.random())
    i = int(base["prompt_id"].rsplit("_", 1)[1])
    text = f"[synthetic refusal {i}]" if refused else f"[synthetic completion {i}]"
    if collapsed:
        text = "[synthetic collapsed text] " * 3
    row = {
        **base,
        "completion": text + "\nsecond line with *stars* and _underscores_\nthird\nfourth\nfifth",
        "n_tokens": 8 if collapsed else 40 + i,
        "refusal_score": 0.9 if refused else 0.1,
        "is_refusal": refused,
        "matched_phrases": ["i can't"] if refused else [],
        "helpfulness_score": 0.2 if refused else 0.8,
        "is_helpful": not refused and not collapsed,
        "mean_entropy": 0.5 if collapsed else 2.0 + 0.01 * i,
        "mean_logprob": -1.5,
        "distinct_2": 0.2 if collapsed else 0.9,
        "repeated_ngram_frac": 0.8 if collapsed else 0.05,
        "collapsed": collapsed,
        "first_token_refusal_prob": 0.5 if refused else 0.05,
    }
    if base["split"] == "benign":
        row["kl_to_baseline"] = kw.get("kl", 0.0)
        row["ce_on_baseline"] = 1.0 + kw.get("kl", 0.0)
    return row


def synthetic_rows(
    seed: int = 0,
    layers: tuple[int, ...] = LAYERS,
    alphas: tuple[float, ...] = ALPHAS,
    n_per_split: int = N_PER_SPLIT,
    benchmarks: tuple[str, ...] = (),
) -> list[dict[str, Any]]:
    """Rows of a tiny run: baseline, a layer x intervention x alpha sweep, three sanity checks;
    `benchmarks` adds further shifted splits (refusal carries to them more than to harm_test)."""
    rng = np.random.default_rng(seed)
    common = {"run_id": "synthetic-run", "config_hash": "c0ffee", "model": "synthetic-model",
              "hook_point": "hook_in", "position": "prefix0", "alpha_scale": "mean_diff",
              "direction_method": "contrastive_prefix", "seed": 0}  # fmt: skip
    rows: list[dict[str, Any]] = []
    prompts = [_prompt_row(s, i) for s in (*FAMILIES, *benchmarks) for i in range(n_per_split)]
    for p in prompts:
        base = {**common, **p, "experiment": "baseline", "case_id": "baseline", "layer": -1,
                "intervention": "none", "alpha": 0.0, "direction_variant": "none"}  # fmt: skip
        rows.append(_scored(rng, base, _refusal_prob(p["split"], -1, "none", 0.0)))
    for layer in layers:
        for intervention in INTERVENTIONS:
            for alpha in alphas:
                collapse = 0.6 if (layer >= 8 and alpha >= 2.0) else 0.0
                for p in prompts:
                    base = {**common, **p, "experiment": "sweep", "layer": layer,
                            "case_id": f"layer{layer}-{intervention}-a{alpha:g}",
                            "intervention": intervention, "alpha": alpha,
                            "direction_variant": "main"}  # fmt: skip
                    prob = _refusal_prob(p["split"], layer, intervention, alpha)
                    rows.append(_scored(rng, base, prob, collapse=collapse, kl=0.1 * alpha))
    sanity = {**common, "split": "", "prompt_id": "", "layer": 8, "intervention": "add",
              "alpha": 1.0, "direction_variant": "main"}  # fmt: skip
    rows.append({**sanity, "experiment": "sanity:alpha0", "case_id": "alpha0", "value": 0.0,
                 "passed": True, "extra_json": json.dumps({"max_abs_diff": 0.0})})  # fmt: skip
    rows.append({**sanity, "experiment": "sanity:ablation_projection", "case_id": "ablate",
                 "value": 0.31, "passed": False, "extra_json": "{}"})  # fmt: skip
    for p in prompts[n_per_split : 2 * n_per_split]:
        base = {**common, **p, "experiment": "sanity:random_direction", "layer": 8,
                "case_id": "layer8-add-a1-random", "intervention": "add", "alpha": 1.0,
                "direction_variant": "random"}  # fmt: skip
        rows.append(_scored(rng, base, 0.1))
    return rows


def write_run(run_dir: Path, rows: list[dict[str, Any]] | None = None) -> Path:
    """Write results.parquet and run.json into run_dir; return run_dir."""
    run_dir.mkdir(parents=True, exist_ok=True)
    table = rows_to_table(synthetic_rows() if rows is None else rows)
    pq.write_table(table, run_dir / "results.parquet")
    info = {
        "run_id": "synthetic-run",
        "config": {
            "model": {"name": "synthetic-model"},
            "sweep": {"layers": list(LAYERS), "alphas": list(ALPHAS),
                      "interventions": list(INTERVENTIONS)},
            "direction": {"alpha_scale": "mean_diff"},
        },
        "seeds": {"global": 0},
        "versions": {"python": "3.x"},
    }  # fmt: skip
    (run_dir / "run.json").write_text(json.dumps(info, indent=2, sort_keys=True), encoding="utf-8")
    return run_dir


def test_synthetic_rows_fit_the_schema(tmp_path: Path) -> None:
    write_run(tmp_path)
    table = pq.read_table(tmp_path / "results.parquet")
    assert table.schema.equals(ROW_SCHEMA)
    assert tuple(table.column_names) == COLUMNS
    assert table.num_rows == len(synthetic_rows())
