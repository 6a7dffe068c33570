"""The refusal-direction pipeline of Arditi et al. (2024) on the configured model.

`pytest experiments -m refusal_direction -n auto`: difference-in-means candidates at every layer
x post-instruction position (selection and means from *select* prompts), a scan case per layer
(`-k layer8` selects layer 8's), the selection, the evaluation settings on *report* prompts
(all-layer ablation, activation addition) with CE, and the weight-orthogonalised export checked
against hook ablation. Files land in `<run>/refusal_direction/`; the report adds the table.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from steering_reliability.atomic import atomic_write, atomic_write_json
from steering_reliability.config import Config
from steering_reliability.directions.direction import cosine
from steering_reliability.errors import ConfigError
from steering_reliability.generation import teacher_forced_scores
from steering_reliability.metrics import refusal_token_ids
from steering_reliability.models.loader import layer_count
from steering_reliability.pytest_plugin import run_config
from steering_reliability.studies.refusal_direction import pipeline as rd
from steering_reliability.studies.shared import (
    eval_splits,
    file_parts,
    generate_for,
    report_indices,
    score_rows,
)

pytestmark = [pytest.mark.refusal_direction, pytest.mark.experiment]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """A scan case per candidate layer (`-k layer8`), and the evaluation settings (with the
    base model's direction when the model is an organism)."""
    if not {"rd_layer", "rd_setting"} & set(metafunc.fixturenames):
        return
    cfg = run_config(metafunc.config)
    if "rd_layer" in metafunc.fixturenames:
        layers = rd.candidate_layers(layer_count(cfg.model.name), cfg.direction.hook_point)
        metafunc.parametrize("rd_layer", layers, ids=[f"layer{i}-scan" for i in layers])
    if "rd_setting" in metafunc.fixturenames:
        metafunc.parametrize("rd_setting", rd.settings_for(cfg.model.name))


EXPERIMENT = "refusal_direction"


@pytest.fixture(scope="session")
def rd_prompts(sr_config: Config, sr_run: Any) -> rd.PipelinePrompts:
    prompts = rd.pipeline_prompts(sr_config)
    sr_run.annotate("refusal_direction_prompts", _ids(prompts))
    return prompts


def _ids(prompts: rd.PipelinePrompts) -> dict[str, list[str]]:
    return {role: [p.id for p in getattr(prompts, role)] for role in rd.PROMPT_ROLES}


@pytest.fixture(scope="session")
def rd_candidates(sr_config: Config, model: Any, rd_prompts: rd.PipelinePrompts) -> dict[Any, Any]:
    return rd.candidates(model, sr_config, rd_prompts, rd.positions(model, sr_config))


@pytest.fixture(scope="session")
def rd_folder(sr_run: Any) -> Path:
    folder = Path(sr_run.run_dir) / "refusal_direction"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def rd_table(
    sr_config: Config, model: Any, rd_candidates: dict[Any, Any], rd_prompts: Any, rd_folder: Path
) -> Any:
    """Every layer's scan table in one (from the per-layer cache), written to the run as
    candidates.parquet."""
    import pandas as pd

    table = pd.concat(
        [rd.scan_layer(model, sr_config, rd_candidates, layer, rd_prompts)
         for layer in rd.candidate_layers(model.info.n_layers, sr_config.direction.hook_point)],
        ignore_index=True,
    )  # fmt: skip
    atomic_write(rd_folder / "candidates.parquet", lambda fh: table.to_parquet(fh, index=False))
    return table


@pytest.fixture(scope="session")
def rd_selection(
    sr_config: Config,
    rd_table: Any,
    rd_candidates: dict[Any, Any],
    rd_prompts: Any,
    rd_folder: Path,
) -> tuple[Any, dict[str, Any]]:
    """The selected direction (None when no candidate passed selection) and the terms of the
    selection: its criterion, thresholds and what looser ablation-KL bounds would take, with the
    direction's site and scores, or the reason none passed. Writes direction.pt and
    direction_metadata.json into the run when one was selected."""
    import torch

    table, cfg = rd_table, sr_config.refusal_direction
    terms = {"criterion": rd.criterion(table),
             "thresholds": {"kl_max": cfg.kl_max, "max_layer_frac": cfg.max_layer_frac,
                            "must_induce": True, "bypass_needs_refusing": rd.MIN_REFUSING},
             "frontier": rd.frontier(table, sr_config)}  # fmt: skip
    try:
        row, _ = rd.select(table, sr_config)  # ranked by terms["criterion"]
    except ConfigError as exc:
        return None, {"reason": str(exc), **terms}
    chosen = rd_candidates[(int(row["layer"]), int(row["position"]))]
    meta = rd.direction_metadata(
        chosen,
        scores={k: _plain(row[k]) for k in ("induce_score", "bypass_score", "ablation_kl", "addition_kl",
                                            "baseline_refusal_prob_benign", "n_refusing_baseline")},
        **terms,
        prompts=_ids(rd_prompts),
    )  # fmt: skip
    atomic_write(rd_folder / "direction.pt", lambda fh: torch.save(chosen.vector.clone(), fh))
    atomic_write_json(rd_folder / "direction_metadata.json", meta)
    return chosen, meta


@pytest.fixture(scope="session")
def rd_base_direction(sr_config: Config, rd_prompts: Any, rd_selection: Any) -> Any:
    """On a model organism with a selected direction: a function that gives its base model's
    direction at the same layer and position (`refusal_direction.base_direction`), computed
    once, by the case that needs it, so that only that case fails if it cannot be made."""
    import functools

    @functools.cache
    def make() -> Any:
        return rd.base_direction(sr_config, rd_prompts, rd_selection[0])

    return make


@pytest.fixture
def rd_selected(rd_selection: tuple[Any, dict[str, Any]]) -> tuple[Any, dict[str, Any]]:
    """The selected direction; the cases that need one skip when selection found none."""
    if rd_selection[0] is None:
        pytest.skip(f"inconclusive: no direction selected: {rd_selection[1]['reason']}")
    return rd_selection


def _plain(value: Any) -> Any:
    """A plain JSON value: numpy scalars unwrapped, NaN (e.g. no bypass measured) as null."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and value != value else value


def _row(cfg: Config, model: Any, **fields: Any) -> dict[str, Any]:
    """A non-prompt row of this experiment."""
    return {"experiment": EXPERIMENT,
            "model": model.info.name, "split": "", "prompt_id": "", "hook_point": cfg.direction.hook_point,
            "direction_method": "diff_in_means", "alpha_scale": "raw", "seed": cfg.seed, **fields}  # fmt: skip


def test_scan(
    rd_layer: int,
    record: Any,
    sr_config: Config,
    sr_run: Any,
    model: Any,
    rd_candidates: dict[Any, Any],
    rd_prompts: Any,
) -> None:
    """One layer's candidates: induce (first-token refusal probability under +v on harmless
    select prompts), bypass (its drop under all-layer ablation on harmful select prompts that
    refuse at baseline; empty when none does) and the KL on the harmless prompts under that
    ablation (`extra_json`, the one selection bounds) and under +v (`kl_to_baseline`)."""
    table = rd.scan_layer(model, sr_config, rd_candidates, rd_layer, rd_prompts)
    assert len(table) == len([k for k in rd_candidates if k[0] == rd_layer]) > 0
    assert table[["ablation_kl", "addition_kl"]].ge(0).all().all()
    assert table["induce_score"].between(0, 1).all()
    record.rows(
        _row(sr_config, model, experiment=f"{EXPERIMENT}:scan",
             case_id=f"layer{rd_layer}-scan", layer=rd_layer, position=str(r["position"]),
             intervention="add", alpha=1.0, direction_variant=f"pos{r['position']}",
             value=r["induce_score"], first_token_refusal_prob=r["induce_score"],
             kl_to_baseline=r["addition_kl"],
             extra_json=json.dumps({k: _plain(r[k]) for k in ("ablation_kl", "bypass_score", "n_refusing_baseline",
                                    "baseline_refusal_prob_benign", "norm", "split_half_cosine")},
                                   default=float))
        for r in table.to_dict("records")
    )  # fmt: skip


def test_select(record: Any, sr_config: Config, model: Any, rd_selection: Any) -> None:
    """The selected candidate, with its scores and thresholds; inconclusive (skipped, with the
    reason and what looser ablation-KL bounds would take in its row) when no candidate passes the
    KL bound, the layer cut-off and the induce filter, so the settings that need a direction are
    not run."""
    chosen, meta = rd_selection
    if chosen is None:
        record.rows([_row(sr_config, model, experiment=f"{EXPERIMENT}:select", case_id="rd-select",
                          layer=-1, intervention="", alpha=0.0, direction_variant="rd",
                          verdict="inconclusive", extra_json=json.dumps(meta))])  # fmt: skip
        pytest.skip(f"inconclusive: {meta['reason']}")
    record.rows([_row(sr_config, model, experiment=f"{EXPERIMENT}:select",
                      case_id="rd-select", layer=chosen.layer, position=chosen.position,
                      intervention="", alpha=0.0, direction_variant="rd",
                      value=meta["scores"][f"{meta['criterion']}_score"],
                      extra_json=json.dumps(meta, default=float))])  # fmt: skip


def _report(cfg: Config, splits: dict[str, Any], split: str) -> list[int]:
    """Indices of the split's report-part prompts this pipeline evaluates (the first n_eval)."""
    return report_indices(cfg, splits[split], split)[: cfg.refusal_direction.n_eval]


