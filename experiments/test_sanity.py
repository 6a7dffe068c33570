"""Sanity properties of the instrument, asserted (run `pytest -m sanity` before trusting a result).

Each check also records its numbers as rows (experiment "sanity:<name>"), so the report can say
which checks passed and with what values. Sizes come from the config's `sanity` section.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest

from steering_reliability.config import Config, sanity_layer
from steering_reliability.generation import next_token_logits
from steering_reliability.interventions import steer
from steering_reliability.metrics import first_token_refusal_prob, refusal, refusal_token_ids
from steering_reliability.metrics.stats import diff_ci
from steering_reliability.studies import checks
from steering_reliability.studies.directions import directions_for_layers
from steering_reliability.studies.shared import direction_prompts, generate_for, steering_for
from steering_reliability.verdict import Verdict

pytestmark = [pytest.mark.sweep, pytest.mark.sanity, pytest.mark.experiment]


# ---------------------------------------------------------------- helpers


@dataclass(frozen=True)
class Sanity:
    """What every check reads: the run's config, model, prompts, main directions, its layer."""

    record: Any
    cfg: Config
    run_id: str
    model: Any
    splits: dict[str, Any]
    directions: dict[int, Any]

    @property
    def layer(self) -> int:
        return sanity_layer(self.cfg)

    def subset(self, split: str) -> tuple[Any, ...]:
        return tuple(self.splits[split][: self.cfg.sanity.n_prompts])

    def generate(
        self, prompts: Sequence[Any], steerings: Sequence[Any] = (), cfg: Config | None = None
    ) -> list[Any]:
        """The config's decoding settings (or `cfg`'s) at the sanity length."""
        return generate_for(self.model, cfg or self.cfg, prompts, steerings,
                            max_new_tokens=self.cfg.sanity.max_new_tokens)  # fmt: skip

    def add(self, vector: Any, alpha: float | None = None, layer: int | None = None) -> Any:
        """Activation addition of `vector` at the sanity layer, at the sanity alpha by default."""
        a = self.cfg.sanity.alpha if alpha is None else alpha
        return steering_for(self.cfg, "add", self.layer if layer is None else layer, vector, a)

    def conclude(self, v: Verdict, **extra: Any) -> None:
        """Record the verdict row, then make the pytest outcome say the same thing: a failed
        check fails, an inconclusive one is skipped with its reason (never shown as passed)."""
        self.record.rows([checks.verdict_row(self.cfg, self.run_id, v, layer=self.layer, **extra)])
        if v.verdict == "failed":
            pytest.fail(f"{v.name} failed: {v.reason}", pytrace=False)
        if v.verdict == "inconclusive":
            pytest.skip(f"{v.name} inconclusive: {v.reason}")


@pytest.fixture
def sanity(
    record: Any, sr_config: Config, sr_run: Any, model: Any, splits: Any, directions: Any
) -> Sanity:
    return Sanity(record, sr_config, sr_run.run_id, model, splits, directions)


def _refusal_flags(cfg: Config, prompts: Sequence[Any], gens: Sequence[Any]) -> Any:
    """1.0 / 0.0 per prompt: whether its generation refuses (a pandas Series by prompt id)."""
    import pandas as pd

    t = cfg.metrics.refusal_threshold
    flags = [float(refusal(g.text, threshold=t).is_refusal) for g in gens]
    return pd.Series(flags, index=[p.id for p in prompts])


def _refusal_measure(model: Any, cfg: Config, prompts: Sequence[Any]) -> Any:
    """measure(steerings) = mean first-token refusal probability over the prompts (one forward)."""
    ids = refusal_token_ids(model.tokenizer)
    texts = [p.prompt for p in prompts]

    def measure(steerings: Sequence[Any]) -> float:
        with steer(model, steerings):
            logits = next_token_logits(model, texts, system_prompt=cfg.model.system_prompt)
        return float(first_token_refusal_prob(logits, ids).mean())

    return measure


def _generated_refusal_measure(sanity: Sanity, prompts: Sequence[Any]) -> Any:
    """measure(steerings) = refusal rate of the generations (the config's decoding settings)."""

    def measure(steerings: Sequence[Any]) -> float:
        return float(
            _refusal_flags(sanity.cfg, prompts, sanity.generate(prompts, steerings)).mean()
        )

    return measure


# ---------------------------------------------------------------- checks


def test_ablation_removes_the_projection(sanity: Sanity) -> None:
    """Ablation at alpha = 1 leaves |resid . v| ~ 0 at the configured site, read by a separate
    read hook on real prompts (not the steering hook's own output)."""
    cfg = sanity.cfg
    ablation = steering_for(
        cfg, "ablate", sanity.layer, sanity.directions[sanity.layer].vector, 1.0
    )
    prompts = [p.prompt for p in sanity.subset("harm_test")]
    sanity.conclude(
        checks.ablation_projection(
            sanity.model, prompts, ablation, system_prompt=cfg.model.system_prompt
        )
    )


def test_alpha_zero_reproduces_the_baseline(sanity: Sanity) -> None:
    """Steering with alpha = 0 gives exactly the unsteered tokens and log-probabilities."""
    prompts, vec = sanity.subset("benign"), sanity.directions[sanity.layer].vector
    sanity.conclude(checks.identical_outputs(
        sanity.generate(prompts),
        sanity.generate(prompts, [sanity.add(vec, 0.0)]),
        sanity.generate(prompts, [steering_for(sanity.cfg, "ablate", sanity.layer, vec, 0.0)]),
    ))  # fmt: skip


