"""Residual sites, hook names and the model's two module trees.

Directions read these sites and interventions write to them, so both import from here.

`LoadedModel.hf_model` is a plain Hugging Face model (SDPA attention): HF `generate`, the
generation engine, teacher forcing and residual reads all run on it. TransformerBridge replaces
the submodules of the model it boots over by wrappers (eager attention, extra hook points), and
those wrappers follow TransformerLens's idea of the HF call signature, which drifts from
transformers' own (transformers 5.24 renamed the KV cache argument `past_key_values` -> `cache`,
and a bridged model then decodes without its cache). So the bridge is booted over
`shadow_tree(hf_model)`: a second module tree over the *same* parameter tensors (no copy) with
its own configs, and the HF model is never touched. The bridge serves hook names and
`run_with_cache` reads, and is the tests' oracle. Steering hooks go on the decoder layers of both
trees (`layer_lists`), so a steering applies whichever forward runs, exactly once.
"""

from __future__ import annotations

import copy
import inspect
from collections import OrderedDict
from typing import Any

import torch
from torch import nn

from steering_reliability.errors import InterventionError, suggest

# resid_pre = input of decoder layer L (bridge blocks.{L}.hook_in = HF hidden_states[L]);
# resid_post = output of decoder layer L (bridge blocks.{L}.hook_out = HF hidden_states[L+1]).
HOOK_SUFFIX: dict[str, str] = {"resid_pre": "hook_in", "resid_post": "hook_out"}
HOOK_POINTS: tuple[str, ...] = tuple(HOOK_SUFFIX)
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


def _shallow(module: nn.Module, configs: dict[int, Any], memo: dict[int, nn.Module]) -> nn.Module:
    """A new module tree shaped like module's, over the same parameter and buffer tensors."""
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
    new._modules = {  # type: ignore[assignment]
        k: (None if c is None else _shallow(c, configs, memo)) for k, c in module._modules.items()
    }
    cfg = getattr(module, "config", None)
    if id(cfg) in configs:
        object.__setattr__(new, "config", configs[id(cfg)])
    return new


def shadow_tree(hf_model: Any) -> Any:
    """A second module tree over hf_model's tensors, with deep-copied configs, for the bridge.

    Booting a TransformerBridge over it rewrites its modules and configs (eager attention), never
    hf_model's. In-place weight edits are seen by both trees; reassigned tensors are not.
    """
    if any(_is_bridge(m) for m in hf_model.modules()):
        raise InterventionError(
            "shadow_tree needs a plain HF model, got one a TransformerBridge was booted over",
            hint="boot the bridge over shadow_tree(model), never over the model itself",
        )
    cfg = hf_model.config
    new_cfg = copy.deepcopy(cfg)
    configs = {id(cfg): new_cfg}
    for name in ("text_config", "decoder"):
        old_sub, new_sub = getattr(cfg, name, None), getattr(new_cfg, name, None)
        if old_sub is not None and new_sub is not None and old_sub is not cfg:
            configs[id(old_sub)] = new_sub
    tree: Any = _shallow(hf_model, configs, {})
    gen = getattr(hf_model, "generation_config", None)
    if gen is not None:
        tree.generation_config = copy.deepcopy(gen)
    return tree.eval()


def cache_kwarg(module: nn.Module) -> str:
    """The name module's forward takes its KV cache by (`cache` from transformers 5.24 on)."""
    params = inspect.signature(module.forward).parameters
    return "cache" if "cache" in params else "past_key_values"


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
    """Decoder layers of every tree a forward may run through: the HF model and the bridge's."""
    trees = [decoder_layers(model.hf_model, model.info.n_layers)]
    bridged = getattr(model.bridge, "original_model", None)
    if bridged is not None and bridged is not model.hf_model:
        trees.append(decoder_layers(bridged, model.info.n_layers))
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


def variant_key(model: Any) -> dict[str, str]:
    """What a cache key adds for a model that does not run in float32 on the CPU: its dtype
    and device where they differ from those (so float32 CPU keys stay as they always were)."""
    param = next(model.hf_model.parameters())
    dtype, device = str(param.dtype).removeprefix("torch."), param.device.type
    return {
        **({} if dtype == "float32" else {"dtype": dtype}),
        **({} if device == "cpu" else {"device": device}),
    }
