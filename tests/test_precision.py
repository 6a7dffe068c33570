"""model.dtype: resolution per machine, run identity, and bf16 on the tiny model."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
import torch

from steering_reliability.config import Config, config_hash, load_config, resolved_for_machine
from steering_reliability.errors import ConfigError
from steering_reliability.models import precision
from steering_reliability.models.precision import resolve_device


@pytest.mark.parametrize(
    ("requested", "native", "prefers", "expected"),
    [
        ("auto", True, True, "bfloat16"),
        ("auto", True, False, "float32"),  # the hardware has it, the agreement report says no
        ("auto", False, True, "float32"),  # no native bf16: never chosen automatically
        ("float32", True, True, "float32"),
        ("bfloat16", False, False, "bfloat16"),  # explicit: works anywhere, if slowly
    ],
)
def test_dtype_resolution(
    requested: str, native: bool, prefers: bool, expected: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(precision, "AUTO_PREFERS_BF16", prefers)
    assert precision.resolve_dtype(requested, "cpu", native=native) == expected


def test_native_bf16_detection_on_cpu_and_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    cpu = torch.cpu
    for flag in (True, False):
        monkeypatch.setattr(cpu, "_is_avx512_bf16_supported", lambda f=flag: f, raising=False)
        monkeypatch.setattr(cpu, "_is_amx_tile_supported", lambda: False, raising=False)
        monkeypatch.setattr(precision, "_cpu_flags", lambda: set())
        assert precision.native_bf16("cpu") is flag
    monkeypatch.setattr(cpu, "_is_avx512_bf16_supported", lambda: False, raising=False)
    monkeypatch.setattr(precision, "_cpu_flags", lambda: {"avx2", "amx_bf16"})
    assert precision.native_bf16("cpu") is True
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: True)
    assert precision.native_bf16("cuda") is True
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: False)
    assert precision.native_bf16("cuda") is False


def test_the_resolved_dtype_joins_the_run_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = Config()
    assert cfg.model.dtype == "auto"
    monkeypatch.setattr(precision, "AUTO_PREFERS_BF16", True)
    monkeypatch.setattr(precision, "native_bf16", lambda device="cpu": True)
    bf16 = resolved_for_machine(cfg)
    monkeypatch.setattr(precision, "native_bf16", lambda device="cpu": False)
    fp32 = resolved_for_machine(cfg)
    assert (bf16.model.dtype, fp32.model.dtype) == ("bfloat16", "float32")
    assert config_hash(bf16) != config_hash(fp32)
    model = dataclasses.replace(cfg.model, device="cpu", dtype="float32")
    explicit = dataclasses.replace(cfg, model=model)
    assert resolved_for_machine(explicit) is explicit


def test_the_resolved_device_joins_the_run_identity(monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = Config()
    assert cfg.model.device == "auto"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    cpu = resolved_for_machine(cfg)
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(precision, "native_bf16", lambda device="cpu": True)
    cuda = resolved_for_machine(cfg)
    assert (cpu.model.device, cuda.model.device) == ("cpu", "cuda")
    # bf16 on the GPU follows the same measured rule as on the CPU (AUTO_PREFERS_BF16)
    assert cuda.model.dtype == ("bfloat16" if precision.AUTO_PREFERS_BF16 else "float32")
    assert config_hash(cpu) != config_hash(cuda)
    # an explicit device is kept, and a bad one is refused with the allowed values
    assert resolve_device("cpu") == "cpu"
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ConfigError, match="no CUDA device"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="cuda"):
        load_config(None, {"model.device": "tpu"})


def test_an_unknown_dtype_is_refused_with_the_field(tmp_path: Any) -> None:
    from steering_reliability.config import load_config
    from steering_reliability.errors import ConfigError

    path = tmp_path / "c.yaml"
    path.write_text("model:\n  dtype: bf16\n")
    with pytest.raises(ConfigError, match=r"model\.dtype") as err:
        load_config(path)
    assert "bfloat16" in str(err.value)


def _bf16_tiny() -> Any:
    from steering_reliability.models import tiny_model

    m = tiny_model(n_layers=4, d_model=64, seed=0)
    m.hf_model.to(torch.bfloat16)
    return dataclasses.replace(m, info=dataclasses.replace(m.info, dtype="bfloat16"))


def test_bf16_engine_equals_hf_generate_on_the_same_model_and_dtype() -> None:
    from steering_reliability.generation import generate
    from steering_reliability.models import format_prompt

    m = _bf16_tiny()
    prompts = ["abc def", "hello there, friend", "xyz"]
    gens = generate(m, prompts, prompt_ids=["a", "b", "c"], max_new_tokens=8, batch_size=1)
    for p, g in zip(prompts, gens, strict=True):
        ids = m.tokenizer(format_prompt(m.tokenizer, p), return_tensors="pt").input_ids
        with torch.inference_mode():
            out = m.hf_model.generate(
                ids, attention_mask=torch.ones_like(ids), max_new_tokens=8, do_sample=False,
                pad_token_id=m.tokenizer.pad_token_id, eos_token_id=None, min_new_tokens=8,
            )  # fmt: skip
        assert list(g.token_ids) == out[0, ids.shape[1] :].tolist()[: len(g.token_ids)]
        assert all(isinstance(x, float) for x in g.logprobs)


def test_bf16_smoke_directions_steering_and_teacher_forcing() -> None:
    """Every stage runs in bf16 and returns finite fp32 numbers."""
    from steering_reliability.directions.activations import residuals
    from steering_reliability.generation import generate, teacher_forced_scores
    from steering_reliability.interventions import Steering

    m = _bf16_tiny()
    r = residuals(m, ["abc def", "hello"], layers=[1, 2])
    assert r.dtype == torch.float32 and torch.isfinite(r).all()
    v = r[0, 0] - r[1, 0]
    s = [Steering("add", 1, v, 2.0)]
    gens = generate(m, ["abc"], prompt_ids=["a"], max_new_tokens=4, steerings=s)
    base = generate(m, ["abc"], prompt_ids=["a"], max_new_tokens=4)
    tf = teacher_forced_scores(m, ["abc"], [base[0].token_ids], prompt_ids=["a"], steerings=s)
    assert gens[0].token_ids and all(x == x for x in gens[0].logprobs)
    assert tf[0].kl_to_baseline is not None and tf[0].kl_to_baseline >= 0


def test_cache_keys_change_only_off_float32_cpu() -> None:
    """variant_key: empty for float32 on the CPU (every earlier cache key stays valid); the
    dtype otherwise, so a bf16 run never reads an fp32 run's cached generations or scans."""
    from steering_reliability.models import tiny_model
    from steering_reliability.models.sites import variant_key

    m = tiny_model()
    assert variant_key(m) == {}
    m.hf_model.to(torch.bfloat16)
    assert variant_key(m) == {"dtype": "bfloat16"}
