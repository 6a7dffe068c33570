"""The generalisation map: which harm families share a refusal direction, and how far it moves.

`pytest experiments -m generalisation -n auto`:

- `test_family_geometry[layerL-families]`: one direction per harm family of the direction
  prompts (harm_train *select*), its norm, split-half cosine, bootstrap stability and
  consistency; the families' cosine matrix and how much of them one axis holds;
- `test_principal_angles`: angles between the family subspaces of two layers, of the main and
  the alternate prefixes, and of the model and the model orthogonalised against the pooled
  direction, beside two random subspaces of the same size;
- `test_transfer[source]`: each family's direction (and the pooled one, and none) at the
  generalisation layer, at equal cost (the alpha of `generalisation.transfer_kl`, calibrated on
  benign *select* prompts), generated on the *report* prompts of every split;
- `test_steerability[split]`: per *report* prompt, the slope of first-token refusal log-odds
  against alpha (forward passes only);
- `test_equal_kl[layerL-intervention]`: per sweep layer and intervention, the alpha at each KL
  budget, and refusal on the harmful *report* prompts there.

Validity is asserted (the per-family decomposition reproduces the sweep's direction, the
numbers are finite and in range); how far directions transfer is a finding, recorded in rows.
"""

from __future__ import annotations

import functools
import json
import math
from typing import Any

import numpy as np
import pytest

from steering_reliability.config import Config, generalisation_layer
from steering_reliability.directions import cosine
from steering_reliability.errors import ConfigError
from steering_reliability.generation import next_token_logits
from steering_reliability.interventions import orthogonalize_weights
from steering_reliability.prompts import load_prompts
from steering_reliability.pytest_plugin import run_config
from steering_reliability.studies.generalisation import measures as gen
from steering_reliability.studies.refusal_direction.pipeline import pipeline_prompts
from steering_reliability.studies.shared import (
    SPLITS,
    direction_prompts,
    file_parts,
    generate_for,
    harmless_prompts,
    report_indices,
    score_rows,
    split_files,
    steering_for,
)

pytestmark = [pytest.mark.generalisation, pytest.mark.experiment]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Transfer sources (none, pooled, each family), the layers of the family geometry, the
    equal-KL layer x intervention settings, and the splits of the steerability cases."""
    names = set(metafunc.fixturenames)
    if not names & {"gen_source", "gen_layer", "gen_setting", "split"}:
        return
    cfg = run_config(metafunc.config)
    if "gen_source" in names:
        sources = gen.sources(cfg)
        metafunc.parametrize("gen_source", sources, ids=[f"transfer-{s}" for s in sources])
    if "gen_layer" in names:
        layers = sorted({*cfg.sweep.layers, generalisation_layer(cfg)})
        metafunc.parametrize("gen_layer", layers, ids=[f"layer{i}-families" for i in layers])
    if "gen_setting" in names:
        metafunc.parametrize("gen_setting", gen.equal_kl_settings(cfg))
    if "split" in names:
        metafunc.parametrize("split", SPLITS)


EXPERIMENT = "generalisation"
AXES_SHARE = 0.9  # principal angles between the axes that hold 90% of each set of directions


def _row(cfg: Config, model: Any, kind: str, **fields: Any) -> dict[str, Any]:
    """A non-prompt row of this experiment (`kind`: family, geometry, angles, calibration)."""
    return {"experiment": f"{EXPERIMENT}:{kind}", "model": model.info.name, "split": "",
            "prompt_id": "", "hook_point": cfg.direction.hook_point,
            "position": cfg.direction.position, "direction_method": cfg.direction.method,
            "alpha_scale": cfg.direction.alpha_scale, "seed": cfg.seed, **fields}  # fmt: skip


def _report(cfg: Config, splits: dict[str, Any], split: str) -> list[Any]:
    """The split's evaluated prompts that are in its report part."""
    return [splits[split][i] for i in report_indices(cfg, splits[split], split)]


@pytest.fixture(scope="session")
def gen_families(
    sr_config: Config, sr_run: Any
) -> tuple[tuple[Any, ...], dict[str, list[int]] | str]:
    """The direction prompts and their family groups (recorded in run.json), or why there are
    too few families to compare (the cases that compare families then skip, inconclusive)."""
    prompts = direction_prompts(sr_config)
    try:
        groups, note = gen.family_groups(prompts, sr_config.generalisation.min_family)
    except ConfigError as exc:
        return prompts, str(exc)
    sr_run.annotate("generalisation_families", {
        "groups": {f: [prompts[i].id for i in idx] for f, idx in groups.items()}, "note": note})  # fmt: skip
    return prompts, groups


