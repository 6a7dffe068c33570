"""Directional ablation everywhere (Arditi et al.): by hooks, or baked into a copy of the weights.

`full_ablation` removes v̂ from every layer's residual input and from every attention and MLP
output. `orthogonalize_weights` projects v̂ out of everything that writes to the residual stream
(embedding, attention o_proj, MLP down_proj), so the copy computes the same function with no
hooks. The unembedding is untied first: with tied embeddings, orthogonalising the embedding
would also change what the model reads out, which hook ablation does not.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from steering_reliability.errors import InterventionError
from steering_reliability.interventions.functions import HookFn, ablate, check_vector, unit
from steering_reliability.models import boot_bridge
from steering_reliability.models.sites import _inner, attn_and_mlp, decoder_layers, layer_lists


def _pre(fn: HookFn) -> Any:
    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args and isinstance(args[0], Tensor):
            return (fn(args[0]), *args[1:]), kwargs
        return args, {**kwargs, "hidden_states": fn(kwargs["hidden_states"])}

    return hook


def _post(fn: HookFn) -> Any:
    def hook(module: Any, args: tuple[Any, ...], output: Any) -> Any:
        if isinstance(output, tuple):
            return (fn(output[0]), *output[1:])
        return fn(output)

    return hook


@contextmanager
def full_ablation(model: Any, v: Tensor) -> Iterator[None]:
    """Ablate v̂ at every layer's residual input and every attention and MLP output, inside the block."""
    fn = ablate(check_vector(v, model.info.d_model), 1.0)
    handles: list[Any] = []
    try:
        for layers in layer_lists(model):
            for layer in layers:
                attn, mlp = attn_and_mlp(layer)
                handles.append(layer.register_forward_pre_hook(_pre(fn), with_kwargs=True))
                handles.append(attn.register_forward_hook(_post(fn)))
                handles.append(mlp.register_forward_hook(_post(fn)))
        yield
    finally:
        for h in handles:
            h.remove()


def _project_out_rows(weight: Tensor, u: Tensor) -> Tensor:
    """W with v̂ removed from its output space: rows index d_model (embedding) -> W - (W v̂) v̂ᵀ."""
    w = weight.double()
    return (w - torch.outer(w @ u, u)).to(weight.dtype)


def _project_out_cols(weight: Tensor, u: Tensor) -> Tensor:
    """W [d_model, d_in] (y = x Wᵀ) with v̂ removed from y: W - v̂ (v̂ᵀ W)."""
    w = weight.double()
    return (w - torch.outer(u, u @ w)).to(weight.dtype)


def _writer(module: nn.Module, names: tuple[str, ...]) -> nn.Linear:
    for n in names:
        sub = getattr(module, n, None)
        if isinstance(sub, nn.Linear):
            return sub
    raise InterventionError(
        f"cannot find the output projection of {type(module).__name__}",
        expected=f"one of {list(names)}",
        hint="weight orthogonalisation supports Llama-style layers",
    )


def _bridge_tokenizer(model: Any) -> Any:
    """A copy of the bridge's tokenizer that booting a second bridge accepts as it is.

    Booting normalises the tokenizer it is given (BOS handling) and reloads it by name when
    add_bos_token is unset, which fails offline for a tokenizer built in code.
    """
    tok = copy.deepcopy(getattr(model.bridge, "tokenizer", None) or model.tokenizer)
    tok.init_kwargs.setdefault("name_or_path", getattr(tok, "name_or_path", ""))
    tok.init_kwargs["add_bos_token"] = True
    return tok


def orthogonalize_weights(model: Any, v: Tensor) -> Any:
    """A deep copy of `model` (a LoadedModel) whose weights cannot write along v̂."""
    u = unit(check_vector(v, model.info.d_model)).double()
    hf: Any = copy.deepcopy(model.hf_model)
    for layer in decoder_layers(hf, model.info.n_layers):
        if any(
            hasattr(_inner(layer), n) for n in ("post_feedforward_layernorm", "post_attention_norm")
        ):
            raise InterventionError(
                "weight orthogonalisation needs attention/MLP outputs added to the "
                "residual directly; this architecture normalises them first",
                hint="use full_ablation (hooks) instead",
            )
    emb = hf.get_input_embeddings()
    out = hf.get_output_embeddings()
    with torch.no_grad():
        u = u.to(emb.weight.device)
        if out is not None and out.weight is emb.weight:  # untie: the read-out keeps the original
            out.weight = nn.Parameter(emb.weight.detach().clone(), requires_grad=False)
            hf.config.tie_word_embeddings = False
        emb.weight.copy_(_project_out_rows(emb.weight, u))
        for layer in decoder_layers(hf, model.info.n_layers):
            attn, mlp = attn_and_mlp(layer)
            for lin in (
                _writer(attn, ("o_proj", "out_proj", "dense")),
                _writer(mlp, ("down_proj", "fc2", "c_proj", "dense_4h_to_h")),
            ):
                lin.weight.copy_(_project_out_cols(lin.weight, u))
                if lin.bias is not None:
                    lin.bias.copy_(
                        (lin.bias.double() - (lin.bias.double() @ u) * u).to(lin.bias.dtype)
                    )
    hub_id = getattr(getattr(model.bridge, "cfg", None), "model_name", None) or model.info.name
    bridge = boot_bridge(hub_id, hf, _bridge_tokenizer(model))
    digest = hashlib.sha256(model.info.weights_sha256.encode() + u.float().cpu().numpy().tobytes())
    info = dataclasses.replace(
        model.info, name=f"{model.info.name}+orthogonalized", weights_sha256=digest.hexdigest()
    )
    return dataclasses.replace(model, bridge=bridge, hf_model=hf, info=info, extra={})
