"""KL(base || steered) and cross-entropy over completion tokens, on random logits."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from steering_reliability.errors import InputError
from steering_reliability.metrics import cross_entropy, kl_divergence

finite = st.floats(allow_nan=False, allow_infinity=False, min_value=-1e4, max_value=1e4, width=32)
shapes = st.tuples(st.integers(1, 2), st.integers(1, 4), st.integers(1, 10))


@st.composite
def logit_pairs(draw: st.DrawFn) -> tuple[torch.Tensor, torch.Tensor]:
    shape = draw(shapes)
    a = draw(arrays("float32", shape, elements=finite))
    b = draw(arrays("float32", shape, elements=finite))
    return torch.as_tensor(a), torch.as_tensor(b)


@given(logit_pairs())
def test_kl_of_a_distribution_with_itself_is_zero(pair: tuple[torch.Tensor, torch.Tensor]) -> None:
    p, _ = pair
    kl = kl_divergence(p, p.clone())
    assert kl.shape == (p.shape[0],)
    assert bool((kl == 0).all()), kl


@given(logit_pairs(), st.data())
def test_kl_is_non_negative_and_finite(
    pair: tuple[torch.Tensor, torch.Tensor], data: st.DataObject
) -> None:
    p, q = pair
    mask = torch.as_tensor(
        data.draw(arrays("bool", p.shape[:2], elements=st.booleans())), dtype=torch.bool
    )
    mask[:, 0] = True  # at least one completion position per row
    kl = kl_divergence(p, q, mask)
    assert bool((kl >= 0).all()) and bool(torch.isfinite(kl).all()), kl


def test_kl_known_value_and_direction() -> None:
    # base [0.5, 0.5], steered [0.9, 0.1]: KL = 0.5 ln(0.5/0.9) + 0.5 ln(0.5/0.1)
    base = torch.log(torch.tensor([[[0.5, 0.5]]]))
    steered = torch.log(torch.tensor([[[0.9, 0.1]]]))
    expected = 0.5 * math.log(0.5 / 0.9) + 0.5 * math.log(0.5 / 0.1)
    assert kl_divergence(base, steered).item() == pytest.approx(expected, rel=1e-6)
    reverse = 0.9 * math.log(0.9 / 0.5) + 0.1 * math.log(0.1 / 0.5)
    assert kl_divergence(steered, base).item() == pytest.approx(reverse, rel=1e-6)


def test_kl_averages_all_masked_positions_not_only_the_first() -> None:
    torch.manual_seed(0)
    base = torch.randn(2, 6, 10)
    steered = base.clone()
    steered[:, 3:] += 5 * torch.randn(2, 3, 10)  # the first positions agree, later ones drift
    mask = torch.tensor(
        [[False, True, True, True, True, True], [False, False, True, True, True, False]]
    )
    kl = kl_divergence(base, steered, mask)
    assert bool((kl > 0).all())
    per_token = kl_divergence(base.reshape(12, 1, 10), steered.reshape(12, 1, 10)).reshape(2, 6)
    manual = torch.stack([per_token[i][mask[i]].mean() for i in range(2)])
    assert torch.allclose(kl, manual)


def test_kl_ignores_unmasked_infinite_positions_and_empty_rows_are_nan() -> None:
    base = torch.zeros(2, 2, 3)
    steered = torch.zeros(2, 2, 3)
    steered[:, 1, 0] = -float("inf")  # KL would be infinite at position 1
    kl = kl_divergence(base, steered, torch.tensor([[True, False], [False, False]]))
    assert kl[0].item() == 0.0 and math.isnan(kl[1].item())
    assert math.isinf(kl_divergence(base, steered)[0].item())


def test_kl_rejects_mismatched_shapes() -> None:
    with pytest.raises(InputError, match="differ in shape"):
        kl_divergence(torch.zeros(1, 2, 3), torch.zeros(1, 2, 4))
    with pytest.raises(InputError, match="mask"):
        kl_divergence(
            torch.zeros(1, 2, 3), torch.zeros(1, 2, 3), torch.ones(1, 3, dtype=torch.bool)
        )
    with pytest.raises(InputError):
        kl_divergence(torch.zeros(2, 3), torch.zeros(2, 3))


@given(logit_pairs(), st.data())
def test_cross_entropy_matches_a_numpy_reference_and_is_non_negative(
    pair: tuple[torch.Tensor, torch.Tensor], data: st.DataObject
) -> None:
    logits, _ = pair
    b, t, v = logits.shape
    targets = data.draw(arrays("int64", (b, t), elements=st.integers(0, v - 1)))
    ce = cross_entropy(logits, torch.as_tensor(targets)).numpy()
    x = logits.numpy().astype(np.float64)
    top = x.max(axis=-1)
    logz = top + np.log(np.exp(x - top[..., None]).sum(axis=-1))
    ref = (logz - np.take_along_axis(x, targets[..., None], axis=-1)[..., 0]).mean(axis=1)
    assert (ce >= 0).all()
    np.testing.assert_allclose(ce, ref, rtol=1e-9, atol=1e-9)


def test_cross_entropy_skips_padding_and_checks_ids() -> None:
    logits = torch.log(torch.tensor([[[0.25, 0.75], [0.5, 0.5]]]))
    targets = torch.tensor([[1, -100]])
    mask = torch.tensor([[True, False]])
    assert cross_entropy(logits, targets, mask).item() == pytest.approx(-math.log(0.75))
    with pytest.raises(InputError, match="outside the vocabulary"):
        cross_entropy(logits, torch.tensor([[1, 7]]))
    with pytest.raises(InputError, match="targets shape"):
        cross_entropy(logits, torch.tensor([1, 0]))
