"""The generalisation map's report on synthetic rows: the transfer matrix and its in-family vs
out-of-family comparison, the steerability table, the equal-KL table, and a map-only run
rendered through `report.render` (findings section and figures)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from steering_reliability import report
from steering_reliability.records.schema import COLUMNS, rows_to_table
from steering_reliability.studies.generalisation import report as ga

FAMS = ("fam_a", "fam_b", "fam_c")


def _row(**kw: Any) -> dict[str, Any]:
    base = dict.fromkeys(COLUMNS)
    base.update(run_id="r", config_hash="h", model="m", hook_point="resid_pre", seed=0,
                layer=12, alpha=0.0, intervention="", direction_variant="", case_id="",
                split="", prompt_id="", part="", direction_method="diff_in_means")  # fmt: skip
    return {**base, **kw}


def _transfer(own_hits: bool) -> list[dict[str, Any]]:
    """4 harm_train prompts per family and 4 benign; a family direction refuses every prompt of
    its own family and none of the others when `own_hits`, and the reverse otherwise."""
    rows = []
    for src in ("none", "pooled", *FAMS):
        for i in range(12):
            fam = FAMS[i % 3]
            refused = src not in ("none", "pooled") and ((src == fam) == own_hits)
            rows.append(_row(experiment="generalisation:transfer", case_id=f"transfer-{src}",
                             split="harm_train", part="report", prompt_id=f"h{i}", family=fam,
                             style="direct", direction_variant=src, is_refusal=refused,
                             collapsed=False, intervention="add" if src != "none" else "none",
                             alpha=1.0 if src != "none" else 0.0))  # fmt: skip
        for i in range(4):
            rows.append(_row(experiment="generalisation:transfer", case_id=f"transfer-{src}",
                             split="benign", part="report", prompt_id=f"b{i}", family="topic",
                             style="everyday", direction_variant=src, is_refusal=False,
                             collapsed=False, intervention="add", alpha=1.0))  # fmt: skip
    return rows


def test_in_family_vs_out_of_family_reads_the_diagonal() -> None:
    diag = pd.DataFrame(_transfer(own_hits=True))
    own, other, d, n = ga.in_vs_out(diag, "harm_train")
    assert (own.value, other.value, d.value, n) == (1.0, 0.0, 1.0, 12) and d.excludes(0.0)
    off = pd.DataFrame(_transfer(own_hits=False))
    own, other, d, _ = ga.in_vs_out(off, "harm_train")
    assert (own.value, other.value) == (0.0, 1.0) and d.value == -1.0
    m = ga.transfer_matrix(diag)
    assert list(m.index) == ["none", "pooled", *FAMS]
    assert (
        m.loc["fam_b", ("harm_train", "fam_b")] == 1.0
        and m.loc["fam_b", ("harm_train", "fam_a")] == 0.0
    )
    assert "in-family higher" in ga.section(diag)
    # the unsteered rows never refuse: only inducing refusal can be shown
    assert "Measurable on this model: **induce only**" in ga.section(diag)


def _others() -> list[dict[str, Any]]:
    rows = []
    for split in ("harm_train", "benign"):
        for i in range(6):
            slope = -0.5 if i == 0 else 1.0 + i  # one anti-steerable prompt per split
            rows.append(_row(experiment="generalisation:steerability", case_id=f"steerability-{split}",
                             split=split, part="report", prompt_id=f"{split}{i}", family=FAMS[i % 3],
                             intervention="add", value=slope, direction_variant="main",
                             extra_json=json.dumps({"alphas": [-1, 0, 1], "log_odds": [0, 0, 0]})))  # fmt: skip
    cos = [[1.0, 0.5, 0.2], [0.5, 1.0, 0.1], [0.2, 0.1, 1.0]]
    for layer in (6, 12):
        rows.append(_row(experiment="generalisation:geometry", case_id=f"layer{layer}-families",
                         layer=layer, direction_variant="diff_in_means/families", value=0.6,
                         extra_json=json.dumps({"method": "diff_in_means", "families": list(FAMS),
                                                "cosines": cos, "axis_shares": [0.6, 0.3, 0.1],
                                                "consistency_all": 0.1})))  # fmt: skip
        for j, fam in enumerate(FAMS):
            rows.append(_row(experiment="generalisation:family", case_id=f"layer{layer}-families",
                             layer=layer, direction_variant=f"diff_in_means/{fam}", value=5.0,
                             extra_json=json.dumps({"family": fam, "method": "diff_in_means",
                                                    "n_prompts": 10, "norm": 5.0,
                                                    "split_half_cosine": 0.4, "bootstrap_cosine": 0.9,
                                                    "bootstrap_cosine_lo": 0.7, "bootstrap_cosine_hi": 0.95,
                                                    "consistency": 0.1 * (j + 1),
                                                    "cosine_to_pooled": 0.8})))  # fmt: skip
    rows.append(_row(experiment="generalisation:angles", case_id="principal-angles",
                     direction_variant="diff_in_means/layer6-vs-layer12", value=70.0,
                     extra_json=json.dumps({"angles_deg": [60.0, 80.0], "k": 3, "axes": [2, 2],
                                            "share": 0.9})))  # fmt: skip
    for budget, status in ((0.5, "found"), (2.0, "unreachable")):
        alpha = 0.7 if status == "found" else None
        rows.append(_row(experiment="generalisation:calibration", case_id="layer12-add",
                         intervention="add", alpha=alpha or 0.0, direction_variant=f"kl{budget:g}",
                         value=budget if alpha else 1.1,
                         extra_json=json.dumps({"budget": budget, "alpha": alpha, "cost": 1.1,
                                                "status": status, "curve": []})))  # fmt: skip
    for i in range(12):
        rows.append(_row(experiment="generalisation:equal_kl", case_id="layer12-add-kl0.5",
                         split="harm_train", part="report", prompt_id=f"h{i}", family=FAMS[i % 3],
                         intervention="add", alpha=0.7, direction_variant="kl0.5",
                         is_refusal=i % 2 == 0, collapsed=False))  # fmt: skip
    return rows


def test_section_tables_and_a_map_only_run_renders(tmp_path: Path) -> None:
    rows = _transfer(own_hits=True) + _others()
    df = pd.DataFrame(rows)
    table = ga.steerability_table(df)
    train_all = next(r for r in table if r[:2] == ["harm_train", "all"])
    assert train_all[2] == "6" and train_all[4].startswith("0.17")  # 1 of 6 anti-steerable
    assert not any(r[0] == "benign" and r[1] != "all" for r in table)  # no per-topic benign rows
    text = ga.section(df)
    assert "out of reach (max 1.10)" in text and "| layer 12 | add | 0.5 | 0.7 |" in text
    assert "Spearman rho" in text and "60, 80" in text
    pq.write_table(rows_to_table(rows), tmp_path / "results.parquet")
    paths = report.render(tmp_path)
    assert "## What generalises" in paths.findings_md.read_text(encoding="utf-8")
    stems = {p.stem for p in paths.figures}
    assert stems == {"generalisation_transfer", "generalisation_geometry", "generalisation_angles",
                     "generalisation_steerability", "generalisation_equal_kl"}  # fmt: skip
