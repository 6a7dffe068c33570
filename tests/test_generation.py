"""The generation engine on a tiny model: HF-exact greedy decoding, seeds, EOS, steering, scores."""

from __future__ import annotations

import math
import os
from collections import Counter
from typing import Any

import pytest
import torch

import steering_reliability.generation.decode as decode_mod
import steering_reliability.generation.runtime as runtime_mod
from steering_reliability.errors import InputError, InterventionError
from steering_reliability.generation import (
    Generation,
    encode,
    generate,
    prompt_seed,
    teacher_forced_scores,
)
from steering_reliability.interventions import Steering, steer, unit
from steering_reliability.models import format_prompt

pytestmark = pytest.mark.usefixtures("one_thread")

PROMPTS = [
    "hello there",
    "What is the capital of France?",
    "a",
    "Tell me a story about a dragon and a knight, please.",
    "2+2=?",
    "Why is the sky blue?",
]
IDS = [f"p{i}" for i in range(len(PROMPTS))]
NEW = 24
# Where the tiny model runs: STEERING_TEST_DEVICE=cuda runs this module's engine-vs-HF checks on
# a GPU (scripts/gpu_check.sh does); the default is the CPU.
DEVICE = os.environ.get("STEERING_TEST_DEVICE", "cpu")


def _sharp_tiny(device: str = DEVICE) -> Any:
    """A tiny random Llama with sharpened weights (varied greedy text) and a common token as EOS.

    The extra EOS makes rows finish at different steps, so dropping finished rows is exercised.
    It is picked from the CPU model's text, so the model is the same on every device.
    """
    from steering_reliability.models import tiny_model

    def sharp(on: str) -> Any:
        m = tiny_model(n_layers=4, d_model=64, seed=0, device=on)
        with torch.no_grad():
            for p in m.hf_model.parameters():
                if p.ndim == 2:
                    p.mul_(10.0)
        return m

    m = sharp("cpu")
    outs = generate(m, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW)
    seen: Counter[int] = Counter()
    for g in outs:
        for t in set(g.token_ids[2 : NEW - 4]):
            seen[t] += 1
    token = next(t for t, c in seen.most_common() if c < len(PROMPTS))
    if device != "cpu":  # booted where it runs, as models.load does
        m = sharp(device)
    m.hf_model.generation_config.eos_token_id = [m.tokenizer.eos_token_id, token]
    return m


@pytest.fixture(scope="module")
def tiny() -> Any:
    return _sharp_tiny()


def _hf_greedy(model: Any, prompt: str, n: int) -> list[int]:
    tok = model.tokenizer
    x = torch.tensor([encode(tok, format_prompt(tok, prompt))], device=model.hf_model.device)
    with torch.inference_mode():
        out = model.hf_model.generate(
            x,
            attention_mask=torch.ones_like(x),
            max_new_tokens=n,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )
    return out[0, x.shape[1] :].tolist()


def _v(d: int = 64, seed: int = 1) -> torch.Tensor:
    return torch.randn(d, generator=torch.Generator().manual_seed(seed))


def test_greedy_equals_hf_generate_token_for_token(tiny: Any) -> None:
    outs = generate(tiny, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW)
    assert [g.prompt_id for g in outs] == IDS
    for prompt, g in zip(PROMPTS, outs, strict=False):
        hf = _hf_greedy(tiny, prompt, NEW)
        assert list(g.token_ids) == hf[: len(g.token_ids)], prompt
        if g.hit_eos:  # HF pads after EOS; the engine stops the row there
            assert set(hf[len(g.token_ids) :]) <= {tiny.tokenizer.pad_token_id}
        else:
            assert len(g.token_ids) == NEW == len(hf)


def test_rows_stop_at_eos_and_text_excludes_it(tiny: Any) -> None:
    outs = generate(tiny, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW)
    eos = set(tiny.hf_model.generation_config.eos_token_id)
    stopped = [g for g in outs if g.hit_eos]
    assert stopped and len(stopped) < len(outs)  # the fixture's EOS ends some rows early
    for g in outs:
        assert len(g.token_ids) == len(g.logprobs) == len(g.entropies)
        assert not eos & set(g.token_ids[:-1])
        assert g.hit_eos == (g.token_ids[-1] in eos)
        body = g.token_ids[:-1] if g.hit_eos else g.token_ids
        assert g.text == tiny.tokenizer.decode(list(body), skip_special_tokens=True)
        assert all(lp <= 0 for lp in g.logprobs) and all(e >= 0 for e in g.entropies)