@pytest.fixture
def gen_groups(gen_families: Any) -> dict[str, list[int]]:
    """The family groups; the cases that compare families skip when there are too few."""
    if isinstance(gen_families[1], str):
        pytest.skip(f"inconclusive: {gen_families[1]}")
    groups: dict[str, list[int]] = gen_families[1]
    return groups


@pytest.fixture(scope="session")
def gen_diffs(sr_config: Config, model: Any, gen_families: Any, directions: dict[int, Any]) -> Any:
    """A function (variant, model kind, method) -> the per-prompt differences of the direction
    prompts at every sweep layer and the residual norms there, computed once per worker on
    first use. Model kinds: "model", and "orthogonalised" (its weights orthogonalised against
    the pooled direction at the generalisation layer). Methods: None (the configured one) or
    "diff_in_means" (harmless mean: the refusal-direction pipeline's benign *select* prompts,
    or the configured harmless prompts when diff_in_means is the configured method)."""
    cfg = sr_config
    layers = sorted({*cfg.sweep.layers, generalisation_layer(cfg)})

    def make(variant: str = "main", kind: str = "model", method: str | None = None) -> Any:
        return compute(variant, kind, method)  # one cache entry however it is called

    @functools.cache
    def compute(variant: str, kind: str, method: str | None) -> Any:
        net = model
        if kind == "orthogonalised":
            net = orthogonalize_weights(model, directions[generalisation_layer(cfg)].vector)
        harmless: Any = ()
        if (method or cfg.direction.method) == "diff_in_means":
            configured = cfg.direction.method == "diff_in_means"
            harmless = harmless_prompts(cfg) if configured else pipeline_prompts(cfg).harmless
        return gen.prompt_differences(net, cfg, gen_families[0], layers, variant=variant,
                                      harmless=harmless, method=method)  # fmt: skip

    return make


def _families(cfg: Config, diffs: Any, groups: dict[str, list[int]], layer: int,
              method: str | None = None) -> dict[str, Any]:  # fmt: skip
    """One Direction per family at `layer`."""
    d, norms = diffs
    return {name: gen.family_direction(cfg, d[layer][idx], layer, name, norms[layer], method)
            for name, idx in groups.items()}  # fmt: skip


@pytest.fixture(scope="session")
def gen_calibration(sr_config: Config, model: Any) -> tuple[list[str], Any]:
    """Benign *select* prompts that calibrate alpha to a KL budget, with their unsteered
    next-token logits."""
    cfg = sr_config
    parts = file_parts(cfg)["benign"]
    pool = [p.prompt for p in load_prompts(split_files(cfg)["benign"], split="benign")
            if parts.get(p.id) == "select"][: cfg.generalisation.n_calibrate]  # fmt: skip
    base = next_token_logits(model, pool, system_prompt=cfg.model.system_prompt,
                       batch_size=cfg.direction.batch_size)  # fmt: skip
    return pool, base


def _calibrate(cfg: Config, model: Any, calibration: Any, kind: str, layer: int, vector: Any,
               budgets: Any) -> list[gen.Calibration]:  # fmt: skip
    prompts, base = calibration

    def cost(alpha: float) -> float:
        return gen.next_token_kl(model, prompts, base, [steering_for(cfg, kind, layer, vector, alpha)],
                                 system_prompt=cfg.model.system_prompt,
                                 batch_size=cfg.direction.batch_size)  # fmt: skip

    return gen.calibrate(cost, list(budgets), max_alpha=cfg.generalisation.max_alpha)


def _alpha_fact(cal: gen.Calibration) -> dict[str, Any]:
    """What run.json records of a calibration: budget, alpha found (null when out of reach),
    the KL there, status."""
    return {k: v for k, v in cal.as_json().items() if k != "curve"}


