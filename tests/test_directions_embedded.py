"""The contrastive direction on the embedded default model (slow: loads SmolLM2-135M)."""

from __future__ import annotations

from collections.abc import Sequence

import pytest

from steering_reliability.config import Config
from steering_reliability.directions import Direction, contrastive_prefix
from steering_reliability.models import LoadedModel

pytestmark = pytest.mark.slow

MIDDLE_LAYER = 12


@pytest.fixture(scope="module")
def harm_train() -> list[str]:
    from steering_reliability.prompts import load_prompts

    cfg = Config()
    return [p.prompt for p in load_prompts(cfg.resolve_path(cfg.prompts.harm_train))]


def _build(
    model: LoadedModel, prompts: Sequence[str], layers: Sequence[int]
) -> dict[int, Direction]:
    d = Config().direction
    return contrastive_prefix(
        model,
        prompts,
        layers=layers,
        hook_point=d.hook_point,
        position=d.position,
        refusal_prefix=d.refusal_prefix,
        compliance_prefix=d.compliance_prefix,
        batch_size=d.batch_size,
    )


def test_contrastive_direction_is_stable_across_prompt_halves(
    smollm2: LoadedModel, harm_train: list[str]
) -> None:
    dirs = _build(smollm2, harm_train[:16], [6, MIDDLE_LAYER, 18])
    for layer, d in dirs.items():
        print(
            f"layer {layer}: norm {d.norm:.2f}, mean resid norm {d.mean_resid_norm:.1f}, "
            f"split-half cosine {d.split_half_cosine:.4f}, batch cosines {d.batch_cosines}"
        )
    assert dirs[MIDDLE_LAYER].split_half_cosine > 0.5


def test_contrastive_direction_raises_refusal_rate(
    smollm2: LoadedModel, harm_train: list[str]
) -> None:
    """Issue 5: at some alpha of the default grid, harm_train completions refuse more often."""
    from steering_reliability.generation import generate
    from steering_reliability.interventions import Steering
    from steering_reliability.metrics.refusal import refusal

    cfg = Config()
    d = _build(smollm2, harm_train[:32], [MIDDLE_LAYER])[MIDDLE_LAYER]
    held = harm_train[32:48]  # harm_train prompts the direction was not built from
    ids = [f"harm_train[{i}]" for i in range(32, 48)]
    vector = d.scaled(cfg.direction.alpha_scale)
    rates: dict[float, float] = {}
    for alpha in (0.0, *cfg.sweep.alphas):
        steerings = [] if alpha == 0 else [Steering("add", MIDDLE_LAYER, vector, alpha)]
        gens = generate(
            smollm2, held, prompt_ids=ids, max_new_tokens=24, steerings=steerings, batch_size=16
        )
        rates[alpha] = sum(refusal(g.text).is_refusal for g in gens) / len(gens)
        print(f"layer {MIDDLE_LAYER} alpha {alpha:g}: refusal rate {rates[alpha]:.2f}")
        print(f"  e.g. {gens[0].text!r}")
    assert max(rates[a] for a in cfg.sweep.alphas) > rates[0.0], rates
