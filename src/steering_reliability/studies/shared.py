"""One experiment's orchestration: prompts -> steered generation -> metrics -> rows.

Called by the pytest cases in experiments/ and by the notebooks; holds no pytest code and no
metric of its own (every score comes from `metrics`).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from steering_reliability.config import Config, config_hash
from steering_reliability.errors import ConfigError
from steering_reliability.generation import generate
from steering_reliability.generation.cache import GenerationRequest
from steering_reliability.interventions import Steering
from steering_reliability.metrics import degeneracy, helpfulness, refusal, token_stats
from steering_reliability.models import LoadedModel, encode_prompt, format_prompt
from steering_reliability.models.sites import variant_key
from steering_reliability.prompts import Prompt, check_prompt_lengths, load_prompts
from steering_reliability.prompts.benchmarks import is_benchmark
from steering_reliability.prompts.generate import SPLITS
from steering_reliability.prompts.parts import assign_parts, sample_parts, sample_subset
from steering_reliability.timing import timed


def alpha_id(alpha: float) -> str:
    """1.0 -> '1', 0.5 -> '0.5': the alpha as it appears in case ids."""
    return f"{alpha:g}"


def split_files(cfg: Config) -> dict[str, Path]:
    """The three prompt files every study reads (harm_train, harm_test, benign)."""
    return {
        "harm_train": cfg.resolve_path(cfg.prompts.harm_train),
        "harm_test": cfg.resolve_path(cfg.prompts.harm_test),
        "benign": cfg.resolve_path(cfg.prompts.benign),
    }


def eval_splits(cfg: Config) -> tuple[str, ...]:
    """Every split the sweep evaluates: the three of SPLITS, then the benchmarks in config order
    (the shift ladder: in distribution, our synthetic shift, real benchmarks; benign beside)."""
    return (*SPLITS, *cfg.prompts.benchmarks)


def split_sources(cfg: Config) -> dict[str, Path | str]:
    """split -> its prompt file, or a `benchmark:NAME` spec, for every split of `eval_splits`."""
    sources: dict[str, Path | str] = dict(split_files(cfg))
    for name, source in cfg.prompts.benchmarks.items():
        sources[name] = source if is_benchmark(source) else cfg.resolve_path(source)
    return sources


def file_parts(cfg: Config) -> dict[str, dict[str, str]]:
    """split -> (prompt id -> part) over every prompt of each split's source (recorded in
    run.json)."""
    key = (config_hash(cfg), cfg.source)
    if key not in _PARTS_MEMO:
        _PARTS_MEMO[key] = _file_parts(cfg)
    return _PARTS_MEMO[key]


_PARTS_MEMO: dict[tuple[str, str], dict[str, dict[str, str]]] = {}


def report_indices(cfg: Config, prompts: Sequence[Prompt], split: str) -> list[int]:
    """Positions of the split's evaluated prompts that are in its *report* part (headline
    numbers are measured on these)."""
    parts = file_parts(cfg)[split]
    return [i for i, p in enumerate(prompts) if parts.get(p.id) == "report"]


def _file_parts(cfg: Config) -> dict[str, dict[str, str]]:
    return {
        s: assign_parts(load_prompts(source, split=s), f"{cfg.seed}:parts:{s}")
        for s, source in split_sources(cfg).items()
    }


def select_prompts(cfg: Config) -> dict[str, tuple[Prompt, ...]]:
    """The evaluation prompts of each split of `eval_splits`, file order. Where the config limits
    them: for harm_train, harm_test and benign a seeded sample of half from each part (select,
    report), so both parts are measured; for a benchmark a seeded sample of its *report* part
    only (nothing is chosen on a benchmark, so its select part is never run)."""
    sources = split_sources(cfg)
    limits = {
        "harm_train": cfg.prompts.n_train,
        "harm_test": cfg.prompts.n_test,
        "benign": cfg.prompts.n_benign,
    }
    parts = file_parts(cfg)
    chosen = {
        s: sample_parts(load_prompts(sources[s], split=s), parts[s], limits[s], f"{cfg.seed}:{s}")
        for s in SPLITS
    }
    for s in cfg.prompts.benchmarks:
        report = tuple(p for p in load_prompts(sources[s], split=s) if parts[s][p.id] == "report")
        chosen[s] = sample_subset(report, cfg.prompts.n_benchmark, f"{cfg.seed}:{s}:report")
    return chosen


def direction_prompts(cfg: Config) -> tuple[Prompt, ...]:
    """harm_train prompts the direction is built from: the first n_direction of the file's
    *select* part, so no report prompt ever trains the direction it is measured with."""
    prompts = load_prompts(split_files(cfg)["harm_train"], split="harm_train")
    parts = file_parts(cfg)["harm_train"]
    pool = tuple(p for p in prompts if parts[p.id] == "select")
    n = cfg.prompts.n_direction
    return pool if n is None else pool[:n]


def harmless_prompts(cfg: Config) -> tuple[Prompt, ...]:
    """Benign prompts for diff_in_means: the ones *not* used for evaluation (no leakage)."""
    files = split_files(cfg)
    evaluated = {p.id for p in select_prompts(cfg)["benign"]}
    rest = tuple(p for p in load_prompts(files["benign"], split="benign") if p.id not in evaluated)
    if not rest:
        raise ConfigError(
            "diff_in_means has no harmless prompts left: every benign prompt is evaluated",
            file=cfg.source or None,
            field="prompts.n_benign",
            value=cfg.prompts.n_benign,
            expected=f"fewer than the {len(evaluated)} prompts of {files['benign']}",
            hint="the harmless mean must come from benign prompts that are not scored",
        )
    n = cfg.prompts.n_direction
    return rest if n is None else rest[:n]


def check_lengths(model: LoadedModel, cfg: Config, splits: Mapping[str, Sequence[Prompt]]) -> None:
    """Refuse prompts that do not fit the context together with the generated tokens."""
    files = split_sources(cfg)
    budget = model.info.n_ctx - cfg.generation.max_new_tokens

    def count(text: str) -> int:
        formatted = format_prompt(model.tokenizer, text, system_prompt=cfg.model.system_prompt)
        return len(encode_prompt(model.tokenizer, formatted))

    for split, prompts in splits.items():
        check_prompt_lengths(prompts, count, budget, file=str(files[split]))


def request_for(
    model: LoadedModel,
    cfg: Config,
    prompts: Sequence[Prompt],
    *,
    steering: str = "none",
    max_new_tokens: int | None = None,
    seed: int | None = None,
    temperature: float | None = None,
    top_p: float | None = None,
    extra: Mapping[str, Any] | None = None,
) -> GenerationRequest:
    """The request of these prompts at the config's decoding settings (or the ones given)."""
    g = cfg.generation
    return GenerationRequest(
        model_sha256=model.info.weights_sha256,
        prompt_ids=tuple(p.id for p in prompts),
        prompts=tuple(p.prompt for p in prompts),
        system_prompt=cfg.model.system_prompt,
        max_new_tokens=max_new_tokens or g.max_new_tokens,
        temperature=g.temperature if temperature is None else temperature,
        top_p=g.top_p if top_p is None else top_p,
        seed=cfg.seed if seed is None else seed,
        steering=steering,
        # another dtype or device is another cache entry (a baseline decoded on the CPU is not
        # what the GPU decodes, and sampling differs there)
        extra={**variant_key(model), **(extra or {})},
    )


