"""`steer(model, steerings)`: a context manager that installs steering hooks and always removes them.

Hooks are plain torch hooks on the HF decoder layers (pre-hook = resid_pre, forward hook =
resid_post) of both the HF model and the bridge's tree (models.sites.layer_lists), so they apply to
a bridge forward, an HF forward, HF generate and the generation engine alike.
"""

from __future__ import annotations

import contextvars
import operator
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from steering_reliability.errors import InterventionError, suggest
from steering_reliability.interventions.functions import (
    HookFn,
    check_alpha,
    check_kind,
    check_vector,
    make_hook,
    unit,
)
from steering_reliability.models.sites import check_hook_point, check_layer, hook_name, layer_lists

# Which positions a steering hook touches (config `sweep.apply_to` and friends).
APPLY_POSITIONS: tuple[str, ...] = ("all", "prompt", "generated")

# Which forward is running: "prompt" (prefill), "generated" (a decode step) or "mixed" (teacher
# forcing: a [batch, pos] mask marks the generated positions). The engine declares it; for other
# callers it is inferred (one new token on top of a non-empty KV cache = a decode step). The
# cache is recognised by its methods, whichever keyword argument carries it.
_PHASE: contextvars.ContextVar[tuple[str, Tensor | None] | None] = contextvars.ContextVar(
    "steering_phase", default=None
)
PHASES = ("prompt", "generated", "mixed")


@contextmanager
def forward_phase(phase: str, generated: Tensor | None = None) -> Iterator[None]:
    """Declare the phase of the forwards run inside; "mixed" needs generated [batch, pos] bool."""
    if phase not in PHASES or (phase == "mixed") != (generated is not None):
        raise InterventionError(
            "bad forward phase",
            field="phase",
            value=phase,
            expected=f"one of {list(PHASES)}; a generated mask exactly for 'mixed'",
        )
    token = _PHASE.set((phase, generated))
    try:
        yield
    finally:
        _PHASE.reset(token)


@dataclass(frozen=True, eq=False)  # eq=False: tensors have no single truth value to compare by
class Steering:
    """One intervention at one site. vector: what alpha = 1 adds (for ablate only its direction)."""

    kind: str
    layer: int
    vector: Tensor  # [d_model]
    alpha: float
    hook_point: str = "resid_pre"
    apply_to: str = "all"  # "all", "prompt" (prefill only) or "generated" (decode steps only)

    def __post_init__(self) -> None:
        check_kind(self.kind)
        try:
            object.__setattr__(self, "layer", operator.index(self.layer))  # numpy ints welcome
        except TypeError:
            raise InterventionError(
                "layer must be an integer", field="layer", value=self.layer, expected="an int"
            ) from None
        check_hook_point(self.hook_point)
        if self.apply_to not in APPLY_POSITIONS:
            raise InterventionError(
                "unknown apply_to",
                field="apply_to",
                value=self.apply_to,
                expected=f"one of {list(APPLY_POSITIONS)}",
                hint=suggest(str(self.apply_to), APPLY_POSITIONS),
            )
        object.__setattr__(self, "alpha", check_alpha(self.alpha))
        object.__setattr__(self, "vector", check_vector(self.vector).clone())

    @property
    def site(self) -> str:
        """The bridge hook name of the site, e.g. blocks.12.hook_in."""
        return hook_name(self.layer, self.hook_point)


@dataclass(frozen=True)
class ProbeRecord:
    """Projections onto v̂ at the probed site during one forward: [batch, pos] each."""

    before: Tensor
    after: Tensor
    phase: str


@dataclass
class SteerProbe:
    """Collects resid·v̂ before and after the first steering's intervention, one record per forward.

    Set `enabled = False` to pause recording (the engine does so during decode steps).
    """

    site: str
    direction: Tensor  # v̂ [d_model]
    records: list[ProbeRecord] = field(default_factory=list)
    enabled: bool = True

    def clear(self) -> None:
        self.records.clear()

    def row_means(self, mask: Tensor | None = None, index: int = -1) -> tuple[Tensor, Tensor]:
        """Per-row mean projection (before, after) of one record over mask's true positions: [batch]."""
        rec = self.records[index]
        m = (
            torch.ones_like(rec.before, dtype=torch.bool)
            if mask is None
            else mask.to(rec.before.device).bool()
        )
        n = m.sum(-1).clamp_min(1)
        return ((rec.before * m).sum(-1) / n, (rec.after * m).sum(-1) / n)

    def _record(self, before: Tensor, after: Tensor, phase: str) -> None:
        if not self.enabled:
            return
        # float32 whatever the model's dtype: the engine sums these over every prompt token
        u = self.direction.to(device=before.device, dtype=torch.float32)
        self.records.append(
            ProbeRecord((before.float() @ u).detach(), (after.float() @ u).detach(), phase)
        )


