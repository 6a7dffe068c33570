"""The refusal-direction pipeline of Arditi et al. (2024) on the configured model.

`pytest experiments -m refusal_direction -n auto`: difference-in-means candidates at every layer
x post-instruction position (selection and means from *select* prompts), a scan case per layer
(`-k layer8` selects layer 8's), the selection, the evaluation settings on *report* prompts
(all-layer ablation, activation addition) with CE, and the weight-orthogonalised export checked
against hook ablation. Files land in `<run>/refusal_direction/`; the report adds the table.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from steering_reliability import refusal_direction as rd
from steering_reliability.config import Config, config_hash
from steering_reliability.experiment import SPLITS, score_rows

pytestmark = [pytest.mark.refusal_direction, pytest.mark.experiment]

EXPERIMENT = "refusal_direction"


@pytest.fixture(scope="session")
def rd_prompts(sr_config: Config, sr_run: Any) -> rd.PipelinePrompts:
    prompts = rd.pipeline_prompts(sr_config)
    sr_run.annotate("refusal_direction_prompts", {name: [p.id for p in getattr(prompts, name)]
                    for name in ("harmful", "harmless", "harmful_val", "harmless_val")})  # fmt: skip
    return prompts


@pytest.fixture(scope="session")
def rd_candidates(sr_config: Config, model: Any, rd_prompts: rd.PipelinePrompts) -> dict[Any, Any]:
    return rd.candidates(model, sr_config, rd_prompts, rd.positions(model, sr_config))


@pytest.fixture(scope="session")
def rd_folder(sr_run: Any) -> Path:
    folder = Path(sr_run.run_dir) / "refusal_direction"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def rd_selected(
    sr_config: Config, model: Any, rd_candidates: dict[Any, Any], rd_prompts: Any, rd_folder: Path
) -> tuple[Any, dict[str, Any]]:
    """The selected direction and its metadata; writes candidates.parquet, direction.pt and
    direction_metadata.json into the run (the scan tables come from the per-layer cache)."""
    import pandas as pd
    import torch

    from steering_reliability.atomic import atomic_write, atomic_write_json

    table = pd.concat(
        [rd.scan_layer(model, sr_config, rd_candidates, layer, rd_prompts)
         for layer in rd.candidate_layers(model.info.n_layers, sr_config.direction.hook_point)],
        ignore_index=True,
    )  # fmt: skip
    row, by = rd.select(table, sr_config)
    chosen = rd_candidates[(int(row["layer"]), int(row["position"]))]
    meta = rd.direction_metadata(
        chosen,
        criterion=by,
        scores={k: _plain(row[k]) for k in ("induce_score", "bypass_score", "kl",
                                            "baseline_refusal_prob_benign", "n_refusing_baseline")},
        thresholds={"kl_max": sr_config.refusal_direction.kl_max,
                    "max_layer_frac": sr_config.refusal_direction.max_layer_frac,
                    "must_induce": True, "bypass_needs_refusing": rd.MIN_REFUSING},
        prompts={name: [p.id for p in getattr(rd_prompts, name)]
                 for name in ("harmful", "harmless", "harmful_val", "harmless_val")},
    )  # fmt: skip
    atomic_write(rd_folder / "candidates.parquet", lambda fh: table.to_parquet(fh, index=False))
    atomic_write(rd_folder / "direction.pt", lambda fh: torch.save(chosen.vector.clone(), fh))
    atomic_write_json(rd_folder / "direction_metadata.json", meta)
    return chosen, meta


def _plain(value: Any) -> Any:
    """A plain JSON value: numpy scalars unwrapped, NaN (e.g. no bypass measured) as null."""
    value = value.item() if hasattr(value, "item") else value
    return None if isinstance(value, float) and value != value else value


def _row(cfg: Config, run_id: str, model: Any, **fields: Any) -> dict[str, Any]:
    """A non-prompt row of this experiment."""
    return {"run_id": run_id, "config_hash": config_hash(cfg), "experiment": EXPERIMENT,
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
    refuse at baseline; empty when none does) and KL on the harmless prompts."""
    table = rd.scan_layer(model, sr_config, rd_candidates, rd_layer, rd_prompts)
    assert len(table) == len([k for k in rd_candidates if k[0] == rd_layer]) > 0
    assert table["kl"].ge(0).all() and table["induce_score"].between(0, 1).all()
    record.rows(
        _row(sr_config, sr_run.run_id, model, experiment=f"{EXPERIMENT}:scan",
             case_id=f"layer{rd_layer}-scan", layer=rd_layer, position=str(r["position"]),
             intervention="add", alpha=1.0, direction_variant=f"pos{r['position']}",
             value=r["induce_score"], first_token_refusal_prob=r["induce_score"],
             kl_to_baseline=r["kl"],
             extra_json=json.dumps({k: _plain(r[k]) for k in ("bypass_score", "n_refusing_baseline",
                                    "baseline_refusal_prob_benign", "norm", "split_half_cosine")},
                                   default=float))
        for r in table.to_dict("records")
    )  # fmt: skip


