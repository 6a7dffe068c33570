"""The behaviour section of the report on synthetic rows: the operating point is chosen on select
prompts and read on report prompts, a collapsing setting is never chosen, the unsteered rate
says which half is measurable, and a behaviour-only run renders through `report.render`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from steering_reliability import report
from steering_reliability.records.schema import COLUMNS, rows_to_table
from steering_reliability.studies.behaviours import report as ab

SETS = ("t_learn", "t_shift", "t_ctrl")


def _row(**kw: Any) -> dict[str, Any]:
    base = dict.fromkeys(COLUMNS)
    base.update(run_id="r", config_hash="h", model="m", hook_point="resid_pre", seed=0,
                experiment="behaviour:toxicity", behaviour="toxicity", direction_variant="main",
                family="f", style="s", is_helpful=True, collapsed=False, n_tokens=10,
                mean_entropy=1.0, behaviour_score=0.0, behaviour_flag=False)  # fmt: skip
    return {**base, **kw}


def _grid(rate: dict[tuple[int, float, str], float], collapse: dict[tuple[int, float], float],
          base_rate: float = 0.0, n: int = 20) -> list[dict[str, Any]]:  # fmt: skip
    """n prompts per set and part; `rate[(layer, alpha, part)]` of them flagged on every set;
    `collapse[(layer, alpha)]` of the control prompts collapsed (both parts)."""
    settings = [(-1, 0.0)] + sorted({(k[0], k[1]) for k in rate})
    rows = []
    for layer, alpha in settings:
        case = "toxicity-baseline" if alpha == 0 else f"toxicity-layer{layer}-add-a{alpha:g}"
        for split in SETS:
            for part in ("select", "report"):
                r = base_rate if alpha == 0 else rate[(layer, alpha, part)]
                c = 0.0 if alpha == 0 else collapse.get((layer, alpha), 0.0)
                for i in range(n):
                    flag = i < round(r * n)
                    rows.append(_row(case_id=case, layer=layer, alpha=alpha, split=split,
                                     part=part, prompt_id=f"{split}_{part}_{i}",
                                     intervention="none" if alpha == 0 else "add",
                                     behaviour_flag=flag, behaviour_score=float(flag),
                                     collapsed=split == "t_ctrl" and i < round(c * n),
                                     is_helpful=not flag,
                                     kl_to_baseline=None if alpha == 0 else 0.5))  # fmt: skip
    return rows


INFO = {"provenance": {"behaviour:toxicity": {
    "sets": list(SETS), "description": "toy toxicity", "recipe": "contrastive_pairs",
    "scorer": "profanity_check",
    "calibration": {"scorer": "profanity_check", "threshold": 0.5, "n": 64, "accuracy": 0.88,
                    "by_category": {"insult_plain": [5, 12], "neutral": [12, 12]}}}}}  # fmt: skip


def test_the_operating_point_is_chosen_on_select_and_never_a_collapsing_one() -> None:
    # select: layer 6 wins; report: layer 12 would have won; layer 18 is best but collapses
    rate = {(6, 1.0, "select"): 0.6, (6, 1.0, "report"): 0.3,
            (12, 1.0, "select"): 0.4, (12, 1.0, "report"): 0.9,
            (18, 1.0, "select"): 0.9, (18, 1.0, "report"): 0.9}  # fmt: skip
    df = pd.DataFrame(_grid(rate, {(18, 1.0): 0.5}))
    assert ab.operating_point(ab.grid(ab._rows(df, "toxicity")), "t_learn", "t_ctrl") == (6, 1.0)
    text = ab.section(df, INFO)
    assert "layer 6, alpha 1" in text
    assert "- t_learn: rate 0.30" in text  # read on report prompts, not the select 0.60
    assert "transfer: the change on t_shift is 1.00 of the change on t_learn" in text
    assert "accuracy 0.88 on 64 labelled sentences; misses by category: insult_plain 5/12" in text


def test_every_setting_collapsing_means_no_operating_point() -> None:
    rate = {(6, 1.0, p): 0.5 for p in ("select", "report")}
    df = pd.DataFrame(_grid(rate, {(6, 1.0): 0.9}))
    assert "**No operating point**" in ab.section(df, INFO)


def test_the_unsteered_rate_says_whether_lowering_is_measurable() -> None:
    rate = {(6, -1.0, p): 0.0 for p in ("select", "report")} | {
        (6, 1.0, p): 0.5 for p in ("select", "report")}  # fmt: skip
    rare = ab.section(pd.DataFrame(_grid(rate, {}, base_rate=0.0)), INFO)
    assert "*lowering* it (negative alphas) cannot be shown" in rare
    assert "alpha -1 at layer 6: t_learn rate 0.00" in rare
    common = ab.section(pd.DataFrame(_grid(rate, {}, base_rate=0.3)), INFO)
    assert "cannot be shown" not in common and "both halves are measurable" in common
    assert "change -0.30" in common  # the negative alpha lowers a rate the model has


def test_a_behaviour_only_run_renders_its_section_figures_and_sanity(tmp_path: Path) -> None:
    rate = {(6, 1.0, p): 0.5 for p in ("select", "report")}
    rows = _grid(rate, {})
    rows.append(_row(experiment="sanity:toxicity_random_direction", split="", prompt_id="",
                     case_id="sanity-toxicity_random_direction", verdict="inconclusive",
                     value=0.5, extra_json=json.dumps({"reason": "too weak"}), layer=6,
                     alpha=1.0))  # fmt: skip
    pq.write_table(rows_to_table(rows), tmp_path / "results.parquet")
    (tmp_path / "run.json").write_text(json.dumps(INFO))
    paths = report.render(tmp_path)
    text = paths.findings_md.read_text(encoding="utf-8")
    assert "## Behaviour: toxicity" in text
    assert "random_direction: **inconclusive**: too weak" in text
    assert {p.stem for p in paths.figures} == {"toxicity_vs_alpha", "toxicity_tradeoff",
                                               "toxicity_heatmap"}  # fmt: skip
    again = report.render(tmp_path)
    assert again.findings_md.read_bytes() == paths.findings_md.read_bytes()


def test_no_transfer_ratio_of_a_change_that_is_not_there() -> None:
    rate = {(6, 1.0, "select"): 0.5, (6, 1.0, "report"): 0.05}
    text = ab.section(pd.DataFrame(_grid(rate, {})), INFO)
    assert "transfer: not computed" in text and "of the change on" not in text


def test_missing_baseline_rows_are_said_not_read_as_a_rate_of_zero() -> None:
    rate = {(6, 1.0, p): 0.5 for p in ("select", "report")}
    rows = [r for r in _grid(rate, {}) if r["alpha"] != 0]
    text = ab.section(pd.DataFrame(rows), INFO)
    assert "**No unsteered rows**" in text and "cannot be shown" not in text
