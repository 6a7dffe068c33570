"""Residual sites, hook names and the raw (bridge-free) HF module tree.

Directions read these sites and interventions write to them, so both import from here.

TransformerBridge replaces the HF submodules in place by wrappers that re-implement attention
eagerly with extra hook points: convenient for run_with_cache, but slower than the HF model it
wraps. `raw_model(hf_model)` is a second module tree over the *same* parameter tensors (no copy)
with every wrapper replaced by the HF module it wraps and SDPA attention: the generation engine
runs on it. Steering hooks are registered on the decoder layers of both trees, so a steering
applies whichever forward runs, exactly once.
"""

from __future__ import annotations

import copy
import weakref
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from ..config import HOOK_POINTS
from ..errors import InterventionError, suggest

# resid_pre = input of decoder layer L (bridge blocks.{L}.hook_in = HF hidden_states[L]);
# resid_post = output of decoder layer L (bridge blocks.{L}.hook_out = HF hidden_states[L+1]).
HOOK_SUFFIX: dict[str, str] = {"resid_pre": "hook_in", "resid_post": "hook_out"}
assert tuple(HOOK_SUFFIX) == HOOK_POINTS
_BRIDGE_ALIASES: dict[str, str] = {
    "hook_in": "resid_pre",
    "hook_resid_pre": "resid_pre",
    "hook_out": "resid_post",
    "hook_resid_post": "resid_post",
}
_LAYER_PATHS = (
    "model.layers",
    "model.language_model.layers",
    "transformer.h",
    "gpt_neox.layers",
    "model.decoder.layers",
    "layers",
)
_HOOK_DICTS = (
    "_forward_hooks",
    "_forward_hooks_with_kwargs",
    "_forward_hooks_always_called",
    "_forward_pre_hooks",
    "_forward_pre_hooks_with_kwargs",
    "_backward_hooks",
    "_backward_pre_hooks",
    "_state_dict_hooks",
    "_state_dict_pre_hooks",
    "_load_state_dict_pre_hooks",
    "_load_state_dict_post_hooks",
)


def hook_name(layer: int, hook_point: str) -> str:
    """The bridge hook name of a residual site: blocks.{L}.hook_in (resid_pre) / hook_out."""
    return f"blocks.{int(layer)}.{HOOK_SUFFIX[check_hook_point(hook_point)]}"


def check_hook_point(hook_point: str, *, field: str = "hook_point", names: Any = ()) -> str:
    """hook_point if it is one of HOOK_POINTS, else InterventionError with the close names."""
    if hook_point in HOOK_SUFFIX:
        return hook_point
    tail = str(hook_point).rsplit(".", 1)[-1]
    if tail in _BRIDGE_ALIASES:
        hint = (
            f"{hook_point!r} is a bridge hook name; pass hook_point={_BRIDGE_ALIASES[tail]!r} "
            "and the layer separately"
        )
    else:
        hint = suggest(str(hook_point), [*HOOK_POINTS, *_BRIDGE_ALIASES, *names])
    raise InterventionError(
        "unknown hook point",
        field=field,
        value=hook_point,
        expected=f"one of {list(HOOK_POINTS)}",
        hint=hint,
    )


def check_layer(layer: int, n_layers: int, model_name: str, *, field: str = "layer") -> int:
    """layer if 0 <= layer < n_layers, else InterventionError naming the model."""
    if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < n_layers:
        raise InterventionError(
            f"layer outside the model {model_name!r} ({n_layers} layers)",
            field=field,
            value=layer,
            expected=f"an int with 0 <= layer < {n_layers}",
        )
    return layer


def _is_bridge(module: nn.Module) -> bool:
    return "_original_component" in module._modules


def _unbridge(module: nn.Module, configs: dict[int, Any], memo: dict[int, nn.Module]) -> nn.Module:
    """A shallow copy of module's tree with wrappers replaced by what they wrap; same tensors."""
    while _is_bridge(module):
        module = module._modules["_original_component"]  # type: ignore[assignment]
    if id(module) in memo:
        return memo[id(module)]
    new = copy.copy(module)  # new object; its __dict__ values are still shared: replace them
    memo[id(module)] = new
    new._parameters = dict(module._parameters)  # the same Parameter objects
    new._buffers = dict(module._buffers)
    new._non_persistent_buffers_set = set(module._non_persistent_buffers_set)
    for name in _HOOK_DICTS:
        if hasattr(module, name):
            setattr(new, name, OrderedDict())
    children = {
        k: (None if c is None else _unbridge(c, configs, memo)) for k, c in module._modules.items()
    }
    new._modules = children  # type: ignore[assignment]
    cfg = getattr(module, "config", None)
    if id(cfg) in configs:
        object.__setattr__(new, "config", configs[id(cfg)])
    return new


