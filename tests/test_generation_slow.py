"""The engine on the embedded model: HF-exact greedy tokens, steered and unsteered (slow: ~30 s)."""

from __future__ import annotations

from typing import Any

import pytest
import torch

from steering_reliability.generation import encode, generate
from steering_reliability.interventions import Steering, steer
from steering_reliability.models import format_prompt

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("one_thread")]

PROMPTS = ["Name three rivers in Europe.", "Write a haiku about autumn.", "What is 12 times 7?"]
IDS = ["s0", "s1", "s2"]
NEW = 16


@pytest.fixture
def model(smollm2: Any) -> Any:
    return smollm2


def _hf_greedy(model: Any, prompts: list[str], n: int) -> list[list[int]]:
    """HF generate on the loaded model, batched and left-padded like a user would run it."""
    tok = model.tokenizer
    seqs = [encode(tok, format_prompt(tok, p)) for p in prompts]
    width = max(len(s) for s in seqs)
    ids = torch.tensor([[tok.pad_token_id] * (width - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs])
    with torch.inference_mode():
        out = model.hf_model.generate(
            ids,
            attention_mask=mask,
            max_new_tokens=n,
            do_sample=False,
            pad_token_id=tok.pad_token_id,
        )
    return out[:, width:].tolist()


def _agree(engine: list[Any], hf: list[list[int]]) -> None:
    for g, h in zip(engine, hf, strict=False):
        assert list(g.token_ids) == h[: len(g.token_ids)], g.prompt_id


def test_greedy_equals_hf_generate_on_the_embedded_model(model: Any) -> None:
    outs = generate(model, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW)
    _agree(outs, _hf_greedy(model, PROMPTS, NEW))
    assert all(g.text.strip() for g in outs)


def test_steered_greedy_equals_hf_generate_under_the_same_hooks(model: Any) -> None:
    v = torch.randn(model.info.d_model, generator=torch.Generator().manual_seed(0))
    s = [Steering("add", 12, 8.0 * v / v.norm(), 1.0)]
    outs = generate(model, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW, steerings=s)
    with steer(model, s):
        hf = _hf_greedy(model, PROMPTS, NEW)
    _agree(outs, hf)
    zero = generate(
        model, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW, steerings=[Steering("add", 12, v, 0.0)]
    )
    base = generate(model, PROMPTS, prompt_ids=IDS, max_new_tokens=NEW)
    assert [g.token_ids for g in zero] == [g.token_ids for g in base]
