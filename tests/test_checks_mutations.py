"""Each sanity check fails on a deliberately broken implementation (VALIDITY.md section 3).

`pytest tests -k mutation` runs them. Every check is run twice on the tiny model: once on the
working implementation (it passes) and once with one part broken on purpose (a no-op hook, a
hook on the wrong layer, a sign flip, an alpha-0 hook that is not the identity, a builder that
returns noise): the check must then fail. A check that passes both runs would check nothing.
"""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from typing import Any

import pytest
import torch
from torch import nn

from steering_reliability.generation import generate, next_token_logits
from steering_reliability.interventions import Steering
from steering_reliability.metrics import first_token_refusal_prob
from steering_reliability.studies import checks

# the module (the package re-exports its `steer` function under the same name)
steer_mod = importlib.import_module("steering_reliability.interventions.steer")

TEXTS = ["abc def", "hello there, friend", "what is 2 + 2?", "tell me a story", "xyz"]
TOKEN = 70  # the tiny model's "behaviour": probability of this first token


@pytest.fixture(scope="module")
def tiny() -> Any:
    from steering_reliability.models import tiny_model

    return tiny_model(n_layers=4, d_model=64, seed=0)


def _measure(model: Any) -> checks.Measure:
    """Mean log-probability of TOKEN as the first answer token, under the given steerings.

    (Log-probability: the random tiny model's logits span too little for probabilities to move.)
    """

    def measure(steerings: Sequence[Any]) -> float:
        with steer_mod.steer(model, steerings):
            logits = next_token_logits(model, TEXTS)
        return float(first_token_refusal_prob(logits, [TOKEN]).log().mean())

    return measure


def _token_direction(model: Any, scale: float = 6.0) -> torch.Tensor:
    """A direction that raises TOKEN's logit: its unembedding row, at a few times the residual norm."""
    w = model.hf_model.get_output_embeddings().weight[TOKEN].detach().float()
    return w / w.norm() * scale


def _noop_factory(kind: str, v: torch.Tensor, alpha: float) -> Any:
    return lambda h: h


def _sign_flipped_ablate(kind: str, v: torch.Tensor, alpha: float) -> Any:
    u = v / v.norm()

    def hook(h: torch.Tensor) -> torch.Tensor:
        return h + alpha * (h @ u.to(h.dtype))[..., None] * u.to(h.dtype)

    return hook


def _shifted_layers(orig: Any) -> Any:
    """layer_lists whose index L is really layer L + 1 (a hook registered one layer too deep)."""

    def shifted(model: Any) -> list[nn.ModuleList]:
        return [nn.ModuleList([*list(layers)[1:], list(layers)[0]]) for layers in orig(model)]

    return shifted


# ---------------------------------------------------------------- ablation removes the projection


def test_mutation_ablation_projection_passes_on_the_real_hook(tiny: Any) -> None:
    v = torch.randn(64, generator=torch.Generator().manual_seed(1))
    verdict = checks.ablation_projection(tiny, TEXTS, Steering("ablate", 2, v, 1.0))
    assert verdict.verdict == "passed", verdict.reason


