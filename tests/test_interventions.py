"""The intervention math on random tensors: no model involved."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given
from hypothesis import strategies as st

from steering_reliability.errors import DirectionError, InterventionError
from steering_reliability.interventions import (
    HOOK_POINTS,
    Steering,
    ablate,
    add,
    hook_name,
    make_hook,
    unit,
)

finite = st.floats(min_value=-1e3, max_value=1e3, allow_nan=False, allow_infinity=False, width=64)
dims = st.tuples(st.integers(1, 3), st.integers(1, 5), st.integers(1, 8))


@st.composite
def resid_and_vector(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    """A float64 residual [batch, pos, d] and a non-zero direction [d]."""
    b, p, d = draw(dims)
    x = torch.tensor(
        draw(st.lists(finite, min_size=b * p * d, max_size=b * p * d)), dtype=torch.float64
    )
    v = torch.tensor(draw(st.lists(finite, min_size=d, max_size=d)), dtype=torch.float64)
    assume(float(v.norm()) > 1e-3)
    return x.reshape(b, p, d), v


def _tol(x: torch.Tensor) -> float:
    return 1e-9 * (1.0 + float(x.abs().max()))


@given(resid_and_vector())
def test_ablation_at_alpha_1_removes_the_projection(xv: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, v = xv
    out = ablate(v, 1.0)(x)
    assert float((out @ unit(v)).abs().max()) <= _tol(x)


@given(resid_and_vector())
def test_ablation_is_idempotent(xv: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, v = xv
    fn = ablate(v)
    once = fn(x)
    assert torch.allclose(fn(once), once, rtol=0, atol=_tol(x))


@given(resid_and_vector(), st.floats(0.01, 100) | st.floats(-100, -0.01))
def test_ablation_ignores_the_scale_and_sign_of_v(
    xv: tuple[torch.Tensor, torch.Tensor], c: float
) -> None:
    x, v = xv
    assert torch.allclose(
        ablate(v)(x), ablate(c * v)(x), rtol=0, atol=1e-7 * (1.0 + float(x.abs().max()))
    )


@given(resid_and_vector(), st.floats(-4, 4))
def test_ablation_scales_the_projection_by_1_minus_alpha(
    xv: tuple[torch.Tensor, torch.Tensor], a: float
) -> None:
    x, v = xv
    u = unit(v)
    assert torch.allclose(ablate(v, a)(x) @ u, (1 - a) * (x @ u), rtol=0, atol=10 * _tol(x))


@given(resid_and_vector())
def test_add_at_alpha_0_is_the_exact_identity(xv: tuple[torch.Tensor, torch.Tensor]) -> None:
    x, v = xv
    assert torch.equal(add(v, 0.0)(x), x)
    assert torch.equal(ablate(v, 0.0)(x), x)


@given(resid_and_vector(), st.floats(-8, 8))
def test_add_shifts_every_position_by_alpha_v(
    xv: tuple[torch.Tensor, torch.Tensor], a: float
) -> None:
    x, v = xv
    assert torch.allclose(
        add(v, a)(x) - x,
        (a * v).expand_as(x),
        rtol=0,
        atol=_tol(x) + 1e-9 * abs(a) * float(v.abs().max()),
    )


@given(resid_and_vector(), st.sampled_from(["add", "ablate"]), st.floats(-4, 4))
def test_hooks_never_edit_in_place(
    xv: tuple[torch.Tensor, torch.Tensor], kind: str, a: float
) -> None:
    x, v = xv
    before = x.clone()
    out = make_hook(kind, v, a)(x)
    assert torch.equal(x, before)
    assert out.data_ptr() != x.data_ptr()


def test_float32_ablation_removes_the_projection_to_float_precision() -> None:
    g = torch.Generator().manual_seed(0)
    x = 100 * torch.randn(4, 7, 576, generator=g)
    v = torch.randn(576, generator=g)
    out = ablate(v)(x)
    assert float((out @ unit(v)).abs().max()) < 1e-3  # |x·v̂| was ~100


@pytest.mark.parametrize("kind", ["add", "ablate"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf])
def test_non_finite_alpha_is_refused(kind: str, bad: float) -> None:
    with pytest.raises(InterventionError, match="alpha must be finite"):
        make_hook(kind, torch.ones(4), bad)


@pytest.mark.parametrize("kind", ["add", "ablate"])
def test_nan_in_the_residual_raises(kind: str) -> None:
    x = torch.zeros(1, 3, 4)
    x[0, 1, 2] = math.nan
    with pytest.raises(InterventionError, match="NaN or inf"):
        make_hook(kind, torch.ones(4), 1.0)(x)


@pytest.mark.parametrize("kind", ["add", "ablate"])
def test_bad_vectors_are_refused_with_the_reason(kind: str) -> None:
    with pytest.raises(DirectionError, match="zero"):
        make_hook(kind, torch.zeros(4), 1.0)
    with pytest.raises(DirectionError, match="1-d"):
        make_hook(kind, torch.ones(2, 4), 1.0)
    with pytest.raises(DirectionError, match="NaN or inf"):
        make_hook(kind, torch.tensor([1.0, math.nan]), 1.0)
    with pytest.raises(DirectionError, match="does not match the residual"):
        make_hook(kind, torch.ones(4), 1.0)(torch.zeros(1, 2, 5))


def test_unknown_kind_suggests_the_close_name() -> None:
    with pytest.raises(InterventionError, match="did you mean 'ablate'"):
        make_hook("ablat", torch.ones(4), 1.0)


def test_hook_names_are_the_bridge_names() -> None:
    assert hook_name(3, "resid_pre") == "blocks.3.hook_in"
    assert hook_name(3, "resid_post") == "blocks.3.hook_out"
    assert set(HOOK_POINTS) == {"resid_pre", "resid_post"}
    with pytest.raises(InterventionError, match="resid_pre"):
        hook_name(3, "resid_prev")


def test_a_bridge_hook_name_as_hook_point_gets_a_precise_hint() -> None:
    with pytest.raises(InterventionError, match="hook_point='resid_post' and the layer separately"):
        Steering("add", 2, torch.ones(4), 1.0, hook_point="blocks.2.hook_resid_post")


def test_steering_validates_and_owns_its_vector() -> None:
    v = torch.ones(4)
    s = Steering("add", 0, v, 2)
    v += 1
    assert torch.equal(s.vector, torch.ones(4)) and s.alpha == 2.0 and s.site == "blocks.0.hook_in"
    with pytest.raises(InterventionError, match="apply_to"):
        Steering("add", 0, v, 1.0, apply_to="generation")
    with pytest.raises(InterventionError, match="unknown intervention"):
        Steering("steer", 0, v, 1.0)
    with pytest.raises(InterventionError, match="alpha"):
        Steering("add", 0, v, math.nan)
    with pytest.raises(DirectionError, match="zero"):
        Steering("ablate", 0, torch.zeros(4), 1.0)
