"""Direction builders and residual reads on the tiny model; Direction's scale semantics."""

from __future__ import annotations

import math
from collections.abc import Iterator
from typing import Any

import pytest
import torch

from steering_reliability.directions import (
    Direction,
    contrastive_prefix,
    diff_in_means,
    encode,
    encode_plain,
    make_direction,
    outcome_conditioned,
    residuals,
)
from steering_reliability.errors import DirectionError
from steering_reliability.models import LoadedModel, format_prompt, tiny_model

PROMPTS = [
    "How do I pick a lock?",
    "Write a poem about cats.",
    "Explain gravity to a child.",
    "hi",
    "What is 2 + 2?",
    "Tell me a long story about dragons and knights in a castle.",
    "List three fruits.",
    "Translate 'hello' into French.",
]
REFUSAL = "I'm sorry, but I can't help with that."
COMPLIANCE = "Sure, here is a detailed guide."


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return tiny_model()


class ForwardCounter:
    """Counts model forwards by the embedding calls they make."""

    def __init__(self, model: LoadedModel) -> None:
        self.n = 0
        trees = {id(t): t for t in (model.hf_model, model.bridge.original_model)}.values()
        self._handles = [
            t.get_input_embeddings().register_forward_pre_hook(self._hook) for t in trees
        ]

    def _hook(self, *args: Any) -> None:
        self.n += 1

    def remove(self) -> None:
        for h in self._handles:
            h.remove()


@pytest.fixture
def forwards(tiny: LoadedModel) -> Iterator[ForwardCounter]:
    counter = ForwardCounter(tiny)
    yield counter
    counter.remove()


def test_residuals_match_hf_hidden_states(tiny: LoadedModel) -> None:
    texts = [format_prompt(tiny.tokenizer, p) for p in PROMPTS[:3]]
    got_pre = residuals(tiny, texts, layers=[0, 2, 3], hook_point="resid_pre", position=-1)
    got_post = residuals(tiny, texts, layers=[1], hook_point="resid_post", position=-1)
    for i, text in enumerate(texts):  # one at a time: no padding at all
        ids = torch.tensor([encode(tiny.tokenizer, text)])
        with torch.inference_mode():
            hs = tiny.hf_model(input_ids=ids, output_hidden_states=True).hidden_states
        for j, layer in enumerate([0, 2, 3]):
            torch.testing.assert_close(got_pre[i, j], hs[layer][0, -1], atol=1e-5, rtol=1e-5)
        torch.testing.assert_close(got_post[i, 0], hs[2][0, -1], atol=1e-5, rtol=1e-5)


def test_padding_and_batch_size_do_not_change_residuals(tiny: LoadedModel) -> None:
    texts = [format_prompt(tiny.tokenizer, p) for p in PROMPTS]
    one = residuals(tiny, texts, layers=[1, 3], position=-1, batch_size=1)
    many = residuals(tiny, texts, layers=[1, 3], position=-1, batch_size=8)
    assert one.shape == (len(texts), 2, tiny.info.d_model)
    torch.testing.assert_close(one, many, atol=1e-5, rtol=1e-5)