@pytest.mark.parametrize(
    "broken",
    ["no-op hook", "wrong layer", "sign flip"],
)
def test_mutation_ablation_projection_fails_on_a_broken_hook(
    tiny: Any, broken: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    if broken == "no-op hook":
        monkeypatch.setattr(steer_mod, "make_hook", _noop_factory)
    elif broken == "wrong layer":
        monkeypatch.setattr(steer_mod, "layer_lists", _shifted_layers(steer_mod.layer_lists))
    else:
        monkeypatch.setattr(steer_mod, "make_hook", _sign_flipped_ablate)
    v = torch.randn(64, generator=torch.Generator().manual_seed(1))
    verdict = checks.ablation_projection(tiny, TEXTS, Steering("ablate", 2, v, 1.0))
    assert verdict.verdict == "failed", verdict.reason


# ---------------------------------------------------------------- alpha 0 is the identity


def _gens(model: Any, steerings: Sequence[Any]) -> list[Any]:
    ids = [f"p{i}" for i in range(len(TEXTS))]
    return generate(model, TEXTS, prompt_ids=ids, max_new_tokens=6, steerings=steerings)


def test_mutation_alpha_zero_identity(tiny: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    v = torch.randn(64, generator=torch.Generator().manual_seed(2))
    plain = _gens(tiny, [])
    zero = [Steering("add", 1, v, 0.0), Steering("ablate", 2, v, 0.0)]
    good = checks.identical_outputs(plain, _gens(tiny, zero[:1]), _gens(tiny, zero[1:]))
    assert good.verdict == "passed", good.reason

    real = steer_mod.make_hook

    def leaky(kind: str, vec: torch.Tensor, alpha: float) -> Any:
        return real(kind, vec, alpha + 1e-2)  # alpha 0 that is not quite 0

    monkeypatch.setattr(steer_mod, "make_hook", leaky)
    bad = checks.identical_outputs(plain, _gens(tiny, zero[:1]), _gens(tiny, zero[1:]))
    assert bad.verdict == "failed", bad.reason


# ---------------------------------------------------------------- random-direction null


def test_mutation_random_null_passes_for_a_real_direction(tiny: Any) -> None:
    verdict = checks.random_null(
        _measure(tiny), lambda vec: Steering("add", 3, vec, 1.0), _token_direction(tiny)
    )
    assert verdict.verdict == "passed", verdict.reason
    assert verdict.details["percentile"] == 100.0


def test_mutation_random_null_fails_when_the_direction_is_noise(tiny: Any) -> None:
    """A builder bug that returns noise of the right norm: the effect is inside the null."""
    norm = float(_token_direction(tiny).norm())
    fails = 0
    for seed in range(100, 105):
        noise = torch.randn(64, generator=torch.Generator().manual_seed(seed))
        verdict = checks.random_null(
            _measure(tiny),
            lambda vec: Steering("add", 3, vec, 1.0),
            noise / noise.norm() * norm,
            min_effect=0.0,
        )
        assert verdict.verdict != "passed" or verdict.details["p_value"] <= 0.05
        fails += verdict.verdict == "failed"
    assert fails >= 4, "noise beat every one of 20 random directions more than once in 5 draws"


def test_mutation_random_null_is_inconclusive_when_nothing_is_induced(tiny: Any) -> None:
    """A sign flip turns the effect negative: no effect to test, never a pass."""
    verdict = checks.random_null(
        _measure(tiny), lambda vec: Steering("add", 3, vec, 1.0), -_token_direction(tiny)
    )
    assert verdict.verdict == "inconclusive", verdict.reason
    assert verdict.passed is None


def test_random_null_refuses_a_small_null(tiny: Any) -> None:
    with pytest.raises(ValueError, match="at least 20"):
        checks.random_null(_measure(tiny), lambda v: v, _token_direction(tiny), k=5)


# ---------------------------------------------------------------- downstream ablation cancels


def test_mutation_downstream_ablation(tiny: Any) -> None:
    v = _token_direction(tiny, scale=8.0)
    add = Steering("add", 1, v, 1.0)
    later = [Steering("ablate", layer, v, 1.0) for layer in (2, 3)]
    good = checks.downstream_cancels(_measure(tiny), add, later, min_induced=0.05)
    assert good.verdict == "passed", good.reason

    other = torch.randn(64, generator=torch.Generator().manual_seed(5))
    wrong = [Steering("ablate", layer, other, 1.0) for layer in (2, 3)]  # ablates the wrong vector
    bad = checks.downstream_cancels(_measure(tiny), add, wrong, min_induced=0.05)
    assert bad.verdict == "failed", bad.reason

    none = checks.downstream_cancels(
        _measure(tiny), Steering("add", 1, v, 0.0), later, min_induced=0.05
    )
    assert none.verdict == "inconclusive" and none.passed is None


# ---------------------------------------------------------------- template / seed agreement


def test_mutation_direction_agreement() -> None:
    g = torch.Generator().manual_seed(0)
    v = torch.randn(576, generator=g)
    similar = v + 0.5 * torch.randn(576, generator=g)
    good = checks.direction_agreement("seed_robustness", v, similar, min_cosine=0.8, what="halves")
    assert good.verdict == "passed", good.reason
    noise = torch.randn(576, generator=g)  # a builder that returns noise for one half
    bad = checks.direction_agreement("seed_robustness", v, noise, min_cosine=0.8, what="halves")
    assert bad.verdict == "failed" and "chance ~ 0.04" in bad.reason


def test_equivalence_is_decided_from_the_interval_of_the_difference() -> None:
    from steering_reliability.metrics.stats import Estimate

    def v(lo: float, hi: float) -> str:
        return checks.equivalence("x", Estimate((lo + hi) / 2, lo, hi, 16), 0.25, "r").verdict

    assert v(-0.1, 0.2) == "passed"
    assert v(0.3, 0.6) == "failed" and v(-0.7, -0.25) == "failed"
    assert v(0.12, 0.62) == "inconclusive"  # differs from 0, but not clearly by > the margin
    assert v(-0.4, 0.4) == "inconclusive"  # too wide to tell


def test_mutation_ablation_projection_in_bfloat16(monkeypatch: pytest.MonkeyPatch) -> None:
    """In bf16 "~ 0" is the dtype's rounding bound: the real hook passes, a no-op still fails."""
    import dataclasses

    from steering_reliability.models import tiny_model

    m = tiny_model(n_layers=4, d_model=64, seed=0)
    m.hf_model.to(torch.bfloat16)
    m = dataclasses.replace(m, info=dataclasses.replace(m.info, dtype="bfloat16"))
    v = torch.randn(64, generator=torch.Generator().manual_seed(1))
    good = checks.ablation_projection(m, TEXTS, Steering("ablate", 2, v, 1.0))
    assert good.verdict == "passed", good.reason
    monkeypatch.setattr(steer_mod, "make_hook", _noop_factory)
    bad = checks.ablation_projection(m, TEXTS, Steering("ablate", 2, v, 1.0))
    assert bad.verdict == "failed", bad.reason


def test_mutation_template_agreement() -> None:
    """A related, equally effective alternate direction passes; noise for it fails."""
    import pandas as pd

    g = torch.Generator().manual_seed(4)
    v = torch.randn(576, generator=g)
    ids = [f"p{i}" for i in range(40)]
    base = pd.Series([0.0] * 40, index=ids)
    strong = pd.Series([1.0] * 36 + [0.0] * 4, index=ids)
    related = v + 0.8 * torch.randn(576, generator=g)
    good = checks.template_agreement(v, related, base, strong, strong.copy())
    assert good.verdict == "passed", good.reason
    noise = torch.randn(576, generator=g)  # an alternate-prefix build that returns noise
    assert checks.template_agreement(v, noise, base, strong, strong).verdict == "failed"
    weak = pd.Series([0.0] * 40, index=ids)  # the alternate direction does nothing
    assert checks.template_agreement(v, related, base, strong, weak).verdict == "failed"
    assert checks.template_agreement(v, related, base, weak, weak).verdict == "inconclusive"