def test_family_geometry(
    gen_layer: int,
    record: Any,
    sr_config: Config,
    model: Any,
    gen_groups: dict[str, list[int]],
    gen_diffs: Any,
    directions: dict[int, Any],
) -> None:
    """Per-family directions at one layer and the geometry of the set, for the configured
    method and for difference in means (`generalisation.geometry_methods`). Asserted: the mean
    of the configured method's per-prompt differences is the sweep's direction (cosine >
    0.999), and the cosine matrices and axis shares are well formed."""
    cfg, g, groups = sr_config, sr_config.generalisation, gen_groups
    rows = []
    for method in gen.geometry_methods(cfg):
        found = gen_diffs(method=None if method == cfg.direction.method else method)
        diffs = found[0][gen_layer]
        pooled = diffs.mean(0)
        if method == cfg.direction.method:
            agree = cosine(pooled, directions[gen_layer].vector)
            assert agree > 0.999, (
                f"per-prompt differences do not average to the sweep's direction ({agree})"
            )
        fams = _families(cfg, found, groups, gen_layer, method)
        for i, (name, d) in enumerate(fams.items()):
            part = diffs[groups[name]]
            boot = gen.bootstrap_cosines(part, g.n_bootstrap, seed=cfg.seed + i)
            cons = gen.consistency(part)
            assert -1.0 <= cons <= 1.0
            rows.append(_row(cfg, model, "family", case_id=f"layer{gen_layer}-families",
                             layer=gen_layer, intervention="", alpha=0.0, direction_method=method,
                             direction_variant=f"{method}/{name}", value=d.norm,
                             extra_json=json.dumps({
                                 "family": name, "method": method, "n_prompts": d.n_prompts,
                                 "norm": d.norm, "split_half_cosine": d.split_half_cosine,
                                 "bootstrap_cosine": float(np.median(boot)),
                                 "bootstrap_cosine_lo": float(np.percentile(boot, 2.5)),
                                 "bootstrap_cosine_hi": float(np.percentile(boot, 97.5)),
                                 "consistency": cons, "cosine_to_pooled": cosine(d.vector, pooled)})))  # fmt: skip
        matrix = gen.cosine_matrix(gen.stack(fams))
        shares = gen.axis_shares(gen.stack(fams))
        assert np.allclose(np.diag(matrix), 1.0) and np.allclose(matrix, matrix.T)
        assert math.isclose(float(shares.sum()), 1.0, rel_tol=1e-9)
        rows.append(_row(cfg, model, "geometry", case_id=f"layer{gen_layer}-families",
                         layer=gen_layer, intervention="", alpha=0.0, direction_method=method,
                         direction_variant=f"{method}/families", value=float(shares[0]),
                         extra_json=json.dumps({"method": method, "families": list(fams),
                                                "cosines": matrix.tolist(),
                                                "axis_shares": shares.tolist(),
                                                "consistency_all": gen.consistency(diffs)})))  # fmt: skip
    record.rows(rows)


def test_principal_angles(
    record: Any, sr_config: Config, model: Any, gen_groups: dict[str, list[int]], gen_diffs: Any
) -> None:
    """Principal angles between family subspaces of two conditions that share d_model (each
    set's fewest principal axes holding AXES_SHARE of it), for each geometry method: the sweep's layers pairwise in order, main vs alternate prefixes
    (contrastive_prefix), the model vs its weights orthogonalised against the pooled direction;
    and two random subspaces of the same size as the reference for "unrelated"."""
    cfg, groups = sr_config, gen_groups
    layer = generalisation_layer(cfg)
    ordered = sorted(cfg.sweep.layers)
    pairs: list[tuple[str, int, Any, Any]] = []
    for method in gen.geometry_methods(cfg):
        own = None if method == cfg.direction.method else method

        def subspace(at: int, variant: str = "main", kind: str = "model") -> Any:
            found = gen_diffs(variant, kind, own)  # noqa: B023 (used at once, in this loop)
            return gen.stack(_families(cfg, found, groups, at, method))  # noqa: B023

        for a, b in zip(ordered, ordered[1:], strict=False):
            pairs.append((f"{method}/layer{a}-vs-layer{b}", b, subspace(a), subspace(b)))
        if method == "contrastive_prefix":
            pairs.append((f"{method}/main-vs-alt-prefixes", layer, subspace(layer),
                          subspace(layer, "alt")))  # fmt: skip
        pairs.append((f"{method}/model-vs-orthogonalised", layer, subspace(layer),
                      subspace(layer, "main", "orthogonalised")))  # fmt: skip
    k, d = len(groups), model.info.d_model
    rng = np.random.default_rng(cfg.seed)
    pairs.append(
        ("random-vs-random", layer, rng.standard_normal((k, d)), rng.standard_normal((k, d)))
    )
    rows = []
    for name, at, a, b in pairs:
        axes_a, axes_b = gen.principal_axes(a, AXES_SHARE), gen.principal_axes(b, AXES_SHARE)
        angles = gen.principal_angles(axes_a, axes_b)
        assert np.all((angles >= 0) & (angles <= 90 + 1e-9)) and len(angles) <= k
        rows.append(_row(cfg, model, "angles", case_id="principal-angles", layer=at,
                         intervention="", alpha=0.0, direction_variant=name,
                         value=float(angles.mean()),
                         extra_json=json.dumps({"angles_deg": angles.tolist(), "k": k,
                                                "axes": [len(axes_a), len(axes_b)],
                                                "share": AXES_SHARE})))  # fmt: skip
    record.rows(rows)


