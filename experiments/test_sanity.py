"""Sanity properties of the instrument, asserted (run `pytest -m sanity` before trusting a result).

Each check also records its numbers as rows (experiment "sanity:<name>"), so the report can say
which checks passed and with what values. Sizes come from the config's `sanity` section.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from typing import Any

import pytest
import torch

from steering_reliability.config import Config, config_hash, sanity_layer
from steering_reliability.experiment import rate, score_rows, steering_for

pytestmark = [pytest.mark.sanity, pytest.mark.experiment]


# ---------------------------------------------------------------- helpers


def _subset(splits: dict[str, Any], cfg: Config, split: str) -> tuple[Any, ...]:
    return tuple(splits[split][: cfg.sanity.n_prompts])


def _generate(
    model: Any,
    cfg: Config,
    prompts: Sequence[Any],
    steerings: Sequence[Any] = (),
    *,
    max_new_tokens: int | None = None,
) -> list[Any]:
    """The config's decoding settings at the sanity length."""
    from steering_reliability.experiment import generate_for

    return generate_for(
        model, cfg, prompts, steerings, max_new_tokens=max_new_tokens or cfg.sanity.max_new_tokens
    )


def _refusal_rate(cfg: Config, gens: Sequence[Any]) -> float:
    from steering_reliability.metrics import refusal

    flags = [refusal(g.text, threshold=cfg.metrics.refusal_threshold).is_refusal for g in gens]
    return sum(flags) / len(flags)


def _summary_row(
    cfg: Config, run_id: str, name: str, value: float, passed: bool, layer: int, **extra: Any
) -> dict[str, Any]:
    """A non-prompt row carrying one sanity check's headline number and verdict."""
    return {
        "run_id": run_id,
        "config_hash": config_hash(cfg),
        "experiment": f"sanity:{name}",
        "case_id": f"sanity-{name}",
        "model": cfg.model.name,
        "split": "",
        "prompt_id": "",
        "layer": layer,
        "hook_point": cfg.direction.hook_point,
        "intervention": "",
        "alpha": float(cfg.sanity.alpha),
        "alpha_scale": cfg.direction.alpha_scale,
        "direction_method": cfg.direction.method,
        "direction_variant": "main",
        "seed": cfg.seed,
        "value": float(value),
        "passed": bool(passed),
        "extra_json": json.dumps(extra, sort_keys=True, default=float),
    }


def _verdict(
    record: Any,
    cfg: Config,
    run_id: str,
    name: str,
    value: float,
    passed: bool,
    layer: int,
    **extra: Any,
) -> None:
    """Record a check's summary row as its only row (the caller then asserts `passed`)."""
    record.rows([_summary_row(cfg, run_id, name, value, passed, layer, **extra)])


# ---------------------------------------------------------------- checks


def test_ablation_removes_the_projection(
    record: Any,
    sr_config: Config,
    sr_run: Any,
    model: Any,
    splits: dict[str, Any],
    directions: dict[int, Any],
) -> None:
    """Ablation at alpha = 1 leaves |resid . v| ~ 0 at the hooked site, on real activations."""
    cfg, layer = sr_config, sanity_layer(sr_config)
    d = directions[layer]
    prompts = _subset(splits, cfg, "harm_test")
    s = steering_for(cfg, "ablate", layer, d.vector, 1.0)
    gens = _generate(model, cfg, prompts, [s], max_new_tokens=1)
    before = [abs(g.proj_before) for g in gens]
    after = [abs(g.proj_after) for g in gens]
    worst = max(after)
    scale = sum(before) / len(before)
    passed = worst <= 1e-4 * max(scale, 1.0)
    _verdict(
        record,
        cfg,
        sr_run.run_id,
        "ablation_projection",
        worst,
        passed,
        layer,
        mean_abs_proj_before=scale,
        max_abs_proj_after=worst,
    )
    assert passed, f"|proj| after ablation up to {worst:.3g} (before: mean {scale:.3g})"