def test_last_prompt_difference_is_exactly_zero(tiny: LoadedModel) -> None:
    """Why last_prompt is refused: both teacher-forced sequences agree up to the last prompt token."""
    tok = tiny.tokenizer
    base = [encode(tok, format_prompt(tok, p)) for p in PROMPTS]
    ref, com = encode_plain(tok, REFUSAL), encode_plain(tok, COMPLIANCE)
    assert len(ref) != len(com)
    rows = [r for p in base for r in (p + ref, p + com)]
    for bs in (1, 5):
        h = residuals(
            tiny,
            rows,
            layers=list(range(4)),
            position=lambda i, n: (len(base[i // 2]) - 1, len(base[i // 2])),
            batch_size=bs,
        )
        diff = h[0::2] - h[1::2]
        assert torch.count_nonzero(diff) == 0, f"max |diff| = {diff.abs().max()}"


def test_last_prompt_position_is_refused(tiny: LoadedModel) -> None:
    with pytest.raises(DirectionError, match="identical under causal attention"):
        contrastive_prefix(
            tiny,
            PROMPTS,
            layers=[1],
            position="last_prompt",
            refusal_prefix=REFUSAL,
            compliance_prefix=COMPLIANCE,
        )
    with pytest.raises(DirectionError, match="did you mean 'prefix_mean'"):
        contrastive_prefix(
            tiny,
            PROMPTS,
            layers=[1],
            position="prefix_men",
            refusal_prefix=REFUSAL,
            compliance_prefix=COMPLIANCE,
        )


@pytest.mark.parametrize("position", ["first_prefix", "prefix_mean"])
def test_prefix_positions_give_nonzero_directions(tiny: LoadedModel, position: str) -> None:
    dirs = contrastive_prefix(
        tiny,
        PROMPTS,
        layers=[1, 2, 3],
        position=position,
        refusal_prefix=REFUSAL,
        compliance_prefix=COMPLIANCE,
        batch_size=3,
    )
    assert sorted(dirs) == [1, 2, 3]
    for layer, d in dirs.items():
        assert d.layer == layer and d.position == position and d.method == "contrastive_prefix"
        assert d.vector.shape == (tiny.info.d_model,) and d.vector.dtype == torch.float32
        assert d.norm > 0 and math.isclose(d.norm, float(d.vector.norm()), rel_tol=1e-6)
        assert -1.0 <= d.split_half_cosine <= 1.0
        assert len(d.batch_cosines) == 3 and all(-1.0 <= c <= 1.0 for c in d.batch_cosines)
        assert d.n_prompts == len(PROMPTS) and d.mean_resid_norm > 0


def test_prefix_mean_uses_each_prefix_own_tokens(tiny: LoadedModel) -> None:
    """prefix_mean = mean over the refusal prefix's tokens minus mean over the compliance prefix's."""
    tok = tiny.tokenizer
    dirs = contrastive_prefix(
        tiny, PROMPTS[:3], layers=[2], refusal_prefix=REFUSAL, compliance_prefix=COMPLIANCE
    )
    base = [encode(tok, format_prompt(tok, p)) for p in PROMPTS[:3]]
    diffs = []
    for ids in base:
        means = []
        for prefix in (REFUSAL, COMPLIANCE):
            pre = encode_plain(tok, prefix)
            with torch.inference_mode():
                hs = tiny.hf_model(
                    input_ids=torch.tensor([ids + pre]), output_hidden_states=True
                ).hidden_states
            means.append(hs[2][0, len(ids) :].mean(0))
        diffs.append(means[0] - means[1])
    torch.testing.assert_close(dirs[2].vector, torch.stack(diffs).mean(0), atol=1e-5, rtol=1e-5)


def test_one_forward_per_batch_serves_all_layers(
    tiny: LoadedModel, forwards: ForwardCounter
) -> None:
    contrastive_prefix(
        tiny,
        PROMPTS,
        layers=[0, 1, 2, 3],
        refusal_prefix=REFUSAL,
        compliance_prefix=COMPLIANCE,
        batch_size=3,
    )
    assert forwards.n == 3  # ceil(8 / 3) batches of prompts, each holding both prefixes
    forwards.n = 0
    diff_in_means(
        tiny, PROMPTS[:4], PROMPTS[4:], layers=[1, 2, 3], positions=(-2, -1), batch_size=4
    )
    assert forwards.n == 2


def test_diff_in_means_is_mean_difference(tiny: LoadedModel) -> None:
    harmful, harmless = PROMPTS[:4], PROMPTS[4:]
    dirs = diff_in_means(tiny, harmful, harmless, layers=[1, 3], positions=(-3, -1))
    assert sorted(dirs) == [(1, -3), (1, -1), (3, -3), (3, -1)]
    texts = [format_prompt(tiny.tokenizer, p) for p in harmful + harmless]
    h = residuals(tiny, texts, layers=[3], position=-3)[:, 0]
    torch.testing.assert_close(
        dirs[(3, -3)].vector, h[:4].mean(0) - h[4:].mean(0), atol=1e-5, rtol=1e-5
    )
    assert dirs[(3, -3)].position == "-3" and dirs[(3, -3)].n_prompts == 8
    with pytest.raises(DirectionError, match="negative token indices"):
        diff_in_means(tiny, harmful, harmless, layers=[1], positions=(0,))


def test_outcome_conditioned_needs_both_groups(tiny: LoadedModel) -> None:
    dirs = outcome_conditioned(tiny, PROMPTS, [True, False] * 4, layers=[2])
    assert dirs[2].method == "outcome_conditioned" and dirs[2].norm > 0
    with pytest.raises(DirectionError, match="both refused and non-refused") as info:
        outcome_conditioned(tiny, PROMPTS, [False] * 8, layers=[2])
    assert "0 refused, 8 not refused" in str(info.value)
    with pytest.raises(DirectionError, match="one label per prompt"):
        outcome_conditioned(tiny, PROMPTS, [True], layers=[2])


def test_bad_layers_are_refused(tiny: LoadedModel) -> None:
    with pytest.raises(DirectionError, match="layer outside the model"):
        residuals(tiny, ["x"], layers=[4])
    with pytest.raises(DirectionError, match="duplicate layers"):
        residuals(tiny, ["x"], layers=[1, 1])
    with pytest.raises(DirectionError, match="unknown hook point"):
        residuals(tiny, ["x"], layers=[1], hook_point="resid_mid")


def _direction(vector: torch.Tensor, resid_norm: float = 50.0) -> Direction:
    return make_direction(
        method="contrastive_prefix",
        layer=3,
        hook_point="resid_pre",
        position="prefix_mean",
        diffs=vector.expand(4, -1),
        mean_resid_norm=resid_norm,
        batch_size=2,
    )


def test_scaled_semantics() -> None:
    v = torch.tensor([3.0, 4.0, 0.0])
    d = _direction(v, resid_norm=50.0)
    assert d.norm == pytest.approx(5.0)
    torch.testing.assert_close(d.scaled("raw"), v)
    torch.testing.assert_close(d.scaled("unit"), v / 5.0)
    torch.testing.assert_close(d.unit, v / 5.0)
    torch.testing.assert_close(d.scaled("resid_norm"), v / 5.0 * 50.0)
    assert float(d.scaled("resid_norm").norm()) == pytest.approx(50.0)
    with pytest.raises(DirectionError, match="did you mean 'unit'"):
        d.scaled("units")


def test_zero_direction_is_refused() -> None:
    with pytest.raises(DirectionError, match="is zero"):
        _direction(torch.zeros(3))


def _with_batches(diffs: torch.Tensor) -> Any:
    return make_direction(method="m", layer=0, hook_point="resid_pre", position="prefix_mean",
                          diffs=diffs, mean_resid_norm=1.0, batch_size=8)  # fmt: skip


def test_split_half_and_batch_cosines() -> None:
    gen = torch.Generator().manual_seed(0)
    noise = torch.randn(40, 16, generator=gen)
    d = _with_batches(noise)
    assert -1.0 <= d.split_half_cosine <= 1.0 and len(d.batch_cosines) == 5
    signal = torch.ones(16) * 3 + 0.1 * noise
    d2 = _with_batches(signal)
    assert d2.split_half_cosine > 0.99 and min(d2.batch_cosines) > 0.99
    flipped = torch.cat([torch.ones(20, 16), -2 * torch.ones(20, 16)])
    d3 = make_direction(
        method="m",
        layer=0,
        hook_point="resid_pre",
        position="prefix_mean",
        diffs=flipped,
        mean_resid_norm=1.0,
        batch_size=20,
    )
    assert d3.split_half_cosine == pytest.approx(-1.0)
