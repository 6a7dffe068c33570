"""Direction builders: contrastive prefixes (default), difference in means, outcome-conditioned.

Each builder reads all requested layers from one forward pass per batch and returns one
Direction per layer (or per layer and position), with its norm and stability statistics.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from torch import Tensor

from steering_reliability.directions.activations import Span, encode, encode_plain, residual_spans
from steering_reliability.directions.direction import Direction, make_direction
from steering_reliability.errors import DirectionError, suggest
from steering_reliability.models import LoadedModel, format_prompt

CONTRASTIVE_POSITIONS: tuple[str, ...] = ("first_prefix", "prefix_mean")

_LAST_PROMPT_WHY = (
    "at the last prompt token both teacher-forced sequences (prompt + refusal prefix, prompt + "
    "compliance prefix) are identical under causal attention, so every difference is exactly zero"
)


def _check_position(position: str) -> None:
    if position == "last_prompt":
        raise DirectionError(
            "contrastive_prefix cannot read at the last prompt token",
            field="direction.position",
            value=position,
            expected=f"one of {list(CONTRASTIVE_POSITIONS)}",
            hint=_LAST_PROMPT_WHY,
        )
    if position not in CONTRASTIVE_POSITIONS:
        raise DirectionError(
            "unknown position for contrastive_prefix",
            field="direction.position",
            value=position,
            expected=f"one of {list(CONTRASTIVE_POSITIONS)}",
            hint=suggest(position, CONTRASTIVE_POSITIONS),
        )


def _formatted_ids(
    model: LoadedModel, prompts: Sequence[str], system_prompt: str | None
) -> list[list[int]]:
    if not prompts:
        raise DirectionError(
            "no prompts to build a direction from", field="prompts", expected="at least one"
        )
    tok = model.tokenizer
    return [encode(tok, format_prompt(tok, p, system_prompt=system_prompt)) for p in prompts]


def contrastive_prefix(
    model: LoadedModel,
    prompts: Sequence[str],
    *,
    layers: Sequence[int],
    hook_point: str = "resid_pre",
    position: str = "prefix_mean",
    refusal_prefix: str,
    compliance_prefix: str,
    system_prompt: str | None = None,
    batch_size: int = 16,
) -> dict[int, Direction]:
    """v = mean over prompts of resid(prompt + refusal prefix) - resid(prompt + compliance prefix).

    Read at the first prefix token or averaged over each sequence's own prefix tokens (the two
    prefixes have different token counts). Prefix ids are appended to the prompt's ids, so the
    prompt part is token-for-token the same in both sequences.
    """
    diffs, resid_norm, meta = contrastive_differences(
        model, prompts, layers=layers, hook_point=hook_point, position=position,
        refusal_prefix=refusal_prefix, compliance_prefix=compliance_prefix,
        system_prompt=system_prompt, batch_size=batch_size,
    )  # fmt: skip
    return {
        layer: make_direction(
            method="contrastive_prefix",
            layer=layer,
            hook_point=hook_point,
            position=position,
            diffs=diffs[:, j],
            mean_resid_norm=float(resid_norm[j]),
            batch_size=batch_size,
            meta=meta,
        )
        for j, layer in enumerate(layers)
    }


def contrastive_differences(
    model: LoadedModel,
    prompts: Sequence[str],
    *,
    layers: Sequence[int],
    hook_point: str = "resid_pre",
    position: str = "prefix_mean",
    refusal_prefix: str,
    compliance_prefix: str,
    system_prompt: str | None = None,
    batch_size: int = 16,
) -> tuple[Tensor, Tensor, dict[str, Any]]:
    """The per-prompt differences contrastive_prefix averages: ([n, n_layers, d], the mean
    per-token residual norm per layer [n_layers], the builder's metadata). Per-family
    directions are means over subsets of these rows; their spread is the family's consistency."""
    _check_position(position)
    tok = model.tokenizer
    pre = {
        "refusal_prefix": encode_plain(tok, refusal_prefix),
        "compliance_prefix": encode_plain(tok, compliance_prefix),
    }
    for name, ids in pre.items():
        if not ids:
            raise DirectionError(
                "empty prefix",
                field=f"direction.{name}",
                value=refusal_prefix if name == "refusal_prefix" else compliance_prefix,
                expected="a non-empty string",
            )
    ref, com = pre["refusal_prefix"], pre["compliance_prefix"]
    base = _formatted_ids(model, prompts, system_prompt)
    rows = [r for p in base for r in (p + ref, p + com)]  # row 2k: refusal, row 2k + 1: compliance

    def spans(i: int, length: int) -> list[Span]:
        start = len(base[i // 2])
        n_prefix = len(ref) if i % 2 == 0 else len(com)
        return [(start, start + (1 if position == "first_prefix" else n_prefix))]

    # batch_size counts prompts; each forward holds both sequences of each prompt.
    res = residual_spans(
        model, rows, layers=layers, hook_point=hook_point, spans=spans, batch_size=2 * batch_size
    )
    diffs = res.mean[0::2, :, 0] - res.mean[1::2, :, 0]  # [n, L, d]
    resid_norm = res.token_norm[:, :, 0].mean(0)  # [L]
    meta = {
        "refusal_prefix": refusal_prefix,
        "compliance_prefix": compliance_prefix,
        "n_refusal_prefix_tokens": len(ref),
        "n_compliance_prefix_tokens": len(com),
        "system_prompt": system_prompt,
        "model": model.info.name,
        "weights_sha256": model.info.weights_sha256,
    }
    return diffs, resid_norm, meta


def _two_groups(
    model: LoadedModel,
    method: str,
    a: Sequence[str],
    b: Sequence[str],
    *,
    layers: Sequence[int],
    hook_point: str,
    positions: Sequence[int],
    system_prompt: str | None,
    batch_size: int,
) -> dict[tuple[int, int], Direction]:
    """mean(resid of group a) - mean(resid of group b) at token positions counted from the end."""
    if not positions or any(not isinstance(p, int) or p >= 0 for p in positions):
        raise DirectionError(
            "positions must be negative token indices (from the end of the prompt)",
            field="positions",
            value=list(positions),
            expected="e.g. (-1,) or (-5, -4, -3, -2, -1)",
        )
    ids_a = _formatted_ids(model, a, system_prompt)
    ids_b = _formatted_ids(model, b, system_prompt)
    shortest = min(len(r) for r in ids_a + ids_b)
    if -min(positions) > shortest:
        raise DirectionError(
            "position before the start of the shortest formatted prompt",
            field="positions",
            value=min(positions),
            expected=f">= -{shortest}",
        )

    def spans(i: int, length: int) -> list[Span]:
        return [(length + p, length + p + 1) for p in positions]

    res = residual_spans(
        model,
        ids_a + ids_b,
        layers=layers,
        hook_point=hook_point,
        spans=spans,
        batch_size=batch_size,
    )
    n_a = len(ids_a)
    meta = {
        "system_prompt": system_prompt,
        "model": model.info.name,
        "weights_sha256": model.info.weights_sha256,
        "n_group_a": n_a,
        "n_group_b": len(ids_b),
    }
    out: dict[tuple[int, int], Direction] = {}
    for j, layer in enumerate(layers):
        for s, pos in enumerate(positions):
            out[(layer, pos)] = make_direction(
                method=method,
                layer=layer,
                hook_point=hook_point,
                position=str(pos),
                groups=(res.mean[:n_a, j, s], res.mean[n_a:, j, s]),
                mean_resid_norm=float(res.token_norm[:, j, s].mean()),
                batch_size=batch_size,
                meta=meta,
            )
    return out


def diff_in_means(
    model: LoadedModel,
    harmful: Sequence[str],
    harmless: Sequence[str],
    *,
    layers: Sequence[int],
    hook_point: str = "resid_pre",
    positions: Sequence[int] = (-1,),
    system_prompt: str | None = None,
    batch_size: int = 16,
) -> dict[tuple[int, int], Direction]:
    """Arditi et al.: mean(harmful) - mean(harmless) at the last instruction/template tokens.

    `positions` count from the end of the formatted prompt (-1: its last token, usually the
    chat template's post-instruction tokens); one Direction per (layer, position).
    """
    return _two_groups(
        model,
        "diff_in_means",
        harmful,
        harmless,
        layers=layers,
        hook_point=hook_point,
        positions=positions,
        system_prompt=system_prompt,
        batch_size=batch_size,
    )


def outcome_conditioned(
    model: LoadedModel,
    prompts: Sequence[str],
    labels: Sequence[bool],
    *,
    layers: Sequence[int],
    hook_point: str = "resid_pre",
    position: int = -1,
    system_prompt: str | None = None,
    batch_size: int = 16,
) -> dict[int, Direction]:
    """mean residual of prompts whose baseline completion refused minus those that did not."""
    if len(prompts) != len(labels):
        raise DirectionError(
            "one label per prompt",
            field="labels",
            value=f"{len(labels)} labels",
            expected=f"{len(prompts)} (one per prompt)",
        )
    refused = [p for p, y in zip(prompts, labels, strict=True) if y]
    helped = [p for p, y in zip(prompts, labels, strict=True) if not y]
    if not refused or not helped:
        raise DirectionError(
            "outcome_conditioned needs both refused and non-refused baseline completions",
            field="labels",
            value=f"{len(refused)} refused, {len(helped)} not refused",
            expected="at least one of each",
            hint="this model may never refuse at baseline; use contrastive_prefix, or label completions "
            "from a steered run",
        )
    found = _two_groups(
        model,
        "outcome_conditioned",
        refused,
        helped,
        layers=layers,
        hook_point=hook_point,
        positions=(position,),
        system_prompt=system_prompt,
        batch_size=batch_size,
    )
    return {layer: d for (layer, _), d in found.items()}


def diff_in_means_differences(
    model: LoadedModel,
    harmful: Sequence[str],
    harmless: Sequence[str],
    *,
    layers: Sequence[int],
    hook_point: str = "resid_pre",
    system_prompt: str | None = None,
    batch_size: int = 16,
) -> tuple[Tensor, Tensor]:
    """Each harmful prompt's residual at its last token minus the harmless prompts' mean there
    ([n_harmful, n_layers, d]; their mean is diff_in_means' direction at position -1), and the
    mean per-token residual norm per layer [n_layers]."""
    ids_a = _formatted_ids(model, harmful, system_prompt)
    ids_b = _formatted_ids(model, harmless, system_prompt)

    def spans(i: int, length: int) -> list[Span]:
        return [(length - 1, length)]

    res = residual_spans(
        model, ids_a + ids_b, layers=layers, hook_point=hook_point, spans=spans,
        batch_size=batch_size,
    )  # fmt: skip
    n_a = len(ids_a)
    diffs = res.mean[:n_a, :, 0] - res.mean[n_a:, :, 0].mean(0, keepdim=True)
    return diffs, res.token_norm[:, :, 0].mean(0)


def contrastive_pairs(
    model: LoadedModel,
    pairs: Sequence[tuple[str, str, str]],
    *,
    layers: Sequence[int],
    hook_point: str = "resid_pre",
    last_tokens: int = 32,
    system_prompt: str | None = None,
    batch_size: int = 16,
) -> dict[int, Direction]:
    """CAA (Rimsky et al.): v = mean over pairs of resid(prompt + positive) - resid(prompt +
    negative), each sequence mean-pooled over its continuation's tokens, at most the last
    `last_tokens` of them. pairs: (prompt, positive continuation, negative continuation).

    The continuations' ids are appended to the formatted prompt's ids (as contrastive_prefix
    does), so the prompt part is the same in both sequences and only the answers differ.
    """
    if last_tokens < 1:
        raise DirectionError("last_tokens must be positive", field="pair_tokens",
                             value=last_tokens, expected="an integer > 0")  # fmt: skip
    tok = model.tokenizer
    base = _formatted_ids(model, [p for p, _, _ in pairs], system_prompt)
    rows: list[list[int]] = []
    starts: list[int] = []
    for (prompt, pos, neg), ids in zip(pairs, base, strict=True):
        for text in (pos, neg):
            cont = encode_plain(tok, text)
            if not cont:
                raise DirectionError("empty continuation in a pair", field="pairs",
                                     value=prompt, expected="non-empty continuations")  # fmt: skip
            rows.append(ids + cont)
            starts.append(len(ids))

    def spans(i: int, length: int) -> list[Span]:
        return [(max(starts[i], length - last_tokens), length)]

    res = residual_spans(
        model, rows, layers=layers, hook_point=hook_point, spans=spans, batch_size=2 * batch_size
    )
    diffs = res.mean[0::2, :, 0] - res.mean[1::2, :, 0]  # [n, L, d]
    resid_norm = res.token_norm[:, :, 0].mean(0)
    meta = {
        "n_pairs": len(pairs),
        "last_tokens": last_tokens,
        "system_prompt": system_prompt,
        "model": model.info.name,
        "weights_sha256": model.info.weights_sha256,
    }
    return {
        layer: make_direction(
            method="contrastive_pairs", layer=layer, hook_point=hook_point,
            position=f"pair_last{last_tokens}", diffs=diffs[:, j],
            mean_resid_norm=float(resid_norm[j]), batch_size=batch_size, meta=meta,
        )
        for j, layer in enumerate(layers)
    }  # fmt: skip
