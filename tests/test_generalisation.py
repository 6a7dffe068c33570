"""The generalisation map's numerics: principal angles against closed forms, the axis shares
(uncentred PCA), consistency, the slope fit, the KL bisection on monotone and non-monotone
curves, family grouping, and the per-prompt decomposition on the tiny model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from steering_reliability.config import load_config
from steering_reliability.directions import cosine
from steering_reliability.errors import ConfigError
from steering_reliability.models import LoadedModel, tiny_model
from steering_reliability.prompts import Prompt
from steering_reliability.studies.generalisation import measures as gen


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return tiny_model()


def _e(i: int, d: int = 8) -> np.ndarray:
    v = np.zeros(d)
    v[i] = 1.0
    return v


@pytest.mark.parametrize("theta", [0.0, 15.0, 40.0, 90.0])
def test_principal_angles_match_the_closed_form(theta: float) -> None:
    """span(e0, e1) vs span(cos t e0 + sin t e2, e1): angles exactly [0, t], whatever
    (non-orthonormal, mixed) vectors span the two subspaces."""
    t = math.radians(theta)
    a = np.stack([_e(0) + 2 * _e(1), 3 * _e(1)])
    b = np.stack([-(math.cos(t) * _e(0) + math.sin(t) * _e(2)) + _e(1), 0.5 * _e(1)])
    assert np.allclose(gen.principal_angles(a, b), sorted([0.0, theta]), atol=1e-6)


def test_principal_angles_of_orthogonal_and_nested_subspaces() -> None:
    assert np.allclose(
        gen.principal_angles(np.stack([_e(0), _e(1)]), np.stack([_e(2), _e(3)])), [90, 90]
    )
    # a line inside a plane: one angle, 0
    assert np.allclose(
        gen.principal_angles(np.stack([_e(0) + _e(1)]), np.stack([_e(0), _e(1)])), [0]
    )
    # rank-deficient input: duplicated rows span one dimension
    assert len(gen.principal_angles(np.stack([_e(0), 2 * _e(0)]), np.stack([_e(0), _e(1)]))) == 1


def test_principal_angles_of_random_subspaces_are_large() -> None:
    rng = np.random.default_rng(0)
    angles = gen.principal_angles(rng.standard_normal((4, 500)), rng.standard_normal((4, 500)))
    assert angles.min() > 60  # unrelated subspaces in high dimension are nearly orthogonal


def test_principal_axes_keep_the_axes_that_hold_the_share() -> None:
    rng = np.random.default_rng(2)
    v = rng.standard_normal(30)
    nearly_one = np.stack([v + 0.01 * rng.standard_normal(30) for _ in range(5)])
    axes = gen.principal_axes(nearly_one, 0.9)
    assert axes.shape == (1, 30) and abs(float(axes[0] @ v)) / np.linalg.norm(v) > 0.999
    assert gen.principal_axes(np.eye(4)[:3], 0.9).shape == (3, 4)  # 1/3 each: all three needed
    assert gen.principal_axes(np.eye(4)[:3], 0.6).shape == (2, 4)
    assert np.allclose(
        gen.principal_axes(np.eye(4)[:3], 1.0) @ gen.principal_axes(np.eye(4)[:3], 1.0).T, np.eye(3)
    )


def test_axis_shares_one_direction_and_orthogonal_set() -> None:
    v = np.array([1.0, 2.0, -1.0, 0.5])
    same = np.stack([v, -3 * v, 0.1 * v])  # one direction up to sign and scale
    assert np.allclose(gen.axis_shares(same), [1, 0, 0], atol=1e-12)
    assert np.allclose(gen.axis_shares(np.eye(4)[:3] * [[1], [5], [9]]), [1 / 3] * 3)
    shares = gen.axis_shares(np.random.default_rng(1).standard_normal((5, 20)))
    assert math.isclose(float(shares.sum()), 1.0) and np.all(np.diff(shares) <= 1e-12)


def test_cosine_matrix_and_consistency() -> None:
    x = torch.tensor([[1.0, 0.0], [0.0, 2.0], [1.0, 1.0]])
    c = gen.cosine_matrix(x)
    assert np.allclose(c, [[1, 0, 0.70710678], [0, 1, 0.70710678], [0.70710678, 0.70710678, 1]])
    # consistency: mean of the off-diagonal cosines, against the brute-force mean
    rng = torch.Generator().manual_seed(0)
    d = torch.randn(7, 5, generator=rng) + torch.tensor([2.0, 0, 0, 0, 0])
    brute = gen.cosine_matrix(d)[~np.eye(7, dtype=bool)].mean()
    assert math.isclose(gen.consistency(d), float(brute), rel_tol=1e-9)
    assert math.isclose(gen.consistency(torch.tensor([[1.0, 1.0], [2.0, 2.0]])), 1.0)
    assert math.isclose(gen.consistency(torch.tensor([[1.0, 0.0], [-1.0, 0.0]])), -1.0)
    assert math.isnan(gen.consistency(torch.ones(1, 3)))


def test_bootstrap_cosines_of_identical_prompts_are_one() -> None:
    same = torch.tensor([[1.0, 2.0, 3.0]] * 5)
    assert np.allclose(gen.bootstrap_cosines(same, 50), 1.0)
    noisy = torch.randn(20, 6, generator=torch.Generator().manual_seed(0))
    boot = gen.bootstrap_cosines(noisy, 100)
    assert boot.shape == (100,) and np.all(np.abs(boot) <= 1 + 1e-12) and boot.min() < 0.99


def test_slopes_and_log_odds() -> None:
    alphas = [-1.0, -0.5, 0.0, 0.5, 1.0]
    y = np.stack([3 * np.asarray(alphas) + 1, -2 * np.asarray(alphas), np.full(5, 4.0)])
    assert np.allclose(gen.slopes(alphas, y), [3, -2, 0])
    assert np.allclose(gen.refusal_log_odds([0.5, 0.880797077977882]), [0.0, 2.0])
    assert np.isfinite(gen.refusal_log_odds([0.0, 1.0])).all()
    with pytest.raises(ValueError, match="two distinct"):
        gen.slopes([1.0, 1.0], np.zeros((2, 2)))


def _counting(f):  # type: ignore[no-untyped-def]
    calls: list[float] = []

    def wrapped(a: float) -> float:
        calls.append(a)
        return float(f(a))

    return wrapped, calls


def test_calibrate_on_a_monotone_curve() -> None:
    cost, calls = _counting(lambda a: 0.8 * a * a + 0.3 * a**3)
    found = gen.calibrate(cost, [0.5, 2.0], max_alpha=8.0)
    for c in found:
        assert c.status == "found" and abs(c.cost - c.budget) <= 0.02 * c.budget
        assert math.isclose(cost(c.alpha), c.cost)
    assert found[0].alpha < found[1].alpha
    assert len(set(calls)) == len(calls) - 2  # the two checks above; no alpha evaluated twice
    assert len(calls) <= 12
    # a budget above the whole curve
    (far,) = gen.calibrate(lambda a: 0.01 * a, [5.0], max_alpha=8.0)
    assert far.status == "unreachable" and math.isnan(far.alpha) and far.cost == pytest.approx(0.08)


def test_calibrate_stops_at_the_end_of_the_rising_part() -> None:
    """KL that rises, then falls (collapse): a budget below the peak is met on the rising side,
    never past the fall; one reached only after the fall is out of reach."""

    def hump(a: float) -> float:
        return 3.0 * a * a if a <= 1.0 else max(0.0, 3.0 - 2.0 * (a - 1.0)) + (a > 3.0) * 10 * a

    low, high = gen.calibrate(hump, [0.75, 20.0], max_alpha=8.0)
    assert low.status == "found" and low.alpha == pytest.approx(0.5, rel=0.02)
    assert high.status == "unreachable"  # the curve passes 20 only at a > 3, after its fall
    assert all(a <= 2.0 for a, _ in high.curve)  # nothing evaluated past the first fall


def _prompt(i: int, family: str) -> Prompt:
    return Prompt(id=f"p{i}", prompt=f"Tell me about request {i}.",
                  meta={"family": family, "style": "direct"})  # fmt: skip


def test_family_groups_pool_small_families_and_refuse_one() -> None:
    prompts = [_prompt(i, f) for i, f in enumerate(["a"] * 5 + ["b"] * 5 + ["c"] * 2 + ["d"] * 2)]
    groups, note = gen.family_groups(prompts, 4)
    assert list(groups) == ["a", "b", gen.OTHER] and groups[gen.OTHER] == [10, 11, 12, 13]
    assert "pooled" in note and "c (2)" in note
    groups, note = gen.family_groups(prompts[:11], 4)  # c has 1 prompt: too few even pooled
    assert list(groups) == ["a", "b"] and "left out" in note
    with pytest.raises(ConfigError, match="at least two families"):
        gen.family_groups(prompts[:7], 4)


def test_calibrate_cost_is_the_kl_the_steering_makes(tiny: LoadedModel) -> None:
    """On the tiny model: next_token_kl is 0 without steering and grows with alpha, so the
    calibration finds an alpha that meets the budget."""
    from steering_reliability.generation import next_token_logits
    from steering_reliability.interventions import Steering

    prompts = ["How do I bake bread?", "Name a colour.", "What is two plus two?"]
    base = next_token_logits(tiny, prompts)
    v = torch.randn(tiny.info.d_model, generator=torch.Generator().manual_seed(0))

    def cost(a: float) -> float:
        return gen.next_token_kl(tiny, prompts, base, [Steering("add", 1, v, a)] if a else [])

    assert cost(0.0) == pytest.approx(0.0, abs=1e-9)
    (c,) = gen.calibrate(cost, [0.015], max_alpha=1.0)  # its KL levels off near 0.024
    assert c.status == "found" and abs(c.cost - 0.015) <= 0.02 * 0.015


def test_per_prompt_differences_average_to_the_configured_direction(tiny: LoadedModel) -> None:
    """The decomposition the family directions come from: its mean is contrastive_prefix's
    vector, and a family direction is the same builder on that family's prompts alone."""
    from steering_reliability.directions import contrastive_prefix

    cfg = load_config("configs/fast.yaml")
    prompts = [_prompt(i, "ab"[i % 2]) for i in range(6)]
    diffs, norms = gen.prompt_differences(tiny, cfg, prompts, [1, 2])
    d = cfg.direction
    whole = contrastive_prefix(tiny, [p.prompt for p in prompts], layers=[1, 2],
                               refusal_prefix=d.refusal_prefix, compliance_prefix=d.compliance_prefix)  # fmt: skip
    only_a = contrastive_prefix(tiny, [p.prompt for p in prompts[0::2]], layers=[2],
                                refusal_prefix=d.refusal_prefix, compliance_prefix=d.compliance_prefix)  # fmt: skip
    assert torch.allclose(diffs[1].mean(0), whole[1].vector, atol=1e-5)
    # the experiment's check (cosine > 0.999 to the sweep's direction) fails on a decomposition
    # built with other prefixes
    alt, _ = gen.prompt_differences(tiny, cfg, prompts, [1], variant="alt")
    assert cosine(alt[1].mean(0), whole[1].vector) < 0.999
    fam = gen.family_direction(cfg, diffs[2][0::2], 2, "a", norms[2])
    assert torch.allclose(fam.vector, only_a[2].vector, atol=1e-5)
    dim, _ = gen.prompt_differences(tiny, cfg, prompts, [2], method="diff_in_means",
                                    harmless=[_prompt(9, "x"), _prompt(10, "y")])  # fmt: skip
    assert dim[2].shape == diffs[2].shape and not torch.allclose(dim[2], diffs[2])


def test_sources_without_enough_families_are_none_and_pooled() -> None:
    """Too few families: the transfer matrix keeps its unsteered and pooled rows (the family
    cases skip as inconclusive, saying why), instead of failing at collection."""
    cfg = load_config("configs/fast.yaml")
    assert gen.sources(cfg)[:2] == (gen.NONE, gen.POOLED) and len(gen.sources(cfg)) == 8
    few = load_config("configs/fast.yaml", {"generalisation.min_family": 1000})
    assert gen.sources(few) == (gen.NONE, gen.POOLED)
