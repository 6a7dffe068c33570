"""Intervention factories: pure functions from a residual tensor to a new residual tensor.

`add(v, alpha)` shifts every position by alpha * v; `ablate(v, alpha)` removes alpha times the
component along the unit direction v̂ (alpha = 1 removes it entirely). Both return new tensors
and never edit their input, so a hook cannot corrupt activations another hook still reads.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import torch
from torch import Tensor

from steering_reliability.errors import DirectionError, InterventionError, suggest

INTERVENTIONS: tuple[str, ...] = ("add", "ablate")

# resid [batch, pos, d_model] -> new resid [batch, pos, d_model]
HookFn = Callable[[Tensor], Tensor]


def check_alpha(alpha: float, *, field: str = "alpha") -> float:
    """alpha as a finite float, or InterventionError naming the value."""
    try:
        value = float(alpha)
    except (TypeError, ValueError):
        raise InterventionError(
            "alpha is not a number",
            field=field,
            value=alpha,
            expected="a finite float, e.g. 0.5, 1 or 4",
        ) from None
    if not math.isfinite(value):
        raise InterventionError(
            "alpha must be finite",
            field=field,
            value=alpha,
            expected="a finite float, e.g. 0.5, 1 or 4",
            hint="NaN or inf would fill the residual stream with non-finite values",
        )
    return value


def check_vector(v: Tensor, d_model: int | None = None, *, field: str = "vector") -> Tensor:
    """v as a detached 1-d finite non-zero tensor of length d_model, or DirectionError."""
    if not isinstance(v, Tensor):
        raise DirectionError(
            "a steering vector must be a torch.Tensor",
            field=field,
            value=type(v).__name__,
            expected="a 1-d tensor [d_model]",
        )
    if v.ndim != 1:
        raise DirectionError(
            "a steering vector must be 1-d",
            field=field,
            value=tuple(v.shape),
            expected=f"shape [{d_model if d_model is not None else 'd_model'}]",
            hint="pass one layer's direction, e.g. directions[layer]",
        )
    if d_model is not None and v.shape[0] != d_model:
        raise DirectionError(
            "steering vector size does not match the model",
            field=field,
            value=tuple(v.shape),
            expected=f"shape [{d_model}] (the model's d_model)",
            hint="was the direction built for another model?",
        )
    if not v.dtype.is_floating_point:
        raise DirectionError(
            "a steering vector must be floating point",
            field=field,
            value=str(v.dtype),
            expected="float32 (or the model's dtype)",
        )
    if not bool(torch.isfinite(v).all()):
        raise DirectionError(
            "steering vector contains NaN or inf", field=field, expected="finite values"
        )
    if float(v.norm()) == 0.0:
        raise DirectionError(
            "steering vector is zero",
            field=field,
            value="norm 0",
            expected="a non-zero direction",
            hint="a contrastive difference read at the last prompt token is exactly 0",
        )
    return v.detach()


def unit(v: Tensor) -> Tensor:
    """v / |v|, computed in float64 then cast back, so v̂·v̂ = 1 to the dtype's precision."""
    v = check_vector(v)
    return (v.double() / v.double().norm()).to(v.dtype)


def _check_resid(resid: Tensor, d_model: int) -> None:
    if resid.shape[-1] != d_model:
        raise DirectionError(
            "steering vector size does not match the residual",
            field="vector",
            value=f"d_model {d_model}",
            expected=f"residual d_model {resid.shape[-1]}",
            hint="was the direction built for another model?",
        )
    if not bool(torch.isfinite(resid).all()):
        raise InterventionError(
            "the residual stream reaching the hook contains NaN or inf",
            field="resid",
            expected="finite activations",
            hint="an earlier intervention or a too-large alpha overflowed",
        )


def _like_resid(t: Tensor) -> Callable[[Tensor], Tensor]:
    """t [d_model] on the residual's device and dtype (converted once per pair), after checking
    that the residual fits it and is finite."""
    cache: dict[tuple[torch.device, torch.dtype], Tensor] = {}

    def like(resid: Tensor) -> Tensor:
        _check_resid(resid, t.shape[0])
        key = (resid.device, resid.dtype)
        if key not in cache:
            cache[key] = t.to(device=resid.device, dtype=resid.dtype)
        return cache[key]

    return like


def add(v: Tensor, alpha: float) -> HookFn:
    """Hook adding alpha * v at every position (alpha = 0 is the exact identity)."""
    v = check_vector(v)
    delta = _like_resid(check_alpha(alpha) * v)

    def hook(resid: Tensor) -> Tensor:  # [batch, pos, d_model] -> same
        return resid + delta(resid)

    return hook


def ablate(v: Tensor, alpha: float = 1.0) -> HookFn:
    """Hook removing alpha times the component along v̂: resid - alpha (resid·v̂) v̂.

    Only v's direction matters (rescaling v by c != 0 changes nothing); alpha = 1 leaves
    resid·v̂ = 0, alpha = 0 is the identity.
    """
    a = check_alpha(alpha)
    direction = _like_resid(unit(v))

    def hook(resid: Tensor) -> Tensor:  # [batch, pos, d_model] -> same
        w = direction(resid)
        proj = resid @ w  # [batch, pos]
        return resid - (a * proj).unsqueeze(-1) * w

    return hook


FACTORIES: dict[str, Callable[[Tensor, float], HookFn]] = {"add": add, "ablate": ablate}
assert tuple(FACTORIES) == INTERVENTIONS  # the config's list of kinds and this module agree


def check_kind(kind: str, *, field: str = "kind") -> str:
    """kind if it names an intervention, else InterventionError suggesting close names."""
    if kind not in FACTORIES:
        raise InterventionError(
            "unknown intervention",
            field=field,
            value=kind,
            expected=f"one of {list(FACTORIES)}",
            hint=suggest(str(kind), FACTORIES),
        )
    return kind


def make_hook(kind: str, v: Tensor, alpha: float) -> HookFn:
    """The hook function of intervention `kind` ("add" or "ablate") with vector v and alpha."""
    return FACTORIES[check_kind(kind)](v, alpha)