def test_alpha_zero_reproduces_the_baseline(
    record: Any,
    sr_config: Config,
    sr_run: Any,
    model: Any,
    splits: dict[str, Any],
    directions: dict[int, Any],
) -> None:
    """Steering with alpha = 0 gives exactly the unsteered tokens and log-probabilities."""
    cfg, layer = sr_config, sanity_layer(sr_config)
    prompts = _subset(splits, cfg, "benign")
    plain = _generate(model, cfg, prompts)
    zero_add = _generate(
        model, cfg, prompts, [steering_for(cfg, "add", layer, directions[layer].vector, 0.0)]
    )
    zero_abl = _generate(
        model, cfg, prompts, [steering_for(cfg, "ablate", layer, directions[layer].vector, 0.0)]
    )
    same = sum(
        a.token_ids == b.token_ids == c.token_ids and a.logprobs == b.logprobs == c.logprobs
        for a, b, c in zip(plain, zero_add, zero_abl, strict=True)
    )
    passed = same == len(prompts)
    _verdict(record, cfg, sr_run.run_id, "alpha_zero_identity", same / len(prompts), passed, layer)
    assert passed, f"alpha=0 changed {len(prompts) - same} of {len(prompts)} generations"


def test_downstream_ablation_cancels_induced_refusal(
    record: Any,
    sr_config: Config,
    sr_run: Any,
    model: Any,
    splits: dict[str, Any],
    directions: dict[int, Any],
) -> None:
    """Refusals induced by adding v at layer L go away when v is ablated at every later layer."""
    cfg, layer = sr_config, sanity_layer(sr_config)
    d = directions[layer]
    prompts = _subset(splits, cfg, "benign")
    add = steering_for(cfg, "add", layer, d.scaled(cfg.direction.alpha_scale), cfg.sanity.alpha)
    later = [
        steering_for(cfg, "ablate", lyr, d.vector, 1.0)
        for lyr in range(layer + 1, model.info.n_layers)
    ]
    r0 = _refusal_rate(cfg, _generate(model, cfg, prompts))
    r_add = _refusal_rate(cfg, _generate(model, cfg, prompts, [add]))
    r_both = _refusal_rate(cfg, _generate(model, cfg, prompts, [add, *later]))
    induced = r_add - r0
    passed = induced <= 0 or r_both <= r0 + 0.5 * induced
    _verdict(
        record,
        cfg,
        sr_run.run_id,
        "downstream_ablation",
        r_both,
        passed,
        layer,
        baseline_rate=r0,
        add_rate=r_add,
        add_then_ablate_rate=r_both,
    )
    if induced < 0.2:
        pytest.skip(
            f"addition at layer {layer}, alpha {cfg.sanity.alpha} induced little refusal "
            f"({r0:.2f} -> {r_add:.2f}); nothing to cancel"
        )
    assert passed, (
        f"refusal rate: baseline {r0:.2f}, add {r_add:.2f}, add + downstream ablation {r_both:.2f}"
    )


