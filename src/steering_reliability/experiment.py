"""One experiment's orchestration: prompts -> steered generation -> metrics -> rows.

Called by the pytest cases in experiments/ and by the notebooks; holds no pytest code and no
metric of its own (every score comes from `metrics`).
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .atomic import atomic_write
from .config import Config, config_hash
from .models import LoadedModel, encode_prompt, format_prompt
from .prompts import Prompt, check_prompt_lengths, load_prompts
from .prompts.generate import SPLITS
from .timing import timed

# Every prompt set is split once into a part where choices are made (operating point, best
# layer, thresholds) and a part the headline numbers are reported on (VALIDITY.md section 1).
PARTS: tuple[str, ...] = ("select", "report")
GENERATION_CACHE_VERSION = 2  # bump when the engine's numerics change


def alpha_id(alpha: float) -> str:
    """1.0 -> '1', 0.5 -> '0.5': the alpha as it appears in case ids."""
    return f"{alpha:g}"


def case_id(layer: int, intervention: str, alpha: float) -> str:
    """The case id contract of DESIGN.md: layer{L}-{intervention}-a{alpha}."""
    return f"layer{layer}-{intervention}-a{alpha_id(alpha)}"


@dataclass(frozen=True)
class Case:
    """One cell of the sweep grid."""

    layer: int
    intervention: str
    alpha: float

    @property
    def id(self) -> str:
        return case_id(self.layer, self.intervention, self.alpha)


def sweep_cases(cfg: Config) -> list[Case]:
    """The grid in the config's declared order (layers, then interventions, then alphas)."""
    return [
        Case(layer, kind, alpha)
        for layer in cfg.sweep.layers
        for kind in cfg.sweep.interventions
        for alpha in cfg.sweep.alphas
    ]


def _subset(prompts: tuple[Prompt, ...], n: int | None, seed: str) -> tuple[Prompt, ...]:
    """A seeded sample of n prompts kept in file order (str seeds are stable across processes)."""
    if n is None or n >= len(prompts):
        return prompts
    chosen = set(random.Random(seed).sample(range(len(prompts)), n))
    return tuple(p for i, p in enumerate(prompts) if i in chosen)


def split_files(cfg: Config) -> dict[str, Path]:
    return {
        "harm_train": cfg.resolve_path(cfg.prompts.harm_train),
        "harm_test": cfg.resolve_path(cfg.prompts.harm_test),
        "benign": cfg.resolve_path(cfg.prompts.benign),
    }


def assign_parts(prompts: Sequence[Prompt], seed: str) -> dict[str, str]:
    """prompt id -> "select" or "report": a seeded half/half split stratified by family x style.

    Within each (family, style) stratum the prompts are shuffled and dealt alternately, the
    first card going to whichever part is smaller so far, so every stratum and the whole set are
    split as evenly as their sizes allow. Depends only on the prompts and the seed string.
    """
    strata: dict[tuple[str, str], list[Prompt]] = {}
    for p in prompts:
        strata.setdefault((p.family, p.style), []).append(p)
    rng = random.Random(seed)
    parts: dict[str, str] = {}
    count = dict.fromkeys(PARTS, 0)
    for key in sorted(strata):
        group = sorted(strata[key], key=lambda p: p.id)
        rng.shuffle(group)
        first = min(PARTS, key=lambda part: (count[part], PARTS.index(part)))
        order = (first, *(x for x in PARTS if x != first))
        for i, p in enumerate(group):
            part = order[i % 2]
            parts[p.id] = part
            count[part] += 1
    return parts


def file_parts(cfg: Config) -> dict[str, dict[str, str]]:
    """split -> (prompt id -> part) over every prompt of each split's file (recorded in run.json)."""
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
    files = split_files(cfg)
    return {
        s: assign_parts(load_prompts(files[s], split=s), f"{cfg.seed}:parts:{s}") for s in SPLITS
    }


def select_prompts(cfg: Config) -> dict[str, tuple[Prompt, ...]]:
    """The evaluation prompts of each split: when the config limits them, a seeded sample of
    half from each part (select, report), so both parts are always measured; file order."""
    files = split_files(cfg)
    limits = {
        "harm_train": cfg.prompts.n_train,
        "harm_test": cfg.prompts.n_test,
        "benign": cfg.prompts.n_benign,
    }
    parts = file_parts(cfg)
    return {
        s: sample_parts(load_prompts(files[s], split=s), parts[s], limits[s], f"{cfg.seed}:{s}")
        for s in SPLITS
    }


