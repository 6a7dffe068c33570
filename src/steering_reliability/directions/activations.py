"""Residual-stream reads: every requested layer from one forward pass per batch.

Reads are torch hooks on the decoder layers of the plain HF model (SDPA attention, the tree the
generation engine runs; see models.sites): a
pre-hook for resid_pre (= bridge `blocks.{L}.hook_in`), a forward hook for resid_post
(= `blocks.{L}.hook_out`). Read hooks are registered last, so they see any active steering at
the same site. The forward stops right after the deepest requested site: later blocks and the
unembedding are never computed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from steering_reliability.errors import DirectionError, InterventionError
from steering_reliability.models import LoadedModel
from steering_reliability.models import encode_prompt as encode
from steering_reliability.models.sites import (
    check_hook_point,
    check_layer,
    decoder_layers,
    model_device,
)
from steering_reliability.timing import timed

Span = tuple[int, int]  # [start, stop) token indices of one row, averaged over
SpanFn = Callable[[int, int], Sequence[Span]]  # (row index, row length) -> that row's spans


class _StopForward(Exception):
    """Raised by the deepest read hook: everything after it is not needed."""


@dataclass(frozen=True, eq=False)
class SpanResiduals:
    """Residuals averaged over token spans, plus the mean per-token norm over the same tokens."""

    mean: Tensor  # [n, n_layers, n_spans, d_model]
    token_norm: Tensor  # [n, n_layers, n_spans]


def encode_plain(tokenizer: Any, text: str) -> list[int]:
    """Token ids of a continuation (a prefix or completion): never any special tokens."""
    return list(tokenizer(text, add_special_tokens=False).input_ids)


def check_site(layer: int, hook_point: str, model: LoadedModel) -> None:
    """Refuse an unknown hook point or a layer outside the model (the same checks as the interventions')."""
    try:
        check_hook_point(hook_point)
        check_layer(layer, model.info.n_layers, model.info.name, field="layers")
    except InterventionError as exc:
        raise DirectionError(
            exc.problem, field=exc.field, value=exc.value, expected=exc.expected, hint=exc.hint
        ) from None


def _check_spans(spans: Sequence[Span], row: int, length: int, n_spans: int | None) -> list[Span]:
    out = [(int(a), int(b)) for a, b in spans]
    if not out:
        raise DirectionError("no token span to read", field="spans", value=f"row {row}: []")
    if n_spans is not None and len(out) != n_spans:
        raise DirectionError(
            "every row must have the same number of spans",
            field="spans",
            value=f"row {row}: {len(out)} spans",
            expected=f"{n_spans}",
        )
    for a, b in out:
        if not 0 <= a < b <= length:
            raise DirectionError(
                "token span outside the row",
                field="spans",
                value=(a, b),
                expected=f"0 <= start < stop <= {length} (row {row} has {length} tokens)",
            )
    return out


@timed("direction builds")
def residual_spans(
    model: LoadedModel,
    inputs: Sequence[str] | Sequence[Sequence[int]],
    *,
    layers: Sequence[int],
    hook_point: str = "resid_pre",
    spans: SpanFn,
    batch_size: int = 16,
) -> SpanResiduals:
    """Mean residual over each row's spans at every layer; one forward per batch of rows.

    Strings are encoded with `encode`; id lists are used as they are. Rows are batched by length
    (less padding) and right-padded: under causal attention the real tokens never see the pads,
    and position ids stay 0..len-1, so a padded row reads as it would alone. fp32 on output.
    """
    if not layers:
        raise DirectionError("no layers requested", field="layers", value=list(layers))
    if len(set(layers)) != len(layers):
        raise DirectionError(
            "duplicate layers", field="layers", value=list(layers), expected="unique"
        )
    if batch_size < 1:
        raise DirectionError("batch size must be positive", field="batch_size", value=batch_size)
    tok = model.tokenizer
    rows = [encode(tok, x) if isinstance(x, str) else [int(t) for t in x] for x in inputs]
    if not rows:
        raise DirectionError(
            "no inputs to read residuals from", field="inputs", expected="at least one"
        )
    for layer in layers:
        check_site(layer, hook_point, model)
    deepest = max(range(len(layers)), key=lambda j: layers[j])
    row_spans = [_check_spans(spans(0, len(rows[0])), 0, len(rows[0]), None)]
    n_spans = len(row_spans[0])
    for i in range(1, len(rows)):
        row_spans.append(_check_spans(spans(i, len(rows[i])), i, len(rows[i]), n_spans))
    n, d = len(rows), model.info.d_model
    mean = torch.zeros(n, len(layers), n_spans, d)  # [n, L, S, d]
    norm = torch.zeros(n, len(layers), n_spans)  # [n, L, S]
    device = model_device(model)
    pad_id = tok.pad_token_id if tok.pad_token_id is not None else 0
    captured: dict[int, Tensor] = {}

    def keep(j: int, value: Any) -> None:
        captured[j] = value[0] if isinstance(value, tuple) else value
        if j == deepest:
            raise _StopForward

    def pre_hook(j: int) -> Callable[..., None]:
        def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
            keep(j, args[0] if args and isinstance(args[0], Tensor) else kwargs["hidden_states"])

        return hook

    def post_hook(j: int) -> Callable[..., None]:
        def hook(module: Any, args: Any, output: Any) -> None:
            keep(j, output)

        return hook

    net = model.hf_model
    blocks = decoder_layers(net, model.info.n_layers)
    order = sorted(range(n), key=lambda i: len(rows[i]))
    if hook_point == "resid_pre":
        handles = [
            blocks[layer].register_forward_pre_hook(pre_hook(j), with_kwargs=True)
            for j, layer in enumerate(layers)
        ]
    else:
        handles = [
            blocks[layer].register_forward_hook(post_hook(j)) for j, layer in enumerate(layers)
        ]
    try:
        for b0 in range(0, n, batch_size):
            idx = order[b0 : b0 + batch_size]
            t = max(len(rows[i]) for i in idx)
            ids = torch.full((len(idx), t), pad_id, dtype=torch.long)
            mask = torch.zeros((len(idx), t), dtype=torch.long)
            for k, i in enumerate(idx):
                ids[k, : len(rows[i])] = torch.tensor(rows[i])
                mask[k, : len(rows[i])] = 1
            captured.clear()
            with torch.inference_mode(), contextlib.suppress(_StopForward):
                net(input_ids=ids.to(device), attention_mask=mask.to(device), use_cache=False)
            for j in range(len(layers)):
                h = captured[j].float().cpu()  # [b, t, d]
                for k, i in enumerate(idx):
                    for s, (a, e) in enumerate(row_spans[i]):
                        seg = h[k, a:e]  # [span, d]
                        mean[i, j, s] = seg.mean(0)
                        norm[i, j, s] = seg.norm(dim=-1).mean()
    finally:
        for handle in handles:
            handle.remove()
    return SpanResiduals(mean=mean, token_norm=norm)


def residuals(
    model: LoadedModel,
    inputs: Sequence[str] | Sequence[Sequence[int]],
    *,
    layers: Sequence[int],
    hook_point: str = "resid_pre",
    position: int | Callable[[int, int], Span] = -1,
    batch_size: int = 16,
) -> Tensor:
    """Residual at one position (negative: from the row's end) or one span per row.

    Returns [n, len(layers), d_model], fp32.
    """
    if isinstance(position, int):
        p = position

        def fn(i: int, length: int) -> Sequence[Span]:
            a = p if p >= 0 else length + p
            return [(a, a + 1)]
    else:
        pos_fn = position

        def fn(i: int, length: int) -> Sequence[Span]:
            return [pos_fn(i, length)]

    out = residual_spans(
        model, inputs, layers=layers, hook_point=hook_point, spans=fn, batch_size=batch_size
    )
    return out.mean[:, :, 0]
