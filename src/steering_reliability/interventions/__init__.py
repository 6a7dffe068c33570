"""Interventions on the residual stream: hook factories, the steer() context, full ablation.

functions  add(v, alpha), ablate(v, alpha), make_hook: resid -> new resid (never in place)
steer      Steering, steer(model, steerings, probe=...) -> SteerProbe | None
ablation   full_ablation(model, v), orthogonalize_weights(model, v) -> LoadedModel

Where they attach (hook names, layer checks, the model's two module trees) is `models.sites`,
shared with `directions`, which reads the same sites.
"""

from __future__ import annotations

from steering_reliability.interventions.ablation import full_ablation, orthogonalize_weights
from steering_reliability.interventions.functions import (
    HookFn,
    ablate,
    add,
    check_alpha,
    check_vector,
    make_hook,
    unit,
)
from steering_reliability.interventions.steer import (
    ProbeRecord,
    Steering,
    SteerProbe,
    check_steerings,
    forward_phase,
    steer,
)
from steering_reliability.models.sites import HOOK_POINTS, hook_name

__all__ = [
    "HOOK_POINTS",
    "INTERVENTIONS",
    "HookFn",
    "ProbeRecord",
    "SteerProbe",
    "Steering",
    "ablate",
    "add",
    "check_alpha",
    "check_steerings",
    "check_vector",
    "forward_phase",
    "full_ablation",
    "hook_name",
    "make_hook",
    "orthogonalize_weights",
    "steer",
    "unit",
]