def sample_parts(
    prompts: tuple[Prompt, ...], parts: Mapping[str, str], n: int | None, seed: str
) -> tuple[Prompt, ...]:
    """n prompts (None: all), half from each part (select, report), each half a seeded sample
    (`{seed}:{part}`); file order."""
    if n is None or n >= len(prompts):
        return prompts
    chosen: set[str] = set()
    for k, part in enumerate(PARTS):
        pool = tuple(p for p in prompts if parts[p.id] == part)
        take = (n + 1) // 2 if k == 0 else n // 2
        chosen |= {p.id for p in _subset(pool, take, f"{seed}:{part}")}
    return tuple(p for p in prompts if p.id in chosen)


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
        from .errors import ConfigError

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
    files = split_files(cfg)
    budget = model.info.n_ctx - cfg.generation.max_new_tokens

    def count(text: str) -> int:
        formatted = format_prompt(model.tokenizer, text, system_prompt=cfg.model.system_prompt)
        return len(encode_prompt(model.tokenizer, formatted))

    for split, prompts in splits.items():
        check_prompt_lengths(prompts, count, budget, file=str(files[split]))


# ---------------------------------------------------------------- generation with a shared cache


@dataclass(frozen=True)
class GenerationRequest:
    """Everything a batch of generations depends on (its hash names the cache file)."""

    model_sha256: str
    prompt_ids: tuple[str, ...]
    prompts: tuple[str, ...]
    system_prompt: str | None
    max_new_tokens: int
    temperature: float
    top_p: float
    seed: int
    steering: str  # a readable description of the steering ("none" for the baseline)
    extra: Mapping[str, Any] = field(default_factory=dict)

    def key(self) -> str:
        d = {k: (list(v) if isinstance(v, tuple) else v) for k, v in self.__dict__.items()}
        d["extra"] = dict(self.extra)
        d["version"] = GENERATION_CACHE_VERSION
        blob = json.dumps(d, sort_keys=True, separators=(",", ":"), default=str)
        return hashlib.blake2b(blob.encode(), digest_size=12).hexdigest()


def cached_generate(
    model: LoadedModel,
    request: GenerationRequest,
    *,
    steerings: Sequence[Any] = (),
    batch_size: int = 64,
    track_token_ids: Sequence[int] | None = None,
    cache_dir: Path | None = None,
    progress: bool = False,
) -> list[Any]:
    """generate() once across processes: content-addressed file under a lock, published atomically.

    Used for the alpha = 0 baseline, which every case of every worker compares against.
    """
    import torch
    from filelock import FileLock

    from .generation import Generation, generate
    from .models import default_cache_dir

    folder = (cache_dir or default_cache_dir()) / "generations"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{request.key()}.pt"

    def read() -> list[Any] | None:
        if not path.exists():
            return None
        rows: list[dict[str, Any]] = torch.load(path, weights_only=True)
        return [Generation(**_untuple(r, back=True)) for r in rows]

    found = read()
    if found is not None:
        return found
    with FileLock(str(path) + ".lock"):
        found = read()
        if found is not None:
            return found
        gens = generate(
            model,
            list(request.prompts),
            prompt_ids=list(request.prompt_ids),
            max_new_tokens=request.max_new_tokens,
            temperature=request.temperature,
            top_p=request.top_p,
            seed=request.seed,
            steerings=steerings,
            system_prompt=request.system_prompt,
            batch_size=batch_size,
            track_token_ids=track_token_ids,
            progress=progress,
        )
        atomic_write(path, lambda fh: torch.save([_untuple(g.__dict__) for g in gens], fh))
        return gens


def _untuple(d: Mapping[str, Any], *, back: bool = False) -> dict[str, Any]:
    """Generation fields <-> plain lists (weights_only torch.load reads lists, not tuples)."""
    if back:
        return {k: (tuple(v) if isinstance(v, list) else v) for k, v in d.items()}
    return {k: (list(v) if isinstance(v, tuple) else v) for k, v in d.items()}


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
    from .models.sites import variant_key

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
    from .interventions import Steering

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
    from .generation import generate

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
    from .metrics import degeneracy, helpfulness, refusal, token_stats

    part_of = parts if parts is not None else file_parts(cfg).get(split, {})
    if scores is not None and len(scores) != len(gens):
        raise ValueError(f"{len(scores)} scores for {len(gens)} generations")
    rows: list[dict[str, Any]] = []
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
                "config_hash": config_hash(cfg),
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