def steering_for(cfg: Config, kind: str, layer: int, vector: Any, alpha: float) -> Any:
    """A Steering at the config's hook point and positions (sweep and sanity cases alike)."""
    return Steering(
        kind=kind,
        layer=layer,
        vector=vector,
        alpha=alpha,
        hook_point=cfg.direction.hook_point,
        apply_to=cfg.sweep.apply_to,
    )


def generate_for(
    model: LoadedModel,
    cfg: Config,
    prompts: Sequence[Prompt],
    steerings: Sequence[Any] = (),
    *,
    max_new_tokens: int | None = None,
    track_token_ids: Sequence[int] | None = None,
) -> list[Any]:
    """generate() with the config's decoding settings, for a list of prompts."""
    g = cfg.generation
    return generate(
        model,
        [p.prompt for p in prompts],
        prompt_ids=[p.id for p in prompts],
        max_new_tokens=max_new_tokens or g.max_new_tokens,
        temperature=g.temperature,
        top_p=g.top_p,
        seed=cfg.seed,
        steerings=steerings,
        system_prompt=cfg.model.system_prompt,
        batch_size=g.batch_size,
        track_token_ids=track_token_ids,
    )


# ---------------------------------------------------------------- rows


@timed("scoring")
def score_rows(
    *,
    cfg: Config,
    model: LoadedModel,
    run_id: str,
    experiment: str,
    case: str,
    split: str,
    prompts: Sequence[Prompt],
    gens: Sequence[Any],
    layer: int = -1,
    intervention: str = "none",
    alpha: float = 0.0,
    direction_variant: str = "main",
    seed: int | None = None,
    teacher_forced: Sequence[Any] | None = None,
    parts: Mapping[str, str] | None = None,
    behaviour: str = "refusal",
    scores: Sequence[Any] | None = None,
    site: Mapping[str, Any] | None = None,
) -> list[dict[str, Any]]:
    """One row per prompt, every score computed by `metrics` (DESIGN.md row schema).

    `parts` maps prompt id -> select/report (default: the config's split of this split's file).
    `behaviour` names what the rows measure; its scorer's `scores` (one per generation) fill the
    behaviour columns. For refusal they are the refusal metric's own, computed here; the
    refusal, helpfulness and confound columns are filled for every behaviour. `site` replaces
    the direction columns that the config's refusal direction would give (hook_point,
    position, alpha_scale, direction_method) for a behaviour with a direction of its own.
    """
    part_of = parts if parts is not None else file_parts(cfg).get(split, {})
    if scores is not None and len(scores) != len(gens):
        raise ValueError(f"{len(scores)} scores for {len(gens)} generations")
    rows: list[dict[str, Any]] = []
    cfg_hash = config_hash(cfg)  # once per call, not per row (the recorder sets it again)
    for i, (p, g) in enumerate(zip(prompts, gens, strict=True)):
        r = refusal(g.text, threshold=cfg.metrics.refusal_threshold)
        b = scores[i] if scores is not None else None
        h = helpfulness(g.text, threshold=cfg.metrics.helpful_threshold, refusal_result=r)
        d = degeneracy(g.text, list(g.token_ids))
        t = token_stats(list(g.logprobs), list(g.entropies))
        tf = teacher_forced[i] if teacher_forced is not None else None
        rows.append(
            {
                "run_id": run_id,
                "config_hash": cfg_hash,
                "experiment": experiment,
                "case_id": case,
                "model": model.info.name,
                "split": split,
                "part": part_of.get(p.id, ""),
                "prompt_id": p.id,
                "family": p.family,
                "style": p.style,
                "template": p.template,
                "layer": layer,
                "hook_point": cfg.direction.hook_point,
                "position": cfg.direction.position,
                "intervention": intervention,
                "alpha": float(alpha),
                "alpha_scale": cfg.direction.alpha_scale,
                "direction_method": cfg.direction.method,
                "direction_variant": direction_variant,
                "seed": cfg.seed if seed is None else seed,
                "prompt": p.prompt,
                "completion": g.text,
                "n_tokens": len(g.token_ids),
                "refusal_score": r.score,
                "is_refusal": r.is_refusal,
                "matched_phrases": list(r.matched_phrases),
                "helpfulness_score": h.score,
                "is_helpful": h.is_helpful,
                "mean_entropy": t.mean_entropy,
                "mean_logprob": t.mean_logprob,
                "distinct_2": d.distinct_2,
                "repeated_ngram_frac": d.repeated_ngram_frac,
                "collapsed": d.collapsed,
                "first_token_refusal_prob": g.first_token_mass,
                "kl_to_baseline": None if tf is None else tf.kl_to_baseline,
                "ce_on_baseline": None if tf is None else tf.ce,
                "proj_before": g.proj_before,
                "proj_after": g.proj_after,
                "behaviour": behaviour,
                "behaviour_score": r.score if b is None else b.score,
                "behaviour_flag": r.is_refusal if b is None else b.flag,
                "behaviour_evidence": list(r.matched_phrases if b is None else b.evidence),
                **(site or {}),
            }
        )
    return rows


def rate(rows: Sequence[Mapping[str, Any]], column: str) -> float:
    """Fraction of rows whose boolean column is true (nan for no rows)."""
    if not rows:
        return float("nan")
    return sum(bool(r[column]) for r in rows) / len(rows)