def _is_kv_cache(value: Any) -> bool:
    return callable(getattr(value, "get_seq_length", None)) and callable(
        getattr(value, "update", None)
    )


def _phase(hidden: Tensor, kwargs: dict[str, Any], layer: int, after_layer: bool) -> str:
    declared = _PHASE.get()
    if declared is not None:
        return declared[0]
    if hidden.ndim != 3 or hidden.shape[1] != 1:
        return "prompt"
    # The KV cache object, whatever transformers calls the argument (`past_key_values` before
    # 5.24, `cache` from then on): found by what it is, not by its name.
    cache = next((v for v in kwargs.values() if _is_kv_cache(v)), None)
    if cache is None:
        return "prompt"
    # Tokens this layer had cached before this forward (a forward hook runs after the update).
    past = int(cache.get_seq_length(layer)) - (hidden.shape[1] if after_layer else 0)
    return "generated" if past > 0 else "prompt"


def _apply(fn: HookFn, hidden: Tensor, apply_to: str, phase: str) -> Tensor:
    if apply_to == "all" or apply_to == phase:
        return fn(hidden)
    if phase != "mixed":
        return hidden
    declared = _PHASE.get()
    assert declared is not None and declared[1] is not None
    gen = declared[1].to(hidden.device)[..., None]  # [batch, pos, 1]
    steered = fn(hidden)
    return (
        torch.where(gen, steered, hidden)
        if apply_to == "generated"
        else torch.where(gen, hidden, steered)
    )


def _edit(
    hidden: Tensor,
    kwargs: dict[str, Any],
    s: Steering,
    fn: HookFn,
    probe: SteerProbe | None,
    after_layer: bool,
) -> Tensor:
    phase = _phase(hidden, kwargs, s.layer, after_layer)
    new = _apply(fn, hidden, s.apply_to, phase)
    if probe is not None:
        probe._record(hidden, new, phase)
    return new


def _pre_hook(s: Steering, fn: HookFn, probe: SteerProbe | None) -> Any:
    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> Any:
        if args and isinstance(args[0], Tensor):
            return (_edit(args[0], kwargs, s, fn, probe, False), *args[1:]), kwargs
        hidden = kwargs.get("hidden_states")
        if isinstance(hidden, Tensor):
            return args, {**kwargs, "hidden_states": _edit(hidden, kwargs, s, fn, probe, False)}
        raise InterventionError(
            f"no hidden_states tensor reached {s.site}",
            hint="this architecture's decoder layer signature is not supported",
        )

    return hook


def _post_hook(s: Steering, fn: HookFn, probe: SteerProbe | None) -> Any:
    def hook(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any], output: Any) -> Any:
        hidden = output[0] if isinstance(output, tuple) else output
        new = _edit(hidden, kwargs, s, fn, probe, True)
        return (new, *output[1:]) if isinstance(output, tuple) else new

    return hook


def check_steerings(model: Any, steerings: Sequence[Steering]) -> None:
    """Validate every steering against the model (layer range, vector size) before any hook."""
    for i, s in enumerate(steerings):
        if not isinstance(s, Steering):
            raise InterventionError(
                "not a Steering",
                field=f"steerings[{i}]",
                value=type(s).__name__,
                expected="Steering(kind, layer, vector, alpha, ...)",
            )
        check_layer(s.layer, model.info.n_layers, model.info.name, field=f"steerings[{i}].layer")
        check_vector(s.vector, model.info.d_model, field=f"steerings[{i}].vector")


@contextmanager
def steer(
    model: Any, steerings: Sequence[Steering], *, probe: bool = False
) -> Iterator[SteerProbe | None]:
    """Apply steerings inside the block; hooks are removed on exit, even after an exception.

    With probe=True yields a SteerProbe recording resid·v̂ before/after at steerings[0]'s site.
    """
    steerings = tuple(steerings)
    check_steerings(model, steerings)
    sp = SteerProbe(steerings[0].site, unit(steerings[0].vector)) if probe and steerings else None
    handles: list[Any] = []
    try:
        for layers in layer_lists(model):
            for i, s in enumerate(steerings):
                fn = make_hook(s.kind, s.vector, s.alpha)
                p = sp if i == 0 else None
                module = layers[s.layer]
                if s.hook_point == "resid_pre":
                    handles.append(
                        module.register_forward_pre_hook(_pre_hook(s, fn, p), with_kwargs=True)
                    )
                else:
                    handles.append(
                        module.register_forward_hook(_post_hook(s, fn, p), with_kwargs=True)
                    )
        yield sp
    finally:
        for h in handles:
            h.remove()