def test_direction_is_stable_under_template_change(
    record: Any,
    sr_config: Config,
    sr_run: Any,
    model: Any,
    splits: dict[str, Any],
    directions: dict[int, Any],
) -> None:
    """Alternate refusal/compliance prefixes give a related direction with the same effect.

    Asserted: both directions raise harm_test refusal by >= 0.2 over the unsteered rate at the
    sanity alpha, their rates differ by <= 0.35, and their cosine is far above chance (>= 0.3;
    two random directions in d_model >= 500 have |cos| ~ 0.04). The cosine itself is recorded:
    prefix-mean directions partly encode the prefix tokens, so it is well below 1 (0.48 at
    layer 12 of the default model).
    """
    from steering_reliability.directions import cosine, directions_for_layers
    from steering_reliability.experiment import direction_prompts

    cfg, layer = sr_config, sanity_layer(sr_config)
    alt = directions_for_layers(model, cfg, direction_prompts(cfg), [layer], variant="alt")[layer]
    main = directions[layer]
    cos = cosine(main.vector, alt.vector)
    prompts = _subset(splits, cfg, "harm_test")
    scale, a = cfg.direction.alpha_scale, cfg.sanity.alpha
    r_base = _refusal_rate(cfg, _generate(model, cfg, prompts))
    r_main = _refusal_rate(
        cfg,
        _generate(model, cfg, prompts, [steering_for(cfg, "add", layer, main.scaled(scale), a)]),
    )
    r_alt = _refusal_rate(
        cfg, _generate(model, cfg, prompts, [steering_for(cfg, "add", layer, alt.scaled(scale), a)])
    )
    passed = cos >= 0.3 and min(r_main, r_alt) >= r_base + 0.2 and abs(r_main - r_alt) <= 0.35
    _verdict(
        record,
        cfg,
        sr_run.run_id,
        "template_robustness",
        cos,
        passed,
        layer,
        norm_main=main.norm,
        norm_alt=alt.norm,
        refusal_rate_baseline=r_base,
        refusal_rate_main=r_main,
        refusal_rate_alt=r_alt,
    )
    assert passed, (
        f"layer {layer}: cosine(main, alternate template) = {cos:.3f}; harm_test refusal "
        f"unsteered {r_base:.2f}, main {r_main:.2f}, alternate {r_alt:.2f}"
    )