def test_evaluate(
    rd_setting: str,
    record: Any,
    sr_config: Config,
    sr_run: Any,
    model: Any,
    splits: dict[str, Any],
    baseline: dict[str, list[Any]],
    rd_selection: Any,
    rd_base_direction: Any,
) -> None:
    """One setting on *report* prompts: generations (substring refusal, first-token refusal
    probability), CE and KL on the baseline's own benign completions, and CE on the general text.
    The baseline's prompt rows are test_baseline's; its case adds the unsteered CE on the same
    completions and on the text. On a model organism, `ablation_base` ablates the base model's
    direction instead of the organism's, and records the two directions' cosine."""
    cfg = sr_config
    chosen, meta = rd_selection
    if rd_setting != "baseline" and chosen is None:
        pytest.skip(f"inconclusive: no direction selected: {meta['reason']}")
    hooks, variant = rd_setting, "rd"
    rows: list[dict[str, Any]] = []
    if rd_setting == rd.BASE_SETTING:
        hooks, variant, base_direction = "ablation", "base", rd_base_direction()
        rows.append(_row(cfg, model, experiment=f"{EXPERIMENT}:base_direction", case_id=f"rd-{rd_setting}",
                         layer=chosen.layer, position=chosen.position, intervention="", alpha=0.0,
                         direction_variant=variant, value=cosine(base_direction.vector, chosen.vector),
                         extra_json=json.dumps({"base_model": rd.base_model_name(cfg.model.name),
                                                "base_norm": base_direction.norm, "norm": chosen.norm,
                                                "frozen_below": rd.frozen_blocks(model)})))  # fmt: skip
        chosen = base_direction
    site = (
        {"layer": -1, "position": ""}
        if chosen is None
        else {"layer": chosen.layer, "position": chosen.position}
    )
    for split in eval_splits(cfg):  # the benchmarks too: does the bypass carry to them?
        idx = _report(cfg, splits, split)
        prompts = [splits[split][i] for i in idx]
        if rd_setting == "baseline" and split != "benign":
            continue  # test_baseline's rows are the baseline
        with rd.setting(model, hooks, chosen, harmful=split != "benign") as steerings:
            gens = None
            if rd_setting != "baseline":
                gens = generate_for(model, cfg, prompts, steerings,
                                    track_token_ids=refusal_token_ids(model.tokenizer))  # fmt: skip
            tf = None
            if split == "benign":  # CE / KL on the unsteered model's own completions
                tf = teacher_forced_scores(
                    model, [p.prompt for p in prompts], [baseline[split][i].token_ids for i in idx],
                    prompt_ids=[p.id for p in prompts], steerings=steerings,
                    system_prompt=cfg.model.system_prompt,
                )  # fmt: skip
        if gens is None:  # the baseline: only its CE on the completions
            rows += [_row(cfg, model, experiment=f"{EXPERIMENT}:ce_baseline", case_id="rd-baseline",
                          split=split, prompt_id=p.id, intervention="baseline", alpha=0.0,
                          direction_variant="rd", ce_on_baseline=t.ce, **site)
                     for p, t in zip(prompts, tf or [], strict=True)]  # fmt: skip
            continue
        alpha = 1.0 if hooks == "ablation" or split == "benign" else -1.0
        for r in score_rows(cfg=cfg, model=model, run_id=sr_run.run_id, experiment=EXPERIMENT,
                            case=f"rd-{rd_setting}", split=split, prompts=prompts, gens=gens,
                            intervention=rd_setting, alpha=alpha, direction_variant=variant,
                            teacher_forced=tf, layer=site["layer"]):  # fmt: skip
            rows.append({**r, **site, "direction_method": "diff_in_means", "alpha_scale": "raw"})
    # CE on the general text: actadd subtracts v (its bypass form) on every token.
    text = rd.read_text(cfg.resolve_path(cfg.refusal_direction.ce_text))
    with rd.setting(model, hooks, chosen, harmful=True) as steerings:
        ce, n_tokens = rd.text_ce(model, text, steerings)
    rows.append(_row(cfg, model, experiment=f"{EXPERIMENT}:ce_text", case_id=f"rd-{rd_setting}",
                     intervention=rd_setting, alpha=0.0, direction_variant=variant, value=ce,
                     extra_json=json.dumps({"text": cfg.refusal_direction.ce_text,
                                            "n_tokens": n_tokens}), **site))  # fmt: skip
    record.rows(rows)


