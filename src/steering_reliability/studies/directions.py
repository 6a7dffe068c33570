"""Directions for a run: the configured builder over many layers, through the cache.

All missing layers are built by one builder call (one set of forward passes for N layers);
layers already cached come back without touching the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from steering_reliability.config import Config
from steering_reliability.directions.builders import contrastive_prefix, diff_in_means
from steering_reliability.directions.cache import (
    check_variant,
    file_meta,
    get_or_compute_many,
    texts_sha256,
)
from steering_reliability.directions.direction import Direction
from steering_reliability.errors import DirectionError, InputError
from steering_reliability.models import LoadedModel
from steering_reliability.prompts import load_prompts

# Variants that choose the prefixes: "main" the configured ones, "alt" the alternate ones. Any
# other safe name (cache.check_variant: "seed-half-0", "random-3") uses the main prefixes and
# only gives the direction its own cache key and export folder.
VARIANTS: tuple[str, ...] = ("main", "alt")


class PromptLike(Protocol):
    """Anything with an id and a prompt text (prompts.Prompt)."""

    @property
    def id(self) -> str: ...

    @property
    def prompt(self) -> str: ...


def ids_and_texts(prompts: Sequence[PromptLike] | Sequence[str]) -> tuple[list[str], list[str]]:
    """(ids, texts); bare strings get positional ids '#0', '#1', ..."""
    ids: list[str] = []
    texts: list[str] = []
    items: Sequence[PromptLike | str] = prompts
    for i, p in enumerate(items):
        if isinstance(p, str):
            ids.append(f"#{i}")
            texts.append(p)
        else:
            ids.append(str(p.id))
            texts.append(str(p.prompt))
    return ids, texts


def prefixes(cfg: Config, variant: str) -> tuple[str, str]:
    """(refusal, compliance) prefixes: the alternate ones for "alt", the main ones otherwise."""
    d = cfg.direction
    if check_variant(variant) == "alt":
        return d.alt_refusal_prefix, d.alt_compliance_prefix
    return d.refusal_prefix, d.compliance_prefix


def key_fields(
    model: LoadedModel,
    cfg: Config,
    prompts: Sequence[PromptLike] | Sequence[str],
    layer: int,
    *,
    harmless: Sequence[PromptLike] | Sequence[str] | None = None,
    variant: str = "main",
) -> dict[str, Any]:
    """Everything the vector at `layer` depends on (hashed into the cache key)."""
    check_variant(variant)
    d = cfg.direction
    ids, texts = ids_and_texts(prompts)
    fields: dict[str, Any] = {
        "model": model.info.name,
        "weights_sha256": model.info.weights_sha256,
        **({} if model.info.dtype == "float32" else {"dtype": model.info.dtype}),
        "prompt_format": model.info.prompt_format,
        "system_prompt": cfg.model.system_prompt,
        "method": d.method,
        "variant": variant,
        "layer": int(layer),
        "hook_point": d.hook_point,
        "position": d.position,
        "prompt_ids": ids,
        "prompts_sha256": texts_sha256(texts),
        "normalisation": "none: raw mean difference (alpha_scale is applied at use, not stored)",
        "batch_size": d.batch_size,  # changes the recorded per-batch cosines
    }
    if d.method == "contrastive_prefix":
        fields["refusal_prefix"], fields["compliance_prefix"] = prefixes(cfg, variant)
    else:
        h_ids, h_texts = ids_and_texts(harmless or [])
        fields["harmless_ids"], fields["harmless_sha256"] = h_ids, texts_sha256(h_texts)
    return fields


def source_file(
    given: str | Path | None,
    configured: str | Path,
    prompts: Sequence[PromptLike] | Sequence[str] | None,
) -> Path | None:
    """The prompt file to record: `given`; without one, the `configured` file when every prompt
    (id and text) is in it; otherwise None. Bare strings have no ids to check: None."""
    if given is not None:
        return Path(given)
    if not prompts or any(isinstance(p, str) for p in prompts):
        return None
    path = Path(configured)
    if not path.is_file():
        return None

    try:
        held = {(p.id, p.prompt) for p in load_prompts(path)}
    except (InputError, OSError, UnicodeError):
        return None
    ids, texts = ids_and_texts(prompts)
    return path if all(pair in held for pair in zip(ids, texts, strict=True)) else None


def directions_for_layers(
    model: LoadedModel,
    cfg: Config,
    prompts: Sequence[PromptLike] | Sequence[str],
    layers: Sequence[int],
    *,
    harmless: Sequence[PromptLike] | Sequence[str] | None = None,
    variant: str = "main",
    prompt_file: str | Path | None = None,
    harmless_file: str | Path | None = None,
    cache_dir: str | Path | None = None,
) -> dict[int, Direction]:
    """The configured direction at each layer: cached ones instantly, missing ones in one pass.

    `prompts` (harm_train) build the direction; only the first cfg.prompts.n_direction are used
    (slicing again is harmless). diff_in_means also needs `harmless`.

    `variant` names the direction: its cache key and its export folder
    `<model>/<method>/<variant>/layer_<L>`. "main" (the default) is the configured direction
    the sweep uses; "alt" uses the alternate prefixes (the prefix-template check); any other
    safe name (letters, digits, '-', '_': "seed-half-0", "random-3") uses the main prefixes and
    keeps a direction built from other prompts out of main's cache entry and export.

    `prompt_file` / `harmless_file`: the files the prompts came from, recorded in meta.json
    (repo-relative, with sha256). Without one, the config's harm_train / benign file is recorded
    when it holds every prompt given (same id and text).
    """
    d = cfg.direction
    if cfg.prompts.n_direction is not None:
        prompts = prompts[: cfg.prompts.n_direction]
    prefixes(cfg, variant)
    if d.method == "diff_in_means":
        if harmless is None:
            raise DirectionError(
                "diff_in_means needs harmless prompts",
                field="harmless",
                hint="pass the benign prompts as harmless=",
            )
        if d.position != "last_prompt":
            raise DirectionError(
                "diff_in_means reads at the last prompt token",
                field="direction.position",
                value=d.position,
                expected="last_prompt",
                hint="prefix positions belong to contrastive_prefix",
            )
    fields = {
        layer: key_fields(model, cfg, prompts, layer, harmless=harmless, variant=variant)
        for layer in layers
    }
    harm_file = source_file(prompt_file, cfg.resolve_path(cfg.prompts.harm_train), prompts)
    benign_file = source_file(harmless_file, cfg.resolve_path(cfg.prompts.benign), harmless)
    extra: Mapping[str, Any] = {
        **file_meta("prompt_file", harm_file),
        **file_meta("harmless_file", benign_file),
        "alpha_scale": d.alpha_scale,
        "n_layers_model": model.info.n_layers,
    }
    _, texts = ids_and_texts(prompts)

    def compute(missing: list[int]) -> dict[int, Direction]:
        if d.method == "contrastive_prefix":
            refusal, compliance = prefixes(cfg, variant)
            return contrastive_prefix(
                model,
                texts,
                layers=missing,
                hook_point=d.hook_point,
                position=d.position,
                refusal_prefix=refusal,
                compliance_prefix=compliance,
                system_prompt=cfg.model.system_prompt,
                batch_size=d.batch_size,
            )
        _, h_texts = ids_and_texts(harmless or [])
        found = diff_in_means(
            model,
            texts,
            h_texts,
            layers=missing,
            hook_point=d.hook_point,
            positions=(-1,),
            system_prompt=cfg.model.system_prompt,
            batch_size=d.batch_size,
        )
        return {layer: v for (layer, _), v in found.items()}

    return get_or_compute_many(fields, compute, cache_dir, extra_meta=extra)