def test_transfer(
    gen_source: str,
    record: Any,
    sr_config: Config,
    sr_run: Any,
    model: Any,
    splits: dict[str, Any],
    directions: dict[int, Any],
    gen_families: Any,
    gen_diffs: Any,
    gen_calibration: Any,
    refusal_ids: tuple[int, ...],
) -> None:
    """One row of the transfer matrix: the source's direction (`generalisation.transfer_method`,
    from that family's direction prompts) at the generalisation layer, at
    the sweep direction's norm and the alpha of the transfer KL budget (or `transfer_alpha`),
    generated on the report prompts of every split. Source "none" is the unsteered row at the
    same length. Inconclusive (skipped, with its calibration row) when the budget is out of
    reach on the rising part of the KL curve."""
    cfg, g = sr_config, sr_config.generalisation
    layer, kind, scale = generalisation_layer(cfg), g.intervention, cfg.direction.alpha_scale
    method = g.transfer_method or cfg.direction.method
    steerings, alpha, rows = [], 0.0, []
    if gen_source != gen.NONE:
        if method == cfg.direction.method:
            pooled, found = directions[layer].scaled(scale), gen_diffs()
        else:  # the pooled direction of the transfer method: every family's prompts
            found = gen_diffs(method=method)
            d, norms = found
            pooled = gen.family_direction(cfg, d[layer], layer, gen.POOLED, norms[layer], method)
            pooled = pooled.scaled(scale)
        if gen_source == gen.POOLED:
            vector = pooled
        else:
            groups: Any = gen_families[1]  # a family source exists only when grouping worked
            vector = _families(cfg, found, groups, layer, method)[gen_source].scaled(scale)
        # every source at the sweep direction's norm, so alpha means what it means in the sweep
        # (and max_alpha bounds the calibration alike for every method)
        vector = gen.scaled_to(vector, float(directions[layer].scaled(scale).norm()))
        if g.transfer_alpha is not None:
            alpha = g.transfer_alpha
        else:
            (cal,) = _calibrate(cfg, model, gen_calibration, kind, layer, vector, [g.transfer_kl])
            rows.append(_row(cfg, model, "calibration", case_id=f"transfer-{gen_source}",
                             layer=layer, intervention=kind, direction_method=method,
                             alpha=0.0 if math.isnan(cal.alpha) else cal.alpha,
                             direction_variant=gen_source, value=cal.cost,
                             extra_json=json.dumps(cal.as_json())))  # fmt: skip
            sr_run.annotate(f"generalisation_alpha:transfer-{gen_source}", _alpha_fact(cal))
            if cal.status != "found":
                record.rows(rows)
                pytest.skip(f"inconclusive: KL {g.transfer_kl} is out of reach for {gen_source} "
                            f"(largest on the rising part: {cal.cost:.3g})")  # fmt: skip
            alpha = cal.alpha
        steerings = [steering_for(cfg, kind, layer, vector, alpha)]
    for split in SPLITS:
        prompts = _report(cfg, splits, split)
        gens = generate_for(model, cfg, prompts, steerings, max_new_tokens=g.max_new_tokens,
                            track_token_ids=refusal_ids)  # fmt: skip
        rows += score_rows(cfg=cfg, model=model, run_id=sr_run.run_id,
                           experiment=f"{EXPERIMENT}:transfer", case=f"transfer-{gen_source}",
                           split=split, prompts=prompts, gens=gens,
                           layer=layer if steerings else -1,
                           intervention=kind if steerings else "none", alpha=alpha,
                           direction_variant=gen_source)  # fmt: skip
    rows = [{**r, "direction_method": method} if r["prompt_id"] else r for r in rows]
    assert all(0.0 <= r["refusal_score"] <= 1.0 for r in rows if r["prompt_id"])
    record.rows(rows)


