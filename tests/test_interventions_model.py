"""Hooks on a model: they fire at the named bridge sites, obey apply_to, and always come off.

The tiny random Llama runs in seconds; the embedded-model checks are marked slow.
"""

from __future__ import annotations

from typing import Any

import pytest
import torch

from steering_reliability.errors import DirectionError, InterventionError
from steering_reliability.interventions import (
    Steering,
    forward_phase,
    full_ablation,
    hook_name,
    orthogonalize_weights,
    steer,
    unit,
)
from steering_reliability.models.sites import decoder_layers

pytestmark = pytest.mark.usefixtures("one_thread")


@pytest.fixture(scope="module")
def tiny() -> Any:
    from steering_reliability.models import tiny_model

    return tiny_model(n_layers=4, d_model=64, seed=0)


@pytest.fixture(scope="module")
def ids() -> torch.Tensor:
    return torch.tensor([[5, 17, 33, 80, 120, 9, 44], [7, 7, 90, 12, 3, 150, 61]])


def _vec(d: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(d, generator=torch.Generator().manual_seed(seed))


def _hook_count(model: Any) -> int:
    trees = [model.hf_model, model.bridge.original_model]
    return sum(
        len(m._forward_hooks) + len(m._forward_pre_hooks) for t in trees for m in t.modules()
    )


def _cache(model: Any, ids: torch.Tensor) -> dict[str, torch.Tensor]:
    with torch.inference_mode():
        _, cache = model.bridge.run_with_cache(ids)
    return {k: v.clone() for k, v in cache.items()}


@pytest.mark.parametrize("layer", [0, 2, 3])
def test_resid_pre_addition_lands_on_blocks_hook_in(
    tiny: Any, ids: torch.Tensor, layer: int
) -> None:
    v = _vec(64)
    base = _cache(tiny, ids)
    with steer(tiny, [Steering("add", layer, v, 1.5)]):
        moved = _cache(tiny, ids)
    site = hook_name(layer, "resid_pre")
    torch.testing.assert_close(moved[site], base[site] + 1.5 * v, rtol=0, atol=1e-5)
    if layer > 0:  # nothing upstream of the site moves
        torch.testing.assert_close(
            moved[hook_name(layer - 1, "resid_pre")], base[hook_name(layer - 1, "resid_pre")]
        )


@pytest.mark.parametrize("layer", [0, 2])
def test_resid_post_addition_lands_after_blocks_hook_out(
    tiny: Any, ids: torch.Tensor, layer: int
) -> None:
    v = _vec(64)
    with steer(tiny, [Steering("add", layer, v, -2.0, hook_point="resid_post")]):
        moved = _cache(tiny, ids)
    # hook_out is read inside the block; the steering edits the block's output after it.
    torch.testing.assert_close(
        moved[f"blocks.{layer + 1}.hook_in"],
        moved[f"blocks.{layer}.hook_out"] - 2.0 * v,
        rtol=0,
        atol=1e-5,
    )


def test_the_hf_model_and_the_bridge_are_steered_alike(tiny: Any, ids: torch.Tensor) -> None:
    s = [
        Steering("ablate", 1, _vec(64), 1.0),
        Steering("add", 2, _vec(64, 2), 3.0, hook_point="resid_post"),
    ]
    with torch.inference_mode():
        base = tiny.hf_model(ids).logits
        with steer(tiny, s):
            bridged = tiny.bridge(ids)
            hf = tiny.hf_model(ids).logits
    assert float((hf - base).abs().max()) > 1e-2  # the steering did something
    torch.testing.assert_close(hf, bridged, rtol=0, atol=1e-4)


def test_the_bridge_runs_on_its_own_tree_over_the_same_weights(tiny: Any) -> None:
    hf, tree = tiny.hf_model, tiny.bridge.original_model
    assert tree is not hf
    assert not any("_original_component" in m._modules for m in hf.modules())  # never wrapped
    assert any("_original_component" in m._modules for m in tree.modules())
    assert type(decoder_layers(hf)[0]).__name__ == "LlamaDecoderLayer"
    assert hf.config._attn_implementation == "sdpa"
    assert hf.config is not tree.config
    shared = {id(p) for p in tree.parameters()}
    assert all(id(p) in shared for p in hf.parameters())


def test_booting_a_bridge_leaves_hf_generate_intact() -> None:
    """The bridge boot must not change what HF generate does on the model it was booted from."""
    from steering_reliability.models import boot_bridge, tiny_model
    from steering_reliability.models.tiny import tiny_tokenizer

    hf = tiny_model(seed=3).hf_model
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    kw = {"max_new_tokens": 12, "do_sample": False, "pad_token_id": 0}
    with torch.inference_mode():
        before = hf.generate(ids, **kw)
        boot_bridge("tiny-llama", hf, tiny_tokenizer())
        after = hf.generate(ids, **kw)
        uncached = hf.generate(ids, use_cache=False, **kw)
    assert before.tolist() == after.tolist() == uncached.tolist()


def test_hooks_are_removed_after_an_exception(tiny: Any, ids: torch.Tensor) -> None:
    with torch.inference_mode():
        base = tiny.bridge(ids)  # a first forward may wire the bridge's own permanent hooks
    before = _hook_count(tiny)
    with (
        pytest.raises(RuntimeError, match="boom"),
        steer(tiny, [Steering("add", 1, _vec(64), 5.0)]),
    ):
        assert _hook_count(tiny) > before
        raise RuntimeError("boom")
    assert _hook_count(tiny) == before
    with pytest.raises(RuntimeError, match="boom"), full_ablation(tiny, _vec(64)):
        raise RuntimeError("boom")
    assert _hook_count(tiny) == before
    with torch.inference_mode():
        torch.testing.assert_close(tiny.bridge(ids), base, rtol=0, atol=0)


def test_probe_sees_the_projection_before_and_after(tiny: Any, ids: torch.Tensor) -> None:
    v = _vec(64)
    base = _cache(tiny, ids)["blocks.2.hook_in"]
    with torch.inference_mode(), steer(tiny, [Steering("ablate", 2, v, 1.0)], probe=True) as probe:
        tiny.bridge(ids)
    assert probe is not None and len(probe.records) == 1 and probe.site == "blocks.2.hook_in"
    before, after = probe.row_means()
    torch.testing.assert_close(before, (base @ unit(v)).mean(-1), rtol=0, atol=1e-5)
    assert float(after.abs().max()) < 1e-5
    mask = torch.zeros_like(ids, dtype=torch.bool)
    mask[:, -1] = True
    torch.testing.assert_close(probe.row_means(mask)[0], base[:, -1] @ unit(v), rtol=0, atol=1e-5)


def test_apply_to_follows_the_declared_phase(tiny: Any, ids: torch.Tensor) -> None:
    v = _vec(64)
    with torch.inference_mode():
        base = tiny.bridge(ids)
        for apply_to, phase, changed in [
            ("prompt", "prompt", True),
            ("prompt", "generated", False),
            ("generated", "prompt", False),
            ("generated", "generated", True),
            ("all", "prompt", True),
            ("all", "generated", True),
        ]:
            with steer(tiny, [Steering("add", 1, v, 4.0, apply_to=apply_to)]), forward_phase(phase):
                out = tiny.bridge(ids)
            assert bool((out - base).abs().max() > 1e-3) == changed, (apply_to, phase)


def test_mixed_phase_steers_only_the_marked_positions(tiny: Any, ids: torch.Tensor) -> None:
    v = _vec(64)
    gen = torch.zeros_like(ids, dtype=torch.bool)
    gen[:, 4:] = True
    base = _cache(tiny, ids)["blocks.1.hook_in"]
    for apply_to, where in [("generated", gen), ("prompt", ~gen), ("all", torch.ones_like(gen))]:
        with (
            steer(tiny, [Steering("add", 1, v, 2.0, apply_to=apply_to)]),
            forward_phase("mixed", gen),
        ):
            moved = _cache(tiny, ids)["blocks.1.hook_in"]
        torch.testing.assert_close(moved, base + 2.0 * v * where[..., None], rtol=0, atol=1e-5)


def test_apply_to_is_inferred_for_hf_generate_style_forwards(tiny: Any) -> None:
    """No declared phase: a prefill is "prompt"; one token on top of a KV cache is "generated"."""
    from transformers import DynamicCache

    raw = tiny.hf_model
    prompt, nxt = torch.tensor([[5, 6, 7, 8]]), torch.tensor([[9]])

    def run() -> tuple[torch.Tensor, torch.Tensor]:
        with torch.inference_mode():
            cache = DynamicCache(config=raw.config)
            a = raw(prompt, past_key_values=cache, use_cache=True).logits
            b = raw(nxt, past_key_values=cache, use_cache=True).logits
        return a, b

    base = run()
    for apply_to, hook_point in [
        ("generated", "resid_pre"),
        ("generated", "resid_post"),
        ("prompt", "resid_pre"),
        ("prompt", "resid_post"),
    ]:
        with steer(
            tiny, [Steering("add", 2, _vec(64), 4.0, hook_point=hook_point, apply_to=apply_to)]
        ):
            pre, dec = run()
        prefill_moved = bool((pre - base[0]).abs().max() > 1e-3)
        assert prefill_moved == (apply_to == "prompt"), (apply_to, hook_point)
        if apply_to == "generated":
            assert bool((dec - base[1]).abs().max() > 1e-3)


def test_layer_outside_the_model_names_the_model(tiny: Any) -> None:
    with pytest.raises(InterventionError, match=r"'tiny-llama' \(4 layers\)") as err:
        steer(tiny, [Steering("add", 4, _vec(64), 1.0)]).__enter__()
    assert "0 <= layer < 4" in str(err.value)
    with pytest.raises(DirectionError, match="does not match the model"):
        steer(tiny, [Steering("add", 0, _vec(32), 1.0)]).__enter__()


def test_full_ablation_equals_orthogonalized_weights(tiny: Any, ids: torch.Tensor) -> None:
    v = _vec(64, seed=3)
    ortho = orthogonalize_weights(tiny, v)
    with torch.inference_mode():
        with full_ablation(tiny, v):
            hooked = tiny.bridge(ids)
            _, cache = tiny.bridge.run_with_cache(ids)
        baked = ortho.bridge(ids)
        unhooked = tiny.bridge(ids)
    torch.testing.assert_close(baked, hooked, rtol=0, atol=1e-4)
    assert float((unhooked - hooked).abs().max()) > 1e-2  # the ablation did something
    for layer in range(4):  # nothing along v̂ enters any block
        assert float((cache[hook_name(layer, "resid_pre")] @ unit(v)).abs().max()) < 1e-4
    assert ortho.info.name == "tiny-llama+orthogonalized"
    assert ortho.info.weights_sha256 != tiny.info.weights_sha256
    assert ortho.hf_model.lm_head is not tiny.hf_model.lm_head


@pytest.mark.slow
def test_full_ablation_equals_orthogonalized_weights_on_the_embedded_model(smollm2: Any) -> None:
    from steering_reliability.models import format_prompt

    model = smollm2
    v = torch.randn(model.info.d_model, generator=torch.Generator().manual_seed(0))
    text = format_prompt(model.tokenizer, "Name three rivers in Europe.")
    ids = torch.tensor([model.tokenizer(text, add_special_tokens=False).input_ids])
    ortho = orthogonalize_weights(model, v)
    with torch.inference_mode():
        with full_ablation(model, v):
            hooked = model.hf_model(ids).logits
        baked = ortho.hf_model(ids).logits
    torch.testing.assert_close(baked, hooked, rtol=1e-5, atol=1e-4)  # logits reach ~30


@pytest.mark.parametrize("kwarg", ["past_key_values", "cache", "some_future_name"])
def test_a_decode_step_is_recognised_whatever_the_cache_argument_is_called(kwarg: str) -> None:
    """transformers renamed the layer's cache argument in 5.24; the phase must not depend on it."""
    from steering_reliability.interventions.steer import _phase

    class FakeCache:
        def __init__(self, n: int) -> None:
            self.n = n

        def get_seq_length(self, layer: int = 0) -> int:
            return self.n

        def update(self, *a: Any) -> None:  # pragma: no cover - never called here
            raise AssertionError

    one = torch.zeros(2, 1, 8)
    assert _phase(one, {kwarg: FakeCache(5)}, 0, False) == "generated"
    assert _phase(one, {kwarg: FakeCache(0)}, 0, False) == "prompt"  # first token of a prefill
    assert _phase(one, {kwarg: FakeCache(1)}, 0, True) == "prompt"  # post-hook: just cached it
    assert _phase(one, {kwarg: FakeCache(2)}, 0, True) == "generated"
    assert _phase(one, {kwarg: None, "position_ids": torch.tensor([[4]])}, 0, False) == "prompt"
    assert _phase(torch.zeros(2, 3, 8), {kwarg: FakeCache(5)}, 0, False) == "prompt"