def test_select(
    record: Any, sr_config: Config, sr_run: Any, model: Any, rd_selected: tuple[Any, Any]
) -> None:
    """The selected candidate: it passed the KL bound, the layer cut-off and the induce filter."""
    chosen, meta = rd_selected
    rdc = sr_config.refusal_direction
    assert meta["scores"]["kl"] <= rdc.kl_max
    assert chosen.layer < rdc.max_layer_frac * model.info.n_layers
    record.rows([_row(sr_config, sr_run.run_id, model, experiment=f"{EXPERIMENT}:select",
                      case_id="rd-select", layer=chosen.layer, position=chosen.position,
                      intervention="", alpha=0.0, direction_variant="rd",
                      value=meta["scores"][f"{meta['criterion']}_score"],
                      extra_json=json.dumps(meta, default=float))])  # fmt: skip


@pytest.mark.parametrize("rd_setting", rd.SETTINGS)
def test_evaluate(
    rd_setting: str,
    record: Any,
    sr_config: Config,
    sr_run: Any,
    model: Any,
    splits: dict[str, Any],
    baseline: dict[str, list[Any]],
    rd_selected: tuple[Any, Any],
) -> None:
    """One setting on *report* prompts: generations (substring refusal, first-token refusal
    probability), CE and KL on the baseline's own benign completions, and CE on the general text.
    The baseline's prompt rows are test_baseline's; this case adds its CE on the text."""
    from steering_reliability.experiment import file_parts, generate_for
    from steering_reliability.generation import teacher_forced_scores
    from steering_reliability.metrics import refusal_token_ids

    cfg, (chosen, _) = sr_config, rd_selected
    parts = file_parts(cfg)
    text = rd.read_text(cfg.resolve_path(cfg.refusal_direction.ce_text))
    rows: list[dict[str, Any]] = []
    for split in SPLITS if rd_setting != "baseline" else ():
        idx = [i for i, p in enumerate(splits[split]) if parts[split].get(p.id) == "report"]
        idx = idx[: cfg.refusal_direction.n_eval]
        prompts = [splits[split][i] for i in idx]
        with rd.setting(model, rd_setting, chosen, harmful=split != "benign") as steerings:
            gens = generate_for(model, cfg, prompts, steerings,
                                track_token_ids=refusal_token_ids(model.tokenizer))  # fmt: skip
            tf = None
            if split == "benign":
                tf = teacher_forced_scores(
                    model, [p.prompt for p in prompts], [baseline[split][i].token_ids for i in idx],
                    prompt_ids=[p.id for p in prompts], steerings=steerings,
                    system_prompt=cfg.model.system_prompt,
                )  # fmt: skip
        alpha = 1.0 if rd_setting == "ablation" or split == "benign" else -1.0
        for r in score_rows(cfg=cfg, model=model, run_id=sr_run.run_id, experiment=EXPERIMENT,
                            case=f"rd-{rd_setting}", split=split, prompts=prompts, gens=gens,
                            layer=chosen.layer, intervention=rd_setting, alpha=alpha,
                            direction_variant="rd", teacher_forced=tf):  # fmt: skip
            rows.append({**r, "position": chosen.position, "direction_method": "diff_in_means",
                         "alpha_scale": "raw"})  # fmt: skip
    if rd_setting == "baseline":  # the unsteered CE on the same benign completions
        idx = [i for i, p in enumerate(splits["benign"]) if parts["benign"].get(p.id) == "report"]
        idx = idx[: cfg.refusal_direction.n_eval]
        prompts = [splits["benign"][i] for i in idx]
        tf = teacher_forced_scores(
            model, [p.prompt for p in prompts], [baseline["benign"][i].token_ids for i in idx],
            prompt_ids=[p.id for p in prompts], steerings=[], system_prompt=cfg.model.system_prompt,
        )  # fmt: skip
        rows += [_row(cfg, sr_run.run_id, model, experiment=f"{EXPERIMENT}:ce_baseline",
                      case_id="rd-baseline", split="benign", prompt_id=p.id, layer=chosen.layer,
                      position=chosen.position, intervention="baseline", alpha=0.0,
                      direction_variant="rd", ce_on_baseline=t.ce, kl_to_baseline=t.kl_to_baseline)
                 for p, t in zip(prompts, tf, strict=True)]  # fmt: skip
    # CE on the general text: actadd subtracts v (its bypass form) on every token.
    with rd.setting(model, rd_setting, chosen, harmful=True) as steerings:
        ce, n_tokens = rd.text_ce(model, text, steerings)
    rows.append(_row(cfg, sr_run.run_id, model, experiment=f"{EXPERIMENT}:ce_text",
                     case_id=f"rd-{rd_setting}", layer=chosen.layer, position=chosen.position,
                     intervention=rd_setting, alpha=0.0, direction_variant="rd", value=ce,
                     extra_json=json.dumps({"text": cfg.refusal_direction.ce_text,
                                            "n_tokens": n_tokens})))  # fmt: skip
    record.rows(rows)