def test_direction_is_stable_under_seed_change(
    record: Any, sr_config: Config, sr_run: Any, model: Any, splits: dict[str, Any]
) -> None:
    """Directions from two seeded, disjoint halves of harm_train point the same way."""
    import random

    from steering_reliability.directions import cosine, directions_for_layers
    from steering_reliability.experiment import direction_prompts

    cfg, layer = sr_config, sanity_layer(sr_config)
    pool = list(direction_prompts(cfg))
    vecs = []
    for seed in cfg.sanity.seeds[:2]:
        order = list(range(len(pool)))
        random.Random(f"sanity-seed:{seed}").shuffle(order)
        half = [pool[i] for i in sorted(order[: len(pool) // 2])]
        vecs.append(directions_for_layers(model, cfg, half, [layer])[layer])
    cos = cosine(vecs[0].vector, vecs[1].vector)
    passed = cos >= 0.8
    _verdict(
        record,
        cfg,
        sr_run.run_id,
        "seed_robustness",
        cos,
        passed,
        layer,
        seeds=list(cfg.sanity.seeds[:2]),
        norms=[v.norm for v in vecs],
    )
    assert passed, f"cosine between seeds {cfg.sanity.seeds[:2]} = {cos:.3f} at layer {layer}"


def test_random_direction_of_equal_norm_has_no_effect(
    record: Any,
    sr_config: Config,
    sr_run: Any,
    model: Any,
    splits: dict[str, Any],
    directions: dict[int, Any],
) -> None:
    """A random direction with the same norm, added the same way, induces far fewer refusals."""
    cfg, layer = sr_config, sanity_layer(sr_config)
    d = directions[layer]
    v = d.scaled(cfg.direction.alpha_scale)
    g = torch.Generator().manual_seed(cfg.seed)
    rnd = torch.randn(v.shape, generator=g)
    rnd = rnd / rnd.norm() * v.norm()
    rows: list[dict[str, Any]] = []
    rates: dict[str, float] = {}
    for split in ("harm_test", "benign"):
        prompts = _subset(splits, cfg, split)
        for variant, vec in (("main", v), ("random", rnd)):
            gens = _generate(
                model, cfg, prompts, [steering_for(cfg, "add", layer, vec, cfg.sanity.alpha)]
            )
            split_rows = score_rows(
                cfg=cfg,
                model=model,
                run_id=sr_run.run_id,
                experiment="sanity:random_direction",
                case=f"sanity-random-layer{layer}",
                split=split,
                prompts=prompts,
                gens=gens,
                layer=layer,
                intervention="add",
                alpha=cfg.sanity.alpha,
                direction_variant=variant,
            )
            rows += split_rows
            rates[f"{variant}_{split}"] = rate(split_rows, "is_refusal")
    main_rate = (rates["main_harm_test"] + rates["main_benign"]) / 2
    random_rate = (rates["random_harm_test"] + rates["random_benign"]) / 2
    passed = random_rate < main_rate or main_rate == 0.0
    rows.append(
        _summary_row(cfg, sr_run.run_id, "random_direction", random_rate, passed, layer, **rates)
    )
    record.rows(rows)
    assert passed, (
        f"random direction refusal rate {random_rate:.2f} >= main direction {main_rate:.2f}"
    )


def test_no_length_or_entropy_collapse_at_the_operating_point(
    record: Any,
    sr_config: Config,
    sr_run: Any,
    model: Any,
    splits: dict[str, Any],
    directions: dict[int, Any],
) -> None:
    """At the operating point the output is not degenerate: refusal changes are not collapse."""
    from steering_reliability.analysis import DEFAULT_RULE
    from steering_reliability.metrics import degeneracy

    cfg = sr_config
    layer, kind, alpha, source = _operating_point(sr_run, cfg)
    d = directions.get(layer)
    if d is None:
        from steering_reliability.directions import directions_for_layers
        from steering_reliability.experiment import direction_prompts

        d = directions_for_layers(model, cfg, direction_prompts(cfg), [layer])[layer]
    prompts = _subset(splits, cfg, "benign") + _subset(splits, cfg, "harm_test")
    vec = d.scaled(cfg.direction.alpha_scale) if kind == "add" else d.vector
    base = _generate(model, cfg, prompts)
    steered = _generate(model, cfg, prompts, [steering_for(cfg, kind, layer, vec, alpha)])
    collapse = sum(degeneracy(g.text, list(g.token_ids)).collapsed for g in steered) / len(steered)
    ent_base = _mean([x for g in base for x in g.entropies])
    ent_steer = _mean([x for g in steered for x in g.entropies])
    passed = collapse <= DEFAULT_RULE.max_collapse_rate and ent_steer >= 0.2 * ent_base
    _verdict(
        record,
        cfg,
        sr_run.run_id,
        "collapse_at_operating_point",
        collapse,
        passed,
        layer,
        intervention=kind,
        alpha=alpha,
        source=source,
        mean_entropy_baseline=ent_base,
        mean_entropy_steered=ent_steer,
        mean_tokens_baseline=_mean([len(g.token_ids) for g in base]),
        mean_tokens_steered=_mean([len(g.token_ids) for g in steered]),
    )
    assert passed, (
        f"operating point layer {layer} {kind} a{alpha:g} ({source}): collapse rate {collapse:.2f}, "
        f"entropy {ent_steer:.2f} vs baseline {ent_base:.2f}"
    )


def _mean(xs: Sequence[float]) -> float:
    return sum(xs) / len(xs) if xs else math.nan


def _operating_point(sr_run: Any, cfg: Config) -> tuple[int, str, float, str]:
    """The report's operating point once every sweep case is recorded, else the configured one.

    A partial sweep would move the point as cases finish, so it is never used.
    """
    from steering_reliability.analysis import (
        ReportInputError,
        choose_operating_point,
        prepare,
        summarize,
    )
    from steering_reliability.experiment import sweep_cases
    from steering_reliability.records.compact import read_parts
    from steering_reliability.records.keys import parts_dir

    fallback = (
        sanity_layer(cfg),
        "add",
        float(cfg.sanity.alpha),
        "config sanity point (sweep incomplete)",
    )
    folder = parts_dir(sr_run.run_dir, sr_run.config_hash)
    try:
        table, _ = read_parts(folder)
    except FileNotFoundError:
        return fallback
    df = table.to_pandas()
    recorded = set(df.loc[df["experiment"] == "sweep", "case_id"])
    if not {c.id for c in sweep_cases(cfg)} <= recorded:
        return fallback
    try:
        row = choose_operating_point(summarize(prepare(df, source=str(folder))))
    except ReportInputError:
        return fallback
    return int(row["layer"]), str(row["intervention"]), float(row["alpha"]), "sweep results"
