"""Sanity checks of the instrument as plain functions that return a Verdict (VALIDITY.md 3-4).

A check measures the model, never the return value of the code it checks: the projection after
ablation is read by an independent read hook at the configured site; effects are measured on the
model's outputs. Each check returns `passed`, `failed` or `inconclusive` (with the reason), and
tests/test_checks_mutations.py breaks each implementation on purpose to show the check fails.

The refusal-specific measures (generations scored by the refusal metric, first-token refusal
mass) are passed in by the caller (experiments/test_sanity.py), so the same checks serve any
behaviour and can be driven by a toy measure in tests.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import torch
from torch import Tensor

from steering_reliability.config import config_hash
from steering_reliability.directions.activations import residual_spans
from steering_reliability.interventions import steer
from steering_reliability.metrics.stats import diff_ci
from steering_reliability.models import encode_prompt, format_prompt
from steering_reliability.verdict import Verdict

# measure(steerings) -> a number that rises with the behaviour (a rate, a mean probability)
Measure = Callable[[Sequence[Any]], float]


def _judged(name: str, ok: bool, value: float, reason: str, details: dict[str, Any]) -> Verdict:
    return Verdict(name, "passed" if ok else "failed", value, reason, details)


def _steer(model: Any, steerings: Sequence[Any]) -> Any:
    return steer(model, steerings)


def site_projections(
    model: Any,
    texts: Sequence[str],
    layer: int,
    hook_point: str,
    direction: Tensor,
    steerings: Sequence[Any] = (),
    *,
    system_prompt: str | None = None,
) -> tuple[Tensor, Tensor]:
    """(resid . v_hat, |resid|) at the site (layer, hook point) for the last three tokens of
    each text, read by a read hook registered after any steering hook: [n, 3] fp32 each."""
    tok = model.tokenizer
    ids = [encode_prompt(tok, format_prompt(tok, t, system_prompt=system_prompt)) for t in texts]

    def spans(i: int, n: int) -> list[tuple[int, int]]:
        return [(n - k, n - k + 1) for k in (1, 2, 3)]

    u = torch.nn.functional.normalize(direction.detach().float().cpu(), dim=0)
    with _steer(model, steerings):
        read = residual_spans(model, ids, layers=[layer], hook_point=hook_point, spans=spans)
    resid = read.mean[:, 0].float().cpu()
    return resid @ u, resid.norm(dim=-1)


def rounding_bound(model: Any, resid_norm: float) -> float:
    """How far from 0 a projection can land from rounding alone in the model's dtype: the
    residual is stored with relative error eps/2 per component, which a projection onto a unit
    vector spread over d components sums to about eps/2 x |resid| / sqrt(d); x16 for margin."""
    param = next(model.hf_model.parameters())
    eps = float(torch.finfo(param.dtype).eps)
    return 16 * eps / 2 * resid_norm / math.sqrt(model.info.d_model)


def ablation_projection(
    model: Any,
    texts: Sequence[str],
    ablation: Any,
    *,
    tolerance: float = 1e-4,
    system_prompt: str | None = None,
) -> Verdict:
    """Ablation at alpha 1 leaves |resid . v_hat| ~ 0 at the configured site.

    The site is the one the caller configured (ablation.layer, ablation.hook_point); the read is
    a separate hook on the model, so a hook that edits the wrong layer or does nothing fails.
    "~ 0" is `tolerance` x the mean |projection| before, or the dtype's rounding bound
    (`rounding_bound`) where that is larger (in bfloat16; in float32 it never is).
    """
    site = (model, texts, ablation.layer, ablation.hook_point, ablation.vector)
    before, norms = site_projections(*site, system_prompt=system_prompt)
    after, _ = site_projections(*site, [ablation], system_prompt=system_prompt)
    scale = float(before.abs().mean())
    worst = float(after.abs().max())
    bound = max(tolerance * max(scale, 1.0), rounding_bound(model, float(norms.mean())))
    details = {"mean_abs_proj_before": scale, "max_abs_proj_after": worst, "bound": bound}
    if not scale > 1e-6:
        nothing = "the residual has no component along v at the site: nothing to remove"
        return Verdict("ablation_projection", "inconclusive", worst, nothing, details)
    ok = worst <= bound
    reason = (
        f"max |proj| after ablation {worst:.3g} {'<=' if ok else '>'} {bound:.3g} "
        f"(mean |proj| before {scale:.3g})"
    )
    return _judged("ablation_projection", ok, worst, reason, details)


def identical_outputs(plain: Sequence[Any], *steered: Sequence[Any]) -> Verdict:
    """Generations under alpha-0 steerings equal the unsteered ones, tokens and log-probs."""
    same = sum(
        all(a.token_ids == b.token_ids and a.logprobs == b.logprobs for b in others)
        for a, *others in zip(plain, *steered, strict=True)
    )
    n = len(plain)
    ok = same == n
    return Verdict(
        "alpha_zero_identity",
        "passed" if ok else "failed",
        same / n if n else math.nan,
        f"{same} of {n} generations identical to the unsteered ones",
        {"identical": same, "n": n},
    )


def random_null(
    measure: Measure,
    make_steering: Callable[[Tensor], Any],
    vector: Tensor,
    *,
    k: int = 20,
    seed: int = 0,
    min_effect: float = 0.02,
    max_p: float = 0.05,
) -> Verdict:
    """The direction's effect against K random directions of the same norm at the same site.

    effect(v) = measure([steering with v]) - measure([]). The empirical p-value is
    (1 + #{null >= real}) / (K + 1); with K = 20 the smallest is 1/21 ~ 0.048, so `passed` means
    the real direction beat every random one. Inconclusive when the real direction itself
    moves the measure by less than `min_effect`: a null says nothing about a non-effect.
    """
    if k < 20:
        raise ValueError(f"k={k}: a null distribution needs at least 20 random directions")
    base = measure([])
    real = measure([make_steering(vector)]) - base
    g = torch.Generator().manual_seed(seed)
    norm = float(vector.float().norm())
    null = []
    for _ in range(k):
        r = torch.randn(vector.shape, generator=g, dtype=torch.float32)
        null.append(measure([make_steering(r / r.norm() * norm)]) - base)
    at_least = sum(x >= real for x in null)
    p = (1 + at_least) / (k + 1)
    percentile = 100.0 * sum(x < real for x in null) / k
    details = {
        "baseline": base,
        "effect": real,
        "null_effects": null,
        "null_mean": sum(null) / k,
        "null_max": max(null),
        "percentile": percentile,
        "p_value": p,
        "k": k,
    }
    if real < min_effect:
        nothing = (f"the direction moves the measure by {real:+.3g} (< {min_effect:g}): nothing "
                   "to compare with the null")  # fmt: skip
        return Verdict("random_direction", "inconclusive", p, nothing, details)
    reason = (
        f"effect {real:+.3g} beats {k - at_least} of {k} random directions "
        f"(percentile {percentile:.0f}, p = {p:.3f})"
    )
    return _judged("random_direction", p <= max_p, p, reason, details)


def downstream_cancels(
    measure: Measure,
    addition: Any,
    later_ablations: Sequence[Any],
    *,
    min_induced: float,
) -> Verdict:
    """What adding v at layer L induces goes away when v_hat is ablated at every later layer.

    Passed when at least half of the induced change is cancelled; inconclusive when the addition
    induces less than `min_induced` (nothing to cancel).
    """
    r0 = measure([])
    r_add = measure([addition])
    r_both = measure([addition, *later_ablations])
    induced = r_add - r0
    details = {"baseline": r0, "add": r_add, "add_then_ablate": r_both}
    if induced < min_induced:
        return Verdict(
            "downstream_ablation",
            "inconclusive",
            r_both,
            f"the addition induced {induced:+.3g} (< {min_induced:g}): nothing to cancel",
            details,
        )
    ok = r_both <= r0 + 0.5 * induced
    reason = (
        f"baseline {r0:.3g}, add {r_add:.3g}, add + downstream ablation {r_both:.3g} "
        f"({'at least' if ok else 'less than'} half of the induced change cancelled)"
    )
    return _judged("downstream_ablation", ok, r_both, reason, details)


def direction_agreement(
    name: str, a: Tensor, b: Tensor, *, min_cosine: float, what: str
) -> Verdict:
    """Two builds of a direction that should agree (other prompts, other prefixes) point alike.

    Chance for random directions in d dimensions is |cos| ~ 1/sqrt(d) (0.04 at d = 576).
    """
    cos = float(
        torch.nn.functional.cosine_similarity(a.double().flatten(), b.double().flatten(), dim=0)
    )
    chance = 1.0 / math.sqrt(a.numel())
    ok = cos >= min_cosine
    return Verdict(
        name,
        "passed" if ok else "failed",
        cos,
        f"cosine between {what} = {cos:.3f} ({'>=' if ok else '<'} {min_cosine:g}; "
        f"chance ~ {chance:.2f})",
        {"cosine": cos, "chance": chance},
    )


def equivalence(name: str, diff: Any, margin: float, said: str) -> Verdict:
    """A robustness check decided from the 95% interval of a difference (an `Estimate`) against
    an equivalence margin: passed when the interval lies inside (-margin, margin), failed when
    it lies wholly outside it (the two clearly differ by more than the margin), inconclusive
    otherwise (too few prompts to tell either way)."""
    lo, hi, value = float(diff.lo), float(diff.hi), float(diff.value)
    text = f"{said}; paired difference {value:+.2f} [{lo:+.2f}, {hi:+.2f}]"
    details = {"difference": value, "lo": lo, "hi": hi, "margin": margin}
    if math.isnan(lo) or math.isnan(hi):
        return Verdict(name, "inconclusive", value, f"{text}: no interval", details)
    if -margin < lo and hi < margin:
        return Verdict(name, "passed", value, f"{text} inside +-{margin:g}", details)
    if lo >= margin or hi <= -margin:
        return Verdict(name, "failed", value, f"{text} wholly outside +-{margin:g}", details)
    return Verdict(
        name, "inconclusive", value, f"{text} neither inside nor outside +-{margin:g}", details
    )


def template_agreement(
    main: Tensor, alt: Tensor, base: Any, f_main: Any, f_alt: Any, *, min_cosine: float = 0.3,
    min_raise: float = 0.2, margin: float = 0.35,
    what: str = "the main and the alternate-prefix direction",
) -> Verdict:  # fmt: skip
    """A direction built from other prefix wording: related (cosine) and equally effective.

    base, f_main, f_alt: per-prompt behaviour flags (pandas Series by prompt id) unsteered and
    under each direction. Failed when the cosine is below `min_cosine` or the paired rate
    difference is wholly outside +-margin (`equivalence`); inconclusive when either direction
    raises the rate by < `min_raise` or the difference is undecided; else passed.
    """
    name = "template_robustness"
    agree = direction_agreement(name, main, alt, min_cosine=min_cosine, what=what)
    r_base, r_main, r_alt = float(base.mean()), float(f_main.mean()), float(f_alt.mean())
    said = (f"{agree.reason}; rate unsteered {r_base:.2f}, main {r_main:.2f}, alternate "
            f"{r_alt:.2f}")  # fmt: skip
    same = equivalence(name, diff_ci(f_main, f_alt), margin, said)
    details = {**agree.details, **same.details, "rate_baseline": r_base, "rate_main": r_main,
               "rate_alt": r_alt}  # fmt: skip
    if agree.verdict == "failed" or same.verdict == "failed":
        return Verdict(name, "failed", agree.value, same.reason, details)
    if min(r_main, r_alt) < r_base + min_raise:
        weak = f"{same.reason}; a direction raises the rate by < {min_raise:g}"
        return Verdict(name, "inconclusive", agree.value, weak, details)
    return Verdict(name, same.verdict, agree.value, same.reason, details)


def verdict_row(
    cfg: Any,
    run_id: str,
    v: Verdict,
    *,
    layer: int,
    behaviour: str = "refusal",
    alpha: float | None = None,
    site: Mapping[str, Any] | None = None,
    **extra: Any,
) -> dict[str, Any]:
    """A non-prompt row carrying one sanity check's headline number, verdict and reason.

    Refusal's checks are named `sanity:<check>`; another behaviour's `sanity:<behaviour>_<check>`
    (so the report's sanity table lists every behaviour's checks side by side). `site` replaces
    the refusal direction's columns for a behaviour with a direction of its own.
    """
    import json

    name = v.name if behaviour == "refusal" else f"{behaviour}_{v.name}"
    return {
        "run_id": run_id,
        "config_hash": config_hash(cfg),
        "experiment": f"sanity:{name}",
        "case_id": f"sanity-{name}",
        "model": cfg.model.name,
        "split": "",
        "prompt_id": "",
        "layer": layer,
        "hook_point": cfg.direction.hook_point,
        "intervention": "",
        "alpha": float(cfg.sanity.alpha if alpha is None else alpha),
        "alpha_scale": cfg.direction.alpha_scale,
        "direction_method": cfg.direction.method,
        "direction_variant": "main",
        "seed": cfg.seed,
        "value": float(v.value),
        "passed": v.passed,
        "verdict": v.verdict,
        "behaviour": behaviour,
        "extra_json": json.dumps(
            {"reason": v.reason, **v.details, **extra}, sort_keys=True, default=float
        ),
        **(site or {}),
    }