def test_batch_composition_and_order_do_not_change_greedy_tokens(tiny: Any) -> None:
    ref = {
        g.prompt_id: g.token_ids
        for g in generate(tiny, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW)
    }
    rev = generate(tiny, PROMPTS[::-1], prompt_ids=IDS[::-1], max_new_tokens=NEW, batch_size=2)
    alone = [
        generate(tiny, [p], prompt_ids=[i], max_new_tokens=NEW)[0]
        for p, i in zip(PROMPTS[:3], IDS[:3], strict=False)
    ]
    for g in [*rev, *alone]:
        assert g.token_ids == ref[g.prompt_id]


def test_sampling_is_reproducible_per_prompt_id_whatever_the_batch(tiny: Any) -> None:
    kw: dict[str, Any] = {"max_new_tokens": NEW, "temperature": 0.9, "top_p": 0.95, "seed": 7}
    ref = {g.prompt_id: g for g in generate(tiny, PROMPTS, prompt_ids=IDS, **kw)}
    again = generate(tiny, PROMPTS[::-1], prompt_ids=IDS[::-1], batch_size=4, **kw)
    one = generate(tiny, PROMPTS[2:3], prompt_ids=IDS[2:3], batch_size=1, **kw)
    for g in [*again, *one]:
        assert g.token_ids == ref[g.prompt_id].token_ids
        assert g.logprobs == pytest.approx(ref[g.prompt_id].logprobs, abs=1e-5)
    other_seed = generate(tiny, PROMPTS, prompt_ids=IDS, **{**kw, "seed": 8})
    assert any(g.token_ids != ref[g.prompt_id].token_ids for g in other_seed)
    greedy = generate(tiny, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW)
    assert any(g.token_ids != ref[g.prompt_id].token_ids for g in greedy)


def test_prompt_seed_is_stable_and_distinct() -> None:
    assert prompt_seed(0, "p1") == prompt_seed(0, "p1")
    assert len({prompt_seed(0, "p1"), prompt_seed(1, "p1"), prompt_seed(0, "p2")}) == 3
    assert 0 <= prompt_seed(123, "x") < 2**63


@pytest.mark.parametrize("kind", ["add", "ablate"])
def test_alpha_zero_reproduces_the_baseline_exactly(tiny: Any, kind: str) -> None:
    base = generate(tiny, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW)
    zero = generate(
        tiny, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW, steerings=[Steering(kind, 2, _v(), 0.0)]
    )
    for a, b in zip(base, zero, strict=False):
        assert (a.token_ids, a.logprobs, a.entropies) == (b.token_ids, b.logprobs, b.entropies)
        assert b.proj_before == b.proj_after