def test_orthogonalized_weights_equal_hook_ablation(
    record: Any,
    sr_config: Config,
    sr_run: Any,
    model: Any,
    splits: dict[str, Any],
    rd_selected: tuple[Any, Any],
    rd_folder: Path,
) -> None:
    """The exported orthogonalised model (safetensors, loadable by from_pretrained) reproduces
    all-layer hook ablation: its greedy outputs on report prompts of harm_test equal the hooks'.
    Passed when every sequence is identical; failed when fewer than half are; inconclusive in
    between (fp32 rounding of the baked weights can flip a near-tie)."""
    import dataclasses

    from steering_reliability.checks import Verdict
    from steering_reliability.experiment import file_parts, generate_for

    cfg, (chosen, _) = sr_config, rd_selected
    ortho = rd.export_orthogonalized(model, chosen, rd_folder / "orthogonalized")
    loaded = _reload_logits_gap(rd_folder / "orthogonalized", ortho)
    parts = file_parts(cfg)["harm_test"]
    prompts = [p for p in splits["harm_test"] if parts.get(p.id) == "report"]
    prompts = prompts[: cfg.refusal_direction.n_orthogonal_check]
    short = dataclasses.replace(
        cfg,
        generation=dataclasses.replace(cfg.generation, max_new_tokens=cfg.sanity.max_new_tokens),
    )
    with rd.setting(model, "ablation", chosen, harmful=True):
        hooked = generate_for(model, short, prompts)
    baked = generate_for(ortho, short, prompts)
    same = sum(a.token_ids == b.token_ids for a, b in zip(hooked, baked, strict=True))
    frac = same / len(prompts)
    verdict = "passed" if same == len(prompts) else "failed" if frac < 0.5 else "inconclusive"
    v = Verdict("orthogonalized_equals_ablation", verdict, frac,
                f"{same}/{len(prompts)} greedy outputs identical over {cfg.sanity.max_new_tokens} "
                f"tokens; reloaded export's logits within {loaded:.2e} of the in-memory copy",
                {"identical": same, "n": len(prompts), "reload_max_abs_logit_diff": loaded})  # fmt: skip
    record.rows([_row(cfg, sr_run.run_id, model, experiment="sanity:orthogonalized_equals_ablation",
                      case_id="rd-orthogonalized", layer=chosen.layer, position=chosen.position,
                      intervention="orthogonalize", alpha=1.0, direction_variant="rd",
                      value=frac, passed=v.passed, verdict=v.verdict,
                      extra_json=json.dumps({"reason": v.reason, **v.details}))])  # fmt: skip
    assert loaded < 1e-3, f"the reloaded export differs from the orthogonalised model: {loaded}"
    if v.verdict == "failed":
        pytest.fail(v.reason, pytrace=False)
    if v.verdict == "inconclusive":
        pytest.skip(f"inconclusive: {v.reason}")


def _reload_logits_gap(folder: Path, ortho: Any) -> float:
    """Max |logit| difference between the export loaded with from_pretrained and the copy."""
    import torch
    from transformers import AutoModelForCausalLM

    net = AutoModelForCausalLM.from_pretrained(
        folder, dtype=next(ortho.hf_model.parameters()).dtype
    )
    ids = torch.tensor([ortho.tokenizer("The river begins in the hills.").input_ids])
    with torch.inference_mode():
        a = net(input_ids=ids).logits
        b = ortho.hf_model(input_ids=ids).logits
    return float((a - b).abs().max())