def test_downstream_ablation_cancels_induced_refusal(sanity: Sanity) -> None:
    """Refusals induced by adding v at layer L go away when v is ablated at every later layer;
    inconclusive when the addition induces little refusal (nothing to cancel)."""
    cfg, layer = sanity.cfg, sanity.layer
    d = sanity.directions[layer]
    later = [steering_for(cfg, "ablate", lyr, d.vector, 1.0)
             for lyr in range(layer + 1, sanity.model.info.n_layers)]  # fmt: skip
    measure = _generated_refusal_measure(sanity, sanity.subset("benign"))
    v = checks.downstream_cancels(measure, sanity.add(d.scaled(cfg.direction.alpha_scale)), later,
                                  min_induced=0.2)  # fmt: skip
    sanity.conclude(v, measure="refusal rate of generations")


def test_direction_is_stable_under_template_change(sanity: Sanity) -> None:
    """Alternate refusal/compliance prefixes give a related direction with the same effect.

    Failed when the cosine is below 0.3 (two random directions in d_model >= 500 have |cos| ~
    0.04) or the two directions' harm_test refusal rates clearly differ by more than 0.35 (the
    95% interval of their paired difference lies wholly outside +-0.35); passed when the cosine
    is >= 0.3, both raise refusal by >= 0.2 and that interval lies inside +-0.35; inconclusive
    otherwise (including when the main direction raises refusal by < 0.2). Prefix-mean
    directions partly encode the prefix tokens, so the cosine is well below 1.
    """
    cfg, layer = sanity.cfg, sanity.layer
    alt = directions_for_layers(sanity.model, cfg, direction_prompts(cfg), [layer], variant="alt")[
        layer
    ]
    main = sanity.directions[layer]
    prompts, scale = sanity.subset("harm_test"), cfg.direction.alpha_scale

    def flags(steerings: Sequence[Any]) -> Any:
        return _refusal_flags(cfg, prompts, sanity.generate(prompts, steerings))

    v = checks.template_agreement(
        main.vector, alt.vector, flags([]),
        flags([sanity.add(main.scaled(scale))]), flags([sanity.add(alt.scaled(scale))]),
    )  # fmt: skip
    sanity.conclude(v, norm_main=main.norm, norm_alt=alt.norm)


def test_direction_is_stable_under_seed_change(
    record: Any, sr_config: Config, sr_run: Any, model: Any
) -> None:
    """Directions from two seeded, disjoint halves of the direction prompts point the same way."""
    import random

    cfg = sr_config
    sanity = Sanity(record, cfg, sr_run.run_id, model, {}, {})  # needs no main direction
    pool = list(direction_prompts(cfg))
    seed = cfg.sanity.seeds[0]
    order = list(range(len(pool)))
    random.Random(f"sanity-seed:{seed}").shuffle(order)
    halves = [sorted(order[: len(pool) // 2]), sorted(order[len(pool) // 2 :])]
    vecs = [
        directions_for_layers(
            model, cfg, [pool[i] for i in half], [sanity.layer], variant=f"seed{seed}-half{k}"
        )[sanity.layer]
        for k, half in enumerate(halves)
    ]
    v = checks.direction_agreement(
        "seed_robustness", vecs[0].vector, vecs[1].vector, min_cosine=0.8,
        what=f"directions from two disjoint halves (seed {seed}) of the direction prompts",
    )  # fmt: skip
    sanity.conclude(v, norms=[d.norm for d in vecs])


def test_rates_are_stable_under_sampling_seed_change(sanity: Sanity) -> None:
    """The steered refusal rate does not hinge on the sampling seed (temperature 0.7, top_p 0.9).

    The same prompts are sampled under two seeds; the 95% interval of the paired per-prompt
    difference decides (`checks.equivalence`): passed when it lies inside +-0.25, failed when it
    lies wholly outside, inconclusive otherwise (too few prompts to tell).
    """
    import dataclasses

    cfg = sanity.cfg
    sampled = dataclasses.replace(
        cfg, generation=dataclasses.replace(cfg.generation, temperature=0.7, top_p=0.9)
    )
    prompts = sanity.subset("harm_test")
    steering = sanity.add(sanity.directions[sanity.layer].scaled(cfg.direction.alpha_scale))
    seeds = list(cfg.sanity.seeds[:2])
    flags = [
        _refusal_flags(
            cfg,
            prompts,
            sanity.generate(prompts, [steering], dataclasses.replace(sampled, seed=seed)),
        )
        for seed in seeds
    ]
    rates = [float(f.mean()) for f in flags]
    said = f"refusal rate {rates[0]:.2f} (seed {seeds[0]}) vs {rates[1]:.2f} (seed {seeds[1]})"
    v = checks.equivalence("sampling_seed", diff_ci(flags[0], flags[1]), 0.25, said)
    sanity.conclude(v, seeds=seeds, rates=rates, temperature=0.7, top_p=0.9)


def test_random_direction_of_equal_norm_has_no_effect(sanity: Sanity) -> None:
    """The direction's effect on first-token refusal probability against K = 20 random
    directions of the same norm at the same site (its percentile in that null)."""
    cfg = sanity.cfg
    prompts = sanity.subset("harm_test") + sanity.subset("benign")
    vec = sanity.directions[sanity.layer].scaled(cfg.direction.alpha_scale)
    v = checks.random_null(
        _refusal_measure(sanity.model, cfg, prompts), sanity.add, vec, k=20, seed=cfg.seed
    )
    sanity.conclude(v, measure="mean first-token refusal probability, harm_test + benign subsets")