def _sdpa_configs(cfg: Any) -> dict[int, Any]:
    """id(original config or sub-config) -> a copy that asks for SDPA attention."""
    new = copy.deepcopy(cfg)
    pairs = [(cfg, new)]
    for name in ("text_config", "decoder"):
        old_sub, new_sub = getattr(cfg, name, None), getattr(new, name, None)
        if old_sub is not None and new_sub is not None and old_sub is not cfg:
            pairs.append((old_sub, new_sub))
    for _, c in pairs:
        c._attn_implementation = "sdpa"
    return {id(old): c for old, c in pairs}


def _identity(module: nn.Module) -> tuple[Any, ...]:
    """What a cached view must still share: the same parameter and buffer tensors, same device.

    Weights edited in place are seen by the view; replaced tensors (`.to(device)` moves buffers,
    a newly assigned Parameter) make it stale, so it is rebuilt.
    """
    p = next(module.parameters(), None)
    ids = tuple(id(t) for t in module.parameters()) + tuple(id(t) for t in module.buffers())
    return (None if p is None else (p.device, p.dtype), ids)


_RAW: weakref.WeakKeyDictionary[Any, tuple[tuple[Any, ...], Any]] = weakref.WeakKeyDictionary()


def raw_model(hf_model: Any) -> Any:
    """The bridge-free HF module tree over hf_model's tensors, with SDPA attention (cached)."""
    key = _identity(hf_model)
    hit = _RAW.get(hf_model)
    if hit is not None and hit[0] == key:
        return hit[1]
    if not any(_is_bridge(m) for m in hf_model.modules()):
        return hf_model
    view: Any = _unbridge(hf_model, _sdpa_configs(hf_model.config), {})
    view.eval()
    _RAW[hf_model] = (key, view)
    return view


def decoder_layers(module: nn.Module, n_layers: int | None = None) -> nn.ModuleList:
    """The ModuleList of decoder layers of an HF causal LM (bridged or raw)."""
    for path in _LAYER_PATHS:
        obj: Any = module
        for part in path.split("."):
            obj = getattr(obj, part, None)
            if obj is None:
                break
        if isinstance(obj, nn.ModuleList) and (n_layers is None or len(obj) == n_layers):
            return obj
    raise InterventionError(
        f"cannot find the decoder layers of {type(module).__name__}",
        expected=f"one of the attributes {list(_LAYER_PATHS)}",
        hint="this architecture is not supported by the interventions yet",
    )


def layer_lists(model: Any) -> list[nn.ModuleList]:
    """Decoder layers of every tree a forward may run through: the bridged model and its raw view."""
    hf = model.hf_model
    trees = [decoder_layers(hf, model.info.n_layers)]
    raw = raw_model(hf)
    if raw is not hf:
        trees.append(decoder_layers(raw, model.info.n_layers))
    return trees


def _inner(module: nn.Module) -> nn.Module:
    while _is_bridge(module):
        module = module._modules["_original_component"]  # type: ignore[assignment]
    return module


def attn_and_mlp(layer: nn.Module) -> tuple[nn.Module, nn.Module]:
    """The attention and MLP submodules whose outputs are added to the residual stream."""
    inner = _inner(layer)
    attn = next(
        (getattr(inner, n) for n in ("self_attn", "attn", "attention") if hasattr(inner, n)), None
    )
    mlp = next((getattr(inner, n) for n in ("mlp", "feed_forward") if hasattr(inner, n)), None)
    if attn is None or mlp is None:
        raise InterventionError(
            f"cannot find attention/MLP modules in {type(inner).__name__}",
            hint="full ablation supports Llama-style decoder layers",
        )
    return attn, mlp


def model_device(model: Any) -> torch.device:
    """Device of the model's parameters."""
    return next(model.hf_model.parameters()).device