def test_orthogonalized_weights_equal_hook_ablation(
    record: Any,
    sr_config: Config,
    model: Any,
    splits: dict[str, Any],
    rd_selected: tuple[Any, Any],
    rd_folder: Path,
) -> None:
    """The exported orthogonalised checkpoint, loaded back with from_pretrained, computes
    all-layer hook ablation: its next-token logits on report prompts of harm_test are within
    1e-4 of the largest logit of the hooks' (`refusal_direction.orthogonal_verdict`)."""
    cfg, (chosen, _) = sr_config, rd_selected
    folder, exported = rd.export_orthogonalized(model, chosen)
    link = rd_folder / "orthogonalized"
    if link.is_symlink() or not link.exists():  # the run points at the cached checkpoint
        link.unlink(missing_ok=True)
        link.symlink_to(os.path.relpath(folder, link.parent), target_is_directory=True)
    parts = file_parts(cfg)["harm_test"]
    prompts = [p.prompt for p in splits["harm_test"] if parts.get(p.id) == "report"]
    v = rd.orthogonal_verdict(model, exported, chosen, prompts[: cfg.refusal_direction.n_orthogonal_check],
                              system_prompt=cfg.model.system_prompt)  # fmt: skip
    record.rows([_row(cfg, model, experiment="sanity:orthogonalized_equals_ablation",
                      case_id="rd-orthogonalized", layer=chosen.layer, position=chosen.position,
                      intervention="orthogonalize", alpha=1.0, direction_variant="rd",
                      value=v.value, passed=v.passed, verdict=v.verdict,
                      extra_json=json.dumps({"reason": v.reason, "checkpoint": str(folder), **v.details}))])  # fmt: skip
    if v.verdict == "failed":
        pytest.fail(v.reason, pytrace=False)