def test_steerability(
    split: str,
    record: Any,
    sr_config: Config,
    model: Any,
    splits: dict[str, Any],
    directions: dict[int, Any],
    refusal_ids: tuple[int, ...],
) -> None:
    """Per report prompt of the split: first-token refusal probability under addition of the
    pooled direction at each of `steer_alphas`, and the slope of its log-odds against alpha
    (Tan et al. 2024's per-prompt steerability; a negative slope is anti-steerable)."""
    cfg, g = sr_config, sr_config.generalisation
    layer = generalisation_layer(cfg)
    vector = directions[layer].scaled(cfg.direction.alpha_scale)
    prompts = _report(cfg, splits, split)
    texts = [p.prompt for p in prompts]
    probs = np.stack([
        gen.first_token_probs(model, texts, refusal_ids,
                              [steering_for(cfg, "add", layer, vector, a)] if a else [],
                              system_prompt=cfg.model.system_prompt,
                              batch_size=cfg.direction.batch_size)
        for a in g.steer_alphas
    ], axis=1)  # [n, k]  # fmt: skip
    odds = gen.refusal_log_odds(probs)
    slope = gen.slopes(g.steer_alphas, odds)
    assert np.isfinite(slope).all() and ((probs >= 0) & (probs <= 1)).all()
    at0 = list(g.steer_alphas).index(0.0)
    record.rows(
        _row(cfg, model, "steerability", case_id=f"steerability-{split}", split=split,
             part="report", prompt_id=p.id, family=p.family, style=p.style, template=p.template,
             layer=layer, intervention="add", alpha=0.0, direction_variant="main",
             value=float(s), first_token_refusal_prob=float(probs[i, at0]),
             extra_json=json.dumps({"alphas": list(g.steer_alphas), "log_odds": odds[i].tolist()}))
        for i, (p, s) in enumerate(zip(prompts, slope, strict=True))
    )  # fmt: skip


def test_equal_kl(
    gen_setting: str,
    record: Any,
    sr_config: Config,
    sr_run: Any,
    model: Any,
    splits: dict[str, Any],
    directions: dict[int, Any],
    gen_calibration: Any,
    refusal_ids: tuple[int, ...],
) -> None:
    """One layer and intervention at equal cost: the alpha whose benign next-token KL equals
    each budget (calibration rows, with the curve evaluated), then refusal on the harmful
    report prompts at every budget reached. A budget out of reach is recorded, not run."""
    cfg, g = sr_config, sr_config.generalisation
    layer_text, kind = gen_setting.split("-", 1)
    layer = int(layer_text.removeprefix("layer"))
    vector = directions[layer].scaled(cfg.direction.alpha_scale)
    rows = []
    found = _calibrate(cfg, model, gen_calibration, kind, layer, vector, g.kl_budgets)
    sr_run.annotate(f"generalisation_alpha:{gen_setting}", [_alpha_fact(c) for c in found])
    for cal in found:
        variant = f"kl{cal.budget:g}"
        rows.append(_row(cfg, model, "calibration", case_id=gen_setting, layer=layer,
                         intervention=kind, alpha=0.0 if math.isnan(cal.alpha) else cal.alpha,
                         direction_variant=variant, value=cal.cost,
                         extra_json=json.dumps(cal.as_json())))  # fmt: skip
        if cal.status != "found":
            continue
        steering = steering_for(cfg, kind, layer, vector, cal.alpha)
        for split in ("harm_train", "harm_test"):
            prompts = _report(cfg, splits, split)
            gens = generate_for(model, cfg, prompts, [steering], max_new_tokens=g.max_new_tokens,
                                track_token_ids=refusal_ids)  # fmt: skip
            rows += score_rows(cfg=cfg, model=model, run_id=sr_run.run_id,
                               experiment=f"{EXPERIMENT}:equal_kl", case=f"{gen_setting}-{variant}",
                               split=split, prompts=prompts, gens=gens, layer=layer,
                               intervention=kind, alpha=cal.alpha, direction_variant=variant)  # fmt: skip
    record.rows(rows)
