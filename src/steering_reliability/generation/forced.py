"""Teacher forcing: what a steering costs on fixed completions (KL to unsteered, CE)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torch import Tensor

from steering_reliability.errors import InputError
from steering_reliability.generation.runtime import (
    KVCache,
    Prefix,
    Runner,
    check_generation_args,
    prefill_mask,
    run_prefix,
    shared_prefix,
)
from steering_reliability.interventions.steer import Steering, forward_phase, steer
from steering_reliability.metrics.divergence import cross_entropy, kl_divergence
from steering_reliability.models import LoadedModel, format_prompt
from steering_reliability.models import encode_prompt as encode
from steering_reliability.timing import timed


@dataclass(frozen=True)
class TeacherForced:
    """Cost of a steering on a fixed completion: mean KL(unsteered || steered) and steered CE (nats)."""

    kl_to_baseline: float
    ce: float


def _forced_hidden(
    run: Runner,
    prompt_seqs: list[list[int]],
    completions: list[list[int]],
    p: int,
    rows: list[int],
    prefix: Prefix,
) -> list[Tensor]:
    """Hidden states [len(completion), d] predicting each completion token, per row of one batch."""
    dev = run.device
    full = [prompt_seqs[i][p:] + completions[i] for i in rows]
    n, width = len(rows), max(len(f) for f in full)
    cache = KVCache.zeros(run, n, p + width)
    if prefix.cache is not None:
        cache.fill_prefix(prefix.cache, p)
    pad = int(run.model.tokenizer.pad_token_id or 0)
    ids = torch.full((n, width), pad, dtype=torch.long)
    pos = torch.full((n, width), p, dtype=torch.long)
    valid = torch.zeros(n, p + width, dtype=torch.bool)
    generated = torch.zeros(n, width, dtype=torch.bool)
    valid[:, :p] = True
    for r, f in enumerate(full):
        k, c = len(f), len(completions[rows[r]])
        ids[r, width - k :] = torch.tensor(f)
        pos[r, width - k :] = torch.arange(p, p + k)
        valid[r, p + width - k :] = True
        generated[r, width - c :] = True
    with forward_phase("mixed", generated.to(dev)):
        h = run.hidden(ids.to(dev), pos.to(dev), prefill_mask(valid.to(dev), p, width), cache)
    out = []
    for r in range(n):
        c = len(completions[rows[r]])
        out.append(h[r, width - c - 1 : width - 1])  # position t predicts the token at t + 1
    return out


def _forced_pass(
    run: Runner, seqs: list[list[int]], comps: list[list[int]], p: int, batch_size: int
) -> dict[int, Tensor]:
    """Hidden states predicting each completion token, per prompt index, under the hooks in place."""
    order = sorted(range(len(seqs)), key=lambda i: -(len(seqs[i]) + len(comps[i])))
    with forward_phase("prompt"):
        prefix = run_prefix(run, seqs[0][:p], None)
    out: dict[int, Tensor] = {}
    # The same prompts and completions are forced in the same batches for every steering, so
    # a pass starts at the first steered layer once the layers below it have run on them.
    with run.reusing(seqs[0][:p]):
        for b0 in range(0, len(order), batch_size):
            rows = order[b0 : b0 + batch_size]
            out.update(zip(rows, _forced_hidden(run, seqs, comps, p, rows, prefix), strict=True))
    return out


@timed("teacher forcing")
def teacher_forced_scores(
    model: LoadedModel,
    prompts: Sequence[str],
    completions_token_ids: Sequence[Sequence[int]],
    *,
    prompt_ids: Sequence[str],
    steerings: Sequence[Steering],
    system_prompt: str | None = None,
    batch_size: int = 32,
) -> list[TeacherForced]:
    """Per prompt: mean over all completion tokens of KL(unsteered || steered), and steered CE.

    The completions are the model's own baseline completions (token ids from generate), so CE
    is the cost of the steering on text the unsteered model would have written.
    """
    check_generation_args(prompts, prompt_ids, 1, 0.0, 1.0, batch_size)
    if len(completions_token_ids) != len(prompts):
        raise InputError(
            "prompts and completions differ in length",
            field="completions_token_ids",
            value=(len(prompts), len(completions_token_ids)),
            expected="one per prompt",
        )
    if not prompts:
        return []
    run = Runner(model)
    tok = model.tokenizer
    seqs = [encode(tok, format_prompt(tok, q, system_prompt=system_prompt)) for q in prompts]
    comps = [[int(t) for t in c] for c in completions_token_ids]
    p = shared_prefix(seqs)
    with torch.inference_mode():
        base_h = _forced_pass(run, seqs, comps, p, batch_size)
        with steer(model, steerings):
            moved_h = _forced_pass(run, seqs, comps, p, batch_size)
        out = []
        for i, comp in enumerate(comps):
            if not comp:
                out.append(TeacherForced(math.nan, math.nan))
                continue
            base = run.logits(base_h[i])[None]  # [1, t, vocab]
            moved = run.logits(moved_h[i])[None]
            target = torch.tensor([comp], device=run.device)
            kl, ce = kl_divergence(base, moved)[0], cross_entropy(moved, target)[0]
            out.append(TeacherForced(float(kl), float(ce)))
    return out