def test_shared_prefix_kv_gives_the_same_greedy_tokens(
    tiny: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    shared = generate(tiny, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW)
    monkeypatch.setattr(runtime_mod, "MIN_SHARED_PREFIX", 10**9)
    unshared = generate(tiny, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW)
    assert [g.token_ids for g in shared] == [g.token_ids for g in unshared]
    for a, b in zip(shared, unshared, strict=False):
        assert a.logprobs == pytest.approx(b.logprobs, abs=1e-4)


def test_steered_generation_equals_hf_generate_under_the_same_hooks(tiny: Any) -> None:
    s = [
        Steering("add", 1, _v(), 3.0),
        Steering("ablate", 3, _v(seed=2), 1.0, hook_point="resid_post"),
    ]
    outs = generate(tiny, PROMPTS[:3], prompt_ids=IDS[:3], max_new_tokens=NEW, steerings=s)
    base = generate(tiny, PROMPTS[:3], prompt_ids=IDS[:3], max_new_tokens=NEW)
    assert any(a.token_ids != b.token_ids for a, b in zip(outs, base, strict=False))
    with steer(tiny, s):
        for prompt, g in zip(PROMPTS[:3], outs, strict=False):
            assert list(g.token_ids) == _hf_greedy(tiny, prompt, NEW)[: len(g.token_ids)]


def test_apply_to_generated_leaves_the_first_token_alone(tiny: Any) -> None:
    base = generate(tiny, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW)
    for apply_to in ("generated", "prompt"):
        s = [Steering("add", 1, _v(), 6.0, apply_to=apply_to)]
        outs = generate(tiny, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW, steerings=s)
        first_same = [a.logprobs[0] == b.logprobs[0] for a, b in zip(base, outs, strict=False)]
        assert all(first_same) == (apply_to == "generated"), apply_to
        assert any(a.token_ids != b.token_ids for a, b in zip(base, outs, strict=False)), apply_to


def test_projection_probe_matches_the_bridge_cache(tiny: Any) -> None:
    v = _v()
    outs, abl = (
        generate(tiny, PROMPTS[:3], prompt_ids=IDS[:3], max_new_tokens=4, steerings=[steering])
        for steering in (Steering("add", 2, v, 2.5), Steering("ablate", 2, v, 1.0))
    )
    assert generate(tiny, PROMPTS[:1], prompt_ids=IDS[:1], max_new_tokens=2)[0].proj_before is None
    tok = tiny.tokenizer
    for prompt, g, a in zip(PROMPTS, outs, abl, strict=False):
        ids = torch.tensor([encode(tok, format_prompt(tok, prompt))], device=tiny.hf_model.device)
        with torch.inference_mode():
            _, cache = tiny.bridge.run_with_cache(ids)
        expected = float((cache["blocks.2.hook_in"][0].cpu() @ unit(v)).mean())
        assert g.proj_before == pytest.approx(expected, abs=1e-4)
        assert g.proj_after == pytest.approx(expected + 2.5 * float(v.norm()), abs=1e-4)
        assert a.proj_before == pytest.approx(expected, abs=1e-4) and abs(a.proj_after) < 1e-4  # type: ignore[arg-type]


def test_first_token_mass(tiny: Any) -> None:
    outs = generate(
        tiny, PROMPTS, prompt_ids=IDS, max_new_tokens=3, track_token_ids=range(len(tiny.tokenizer))
    )
    assert all(g.first_token_mass == pytest.approx(1.0, abs=1e-5) for g in outs)
    for g in generate(tiny, PROMPTS, prompt_ids=IDS, max_new_tokens=3):
        assert g.first_token_mass is None
        mine = generate(
            tiny,
            [PROMPTS[IDS.index(g.prompt_id)]],
            prompt_ids=[g.prompt_id],
            max_new_tokens=1,
            track_token_ids=[g.token_ids[0]],
        )[0]
        assert mine.first_token_mass == pytest.approx(math.exp(g.logprobs[0]), rel=1e-4)


@pytest.mark.parametrize("apply_to", ["all", "generated", "prompt"])
def test_teacher_forcing_agrees_with_generation(tiny: Any, apply_to: str) -> None:
    s = [Steering("add", 1, _v(), 3.0, apply_to=apply_to)]
    steered = generate(tiny, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW, steerings=s)
    scores = teacher_forced_scores(
        tiny, PROMPTS, [g.token_ids for g in steered], prompt_ids=IDS, steerings=s, batch_size=4
    )
    for g, sc in zip(
        steered, scores, strict=False
    ):  # steered CE of its own output = -mean logprob in generation
        assert sc.ce == pytest.approx(-sum(g.logprobs) / len(g.logprobs), abs=1e-4)
        assert sc.kl_to_baseline > 0


def test_teacher_forcing_at_alpha_zero_has_zero_kl(tiny: Any) -> None:
    base = generate(tiny, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW)
    comps = [g.token_ids for g in base]
    comps[0] = ()
    scores = teacher_forced_scores(
        tiny, PROMPTS, comps, prompt_ids=IDS, steerings=[Steering("add", 1, _v(), 0.0)]
    )
    assert math.isnan(scores[0].kl_to_baseline) and math.isnan(scores[0].ce)
    for g, sc in zip(base[1:], scores[1:], strict=False):
        assert sc.kl_to_baseline == pytest.approx(0.0, abs=1e-9)
        assert sc.ce == pytest.approx(-sum(g.logprobs) / len(g.logprobs), abs=1e-4)


def test_bad_arguments_are_refused(tiny: Any) -> None:
    with pytest.raises(InputError, match="differ in length"):
        generate(tiny, PROMPTS, prompt_ids=IDS[:2], max_new_tokens=2)
    for kw in (
        {"max_new_tokens": 0},
        {"max_new_tokens": 2, "temperature": -1.0},
        {"max_new_tokens": 2, "top_p": 0.0},
        {"max_new_tokens": 2, "batch_size": 0},
    ):
        with pytest.raises(InputError):
            generate(tiny, PROMPTS[:1], prompt_ids=IDS[:1], **kw)
    with pytest.raises(InterventionError, match="4 layers"):
        generate(
            tiny,
            PROMPTS[:1],
            prompt_ids=IDS[:1],
            max_new_tokens=2,
            steerings=[Steering("add", 9, _v(), 1.0)],
        )
    assert generate(tiny, [], prompt_ids=[], max_new_tokens=2) == []


def test_progress_bar_and_result_types(tiny: Any, capsys: pytest.CaptureFixture[str]) -> None:
    outs = generate(tiny, PROMPTS, prompt_ids=IDS, max_new_tokens=3, progress=True)
    assert "generate" in capsys.readouterr().err
    assert all(isinstance(g, Generation) and isinstance(g.token_ids, tuple) for g in outs)
    assert all(isinstance(t, int) for g in outs for t in g.token_ids)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_runs_on_the_model_device() -> None:
    cpu = generate(_sharp_tiny("cpu"), PROMPTS, prompt_ids=IDS, max_new_tokens=8)
    gpu_model = _sharp_tiny("cuda")
    gpu = generate(
        gpu_model,
        PROMPTS,
        prompt_ids=IDS,
        max_new_tokens=8,
        steerings=[Steering("add", 1, _v(), 0.0)],
        temperature=0.0,
    )
    assert [g.token_ids for g in gpu] == [g.token_ids for g in cpu]
    sampled = generate(gpu_model, PROMPTS, prompt_ids=IDS, max_new_tokens=8, temperature=1.0)
    assert all(len(g.token_ids) >= 1 for g in sampled)


def _count_runs(layer: Any, monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """Count a decoder layer's forwards over batches of prompts (the shared template prefix, one
    row, always runs); wrapping forward, as a hook would change the layer."""
    runs = [0]
    inner = layer.forward

    def counted(hidden: torch.Tensor, *args: Any, **kwargs: Any) -> Any:
        runs[0] += int(hidden.shape[0] > 1)
        return inner(hidden, *args, **kwargs)

    monkeypatch.setattr(layer, "forward", counted)
    return runs


def test_passes_start_at_the_first_hooked_layer_with_the_same_numbers(
    tiny: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Teacher forcing and last-token reads under a steering at layer 2 reuse layers 0-1 from an
    earlier pass on the same inputs: layer 0 does not run again, and every number equals a pass
    through all layers (no reuse at all). A hook below the steered layer, other completions or
    another steering are never served from the kept residuals."""
    from steering_reliability.generation import next_token_logits

    base = generate(tiny, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW)
    comps = [g.token_ids for g in base]
    s = [Steering("ablate", 2, _v(), 1.0)]
    layer0 = tiny.hf_model.model.layers[0]
    runtime_mod._LOWER.clear()
    first = teacher_forced_scores(tiny, PROMPTS, comps, prompt_ids=IDS, steerings=s)
    with steer(tiny, [Steering("add", 2, _v(seed=3), 4.0)]):
        read = next_token_logits(tiny, PROMPTS)
    runs = _count_runs(layer0, monkeypatch)
    layers = tiny.hf_model.model.layers
    layer2, where = layers[2], []
    inner2 = layer2.forward

    def placed(*args: Any, **kwargs: Any) -> Any:  # per-layer settings indexed by position
        where.append((len(layers), list(layers).index(layer2)))  # (Gemma) must still line up
        return inner2(*args, **kwargs)

    monkeypatch.setattr(layer2, "forward", placed)
    assert teacher_forced_scores(tiny, PROMPTS, comps, prompt_ids=IDS, steerings=s) == first
    assert where and set(where) == {(4, 2)}
    with steer(tiny, [Steering("add", 2, _v(seed=3), 4.0)]):
        assert torch.equal(next_token_logits(tiny, PROMPTS), read)
    assert runs[0] == 0  # served from the kept residuals
    shorter = [c[:-1] for c in comps]  # other inputs: computed, not served
    teacher_forced_scores(tiny, PROMPTS, shorter, prompt_ids=IDS, steerings=s)
    assert runs[0] > 0
    with steer(tiny, [Steering("add", 0, _v(seed=5), 2.0)]):  # a hook below layer 2
        inside = teacher_forced_scores(tiny, PROMPTS, comps, prompt_ids=IDS, steerings=s)
        lower = next_token_logits(tiny, PROMPTS)
    assert inside != first

    monkeypatch.setattr(runtime_mod, "LOWER_LAYERS_BUDGET_BYTES", 0)  # nothing kept: all layers
    runtime_mod._LOWER.clear()
    assert teacher_forced_scores(tiny, PROMPTS, comps, prompt_ids=IDS, steerings=s) == first
    with steer(tiny, [Steering("add", 2, _v(seed=3), 4.0)]):
        assert torch.equal(next_token_logits(tiny, PROMPTS), read)
    with steer(tiny, [Steering("add", 0, _v(seed=5), 2.0)]):
        assert teacher_forced_scores(tiny, PROMPTS, comps, prompt_ids=IDS, steerings=s) == inside
        assert torch.equal(next_token_logits(tiny, PROMPTS), lower)
    assert not runtime_mod._LOWER


def test_the_first_hooked_layer(tiny: Any) -> None:
    run = runtime_mod.Runner(tiny)
    assert run.first_hooked_layer() == tiny.info.n_layers
    with steer(tiny, [Steering("add", 2, _v(), 1.0, hook_point="resid_post")]):
        assert run.first_hooked_layer() == 2
        with steer(tiny, [Steering("add", 1, _v(), 1.0)]):
            assert run.first_hooked_layer() == 1
    handle = tiny.hf_model.model.embed_tokens.register_forward_hook(lambda *a: None)
    try:
        assert run.first_hooked_layer() == 0  # anything before the layers: nothing reused
    finally:
        handle.remove()


def test_a_small_kv_budget_shrinks_batches_not_results(
    tiny: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    ref = generate(tiny, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW)
    run = runtime_mod.Runner(tiny)
    assert decode_mod._rows_within_budget(run, 64, 100) == 64
    monkeypatch.setattr(decode_mod, "KV_BUDGET_BYTES", 1)
    assert decode_mod._rows_within_budget(run, 64, 100) == 1
    small = generate(tiny, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW)
    assert [g.token_ids for g in small] == [g.token_ids for g in ref]


def test_kept_residuals_belong_to_one_model_object_and_its_weights() -> None:
    """An in-place weight edit is never served from residuals kept before it, and a freed
    model's kept residuals go (a new model may get its id; an orthogonalised export shares
    its base's weights hash)."""
    import gc

    from steering_reliability.generation import next_token_logits
    from steering_reliability.models import tiny_model

    m = tiny_model(n_layers=4, d_model=64, seed=0)
    token = runtime_mod._model_token(m.hf_model)
    before = next_token_logits(m, PROMPTS)
    assert any(k[0][0] == token for k in runtime_mod._LOWER)
    with torch.no_grad():
        m.hf_model.model.layers[0].mlp.down_proj.weight.mul_(3.0)
    assert not torch.equal(next_token_logits(m, PROMPTS), before)
    del m
    gc.collect()
    assert not any(k[0][0] == token for k in runtime_mod._LOWER)


def test_a_hook_that_edits_its_input_in_place_cannot_reach_the_kept_residual(tiny: Any) -> None:
    """The kept residual is handed over as a copy, so a hook at the first hooked layer that
    edits its input in place changes this pass only, not the passes served after it."""
    from steering_reliability.generation import next_token_logits

    def bump(module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        (kwargs.get("hidden_states") if not args else args[0]).add_(0.5)

    runtime_mod._LOWER.clear()
    handle = tiny.hf_model.model.layers[2].register_forward_pre_hook(bump, with_kwargs=True)
    try:
        assert runtime_mod.Runner(tiny).first_hooked_layer() == 2
        reads = [next_token_logits(tiny, PROMPTS) for _ in range(3)]  # computed, then served
    finally:
        handle.remove()
    assert runtime_mod._LOWER
    assert torch.equal(reads[1], reads[0]) and torch.equal(reads[2], reads[0])
