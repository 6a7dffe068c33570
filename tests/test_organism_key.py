"""The organism's key names what decides its weights' bytes: the kernel family beside the
recipe and the training precision (docs/organism.md, "One key, one set of weights")."""

from __future__ import annotations

import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch

from steering_reliability.atomic import file_sha256
from steering_reliability.studies.organism import build as org_build
from steering_reliability.studies.organism import train as org_train
from steering_reliability.studies.organism.build import Organism, build
from steering_reliability.studies.organism.recipe import Recipe, default_eval_sets

TINY = Recipe(base="tiny", n_harm=8, n_benign=8, benign_pool=32, skip_unhelpful=False,
              n_dev_harm=4, n_dev_benign=4, epochs=1, batch_size=4, answer_tokens=4,
              eval_tokens=4, train_from_layer=0, first_token_weight=1.0)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_sets() -> dict[str, Any]:
    return {k: v[:6] for k, v in default_eval_sets().items()}


def _build(cache: Path, sets: dict[str, Any]) -> Organism:
    from steering_reliability.models import tiny_model

    return build("smollm2-135m-refusal", recipe=TINY, base=tiny_model(), eval_sets=sets,
                 cache_dir=cache)  # fmt: skip


def test_two_kernel_families_give_two_keys_and_one_family_keeps_its_key(
    tmp_path: Path, tiny_sets: dict[str, Any], monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    here = _build(tmp_path, tiny_sets)
    assert here.card["kernel_family"] == org_train.kernel_family(here.card["training"]["precision"])
    assert "Kernel family (part of the key" in (here.path / "card.md").read_text()

    def no_training(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the same kernel family trained again instead of a cache hit")

    with monkeypatch.context() as m:
        m.setattr(org_build, "finetune", no_training)
        same = _build(tmp_path, tiny_sets)
    assert same.path == here.path and same.card == here.card

    monkeypatch.setattr(org_build, "kernel_family", lambda precision, device="cpu": "another CPU")
    there = _build(tmp_path, tiny_sets)
    assert there.path != here.path and there.card["kernel_family"] == "another CPU"
    assert here.path.name.startswith("organism-smollm2-135m-refusal-")
    # on one machine the weights do not change with the label; the key does, as it must
    assert file_sha256(there.path / "model.safetensors") == file_sha256(
        here.path / "model.safetensors"
    )


def test_the_kernel_family_names_its_parts_and_the_thread_count() -> None:
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = org_train.kernel_family("float32")
        torch.set_num_threads(2)
        two = org_train.kernel_family("float32")
    finally:
        torch.set_num_threads(before)
    assert one != two and one.endswith("; 1 thread") and two.endswith("; 2 threads")
    assert f"torch {torch.__version__}" in one and "transformers " in one
    assert f"ATen {torch.backends.cpu.get_cpu_capability()}" in one
    assert "MKL" in one and "bf16 matmul" not in one  # fp32 runs no bf16 kernel
    assert "bf16 matmul" in org_train.kernel_family("bfloat16 autocast")


@pytest.mark.skipif(
    platform.machine() not in ("x86_64", "AMD64")
    or not torch.backends.mkl.is_available()
    or torch.backends.cpu.get_cpu_capability() != "AVX512",
    reason="needs an AVX-512 x86 CPU and torch with MKL, to cap both below what they detect",
)
def test_capping_the_instruction_sets_changes_the_kernel_family() -> None:
    """Capping ATen or MKL at AVX2 changed the weights of one recipe on this machine (the
    evidence in docs/organism.md): the detector must see each cap, as a key part."""
    probe = (
        "from steering_reliability.studies.organism.train import kernel_family; "
        "print(kernel_family('float32'))"
    )

    def family(**env: str) -> str:
        import os

        out = subprocess.run([sys.executable, "-c", probe], env={**os.environ, **env},
                             capture_output=True, text=True, check=True)  # fmt: skip
        return out.stdout.strip().splitlines()[-1]

    plain = family()
    aten = family(ATEN_CPU_CAPABILITY="avx2")
    mkl = family(MKL_ENABLE_INSTRUCTIONS="AVX2")
    assert "ATen AVX512" in plain and "MKL AVX-512" in plain
    assert "ATen AVX2" in aten and "MKL AVX-512" in aten
    assert "ATen AVX512" in mkl and "MKL AVX2" in mkl
    assert len({plain, aten, mkl}) == 3


def test_the_probe_hashes_every_weight_byte(one_thread: None) -> None:
    from steering_reliability.models import tiny_model
    from steering_reliability.studies.organism.probe import state_sha256

    model = tiny_model().hf_model
    before = state_sha256(model)
    assert before == state_sha256(model) and len(before) == 64
    with torch.no_grad():
        weight = model.base_model.layers[1].mlp.down_proj.weight
        weight[0, 0] = torch.nextafter(weight[0, 0], torch.tensor(1e9))  # one ulp, one weight
    assert state_sha256(model) != before
