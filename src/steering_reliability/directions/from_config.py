"""Directions for a run: the configured builder over many layers, through the cache.

All missing layers are built by one builder call (one set of forward passes for N layers);
layers already cached come back without touching the model.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

from ..config import Config
from ..errors import DirectionError
from ..models import LoadedModel
from .builders import contrastive_prefix, diff_in_means
from .cache import get_or_compute_many, texts_sha256
from .direction import Direction

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


def _prefixes(cfg: Config, variant: str) -> tuple[str, str]:
    d = cfg.direction
    if variant == "main":
        return d.refusal_prefix, d.compliance_prefix
    if variant == "alt":
        return d.alt_refusal_prefix, d.alt_compliance_prefix
    raise DirectionError(
        "unknown direction variant",
        field="variant",
        value=variant,
        expected=f"one of {list(VARIANTS)}",
    )


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
    d = cfg.direction
    ids, texts = ids_and_texts(prompts)
    fields: dict[str, Any] = {
        "model": model.info.name,
        "weights_sha256": model.info.weights_sha256,
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
        fields["refusal_prefix"], fields["compliance_prefix"] = _prefixes(cfg, variant)
    else:
        h_ids, h_texts = ids_and_texts(harmless or [])
        fields["harmless_ids"], fields["harmless_sha256"] = h_ids, texts_sha256(h_texts)
    return fields


def _file_meta(name: str, path: str | Path | None) -> dict[str, Any]:
    if path is None:
        return {name: None, f"{name}_sha256": None}
    from ..prompts import file_sha256

    return {name: str(path), f"{name}_sha256": file_sha256(path)}


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
    (slicing again is harmless). diff_in_means also needs `harmless`. `variant="alt"` uses the
    alternate prefixes (the prefix-template robustness check).
    """
    d = cfg.direction
    if cfg.prompts.n_direction is not None:
        prompts = prompts[: cfg.prompts.n_direction]
    _prefixes(cfg, variant)
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
    extra: Mapping[str, Any] = {
        **_file_meta("prompt_file", prompt_file),
        **_file_meta("harmless_file", harmless_file),
        "alpha_scale": d.alpha_scale,
        "n_layers_model": model.info.n_layers,
    }
    _, texts = ids_and_texts(prompts)

    def compute(missing: list[int]) -> dict[int, Direction]:
        if d.method == "contrastive_prefix":
            refusal, compliance = _prefixes(cfg, variant)
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
