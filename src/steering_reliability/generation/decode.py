"""generate(): batched, left-padded, KV-cached decoding under steering hooks."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from steering_reliability.errors import InputError
from steering_reliability.generation.runtime import (
    KV_BUDGET_BYTES,
    PREFILL_TOKENS,
    PREFILL_TOKENS_DEFAULT,
    KVCache,
    Prefix,
    Runner,
    check_generation_args,
    eos_ids,
    prefill_mask,
    prompt_seed,
    run_prefix,
    shared_prefix,
    steering_of,
)
from steering_reliability.interventions.steer import Steering, SteerProbe, forward_phase
from steering_reliability.listeners import GENERATION_PROGRESS
from steering_reliability.models import LoadedModel, format_prompt
from steering_reliability.models import encode_prompt as encode
from steering_reliability.timing import add_tokens, phase, timed


@dataclass(frozen=True)
class Generation:
    """One prompt's completion and per-token statistics (from the untempered model distribution).

    token_ids include the EOS token when hit_eos; text is decoded without special tokens.
    """

    prompt_id: str
    text: str
    token_ids: tuple[int, ...]
    logprobs: tuple[float, ...]  # log p(chosen token), nats
    entropies: tuple[float, ...]  # entropy of the next-token distribution, nats
    hit_eos: bool
    first_token_mass: float | None = None  # softmax mass on track_token_ids at the first position
    proj_before: float | None = None  # mean resid·v̂ over the prompt at steerings[0]'s site
    proj_after: float | None = None


def _top_p(z: Tensor, top_p: float) -> Tensor:
    """Logits with the tail beyond cumulative probability top_p set to -inf (HF's convention)."""
    if top_p >= 1.0:
        return z
    sorted_z, order = torch.sort(z, descending=False, dim=-1)
    cum = sorted_z.softmax(-1).cumsum(-1)
    drop = cum <= 1 - top_p
    drop[..., -1] = False  # always keep the most likely token
    return z.masked_fill(drop.scatter(-1, order, drop), float("-inf"))


def _choose(
    logits: Tensor,
    live: list[int],
    gens: list[torch.Generator | None],
    temperature: float,
    top_p: float,
) -> tuple[Tensor, Tensor, Tensor]:
    """Next tokens [n], their log-probs [n] and entropies [n] (untempered) for logits [n, vocab]."""
    logp = torch.log_softmax(logits, dim=-1)
    ent = -(logp.exp() * logp).sum(-1)  # raw logits are finite, so no 0 * -inf here
    if temperature == 0.0:
        tok = logits.argmax(-1)
    else:
        probs = _top_p(logits[live] / temperature, top_p).softmax(-1)
        tok = torch.zeros(logits.shape[0], dtype=torch.long, device=logits.device)
        for j, i in enumerate(live):
            tok[i] = torch.multinomial(probs[j], 1, generator=gens[i])[0]
    return tok, logp.gather(-1, tok[:, None])[:, 0], ent


@dataclass
class _Row:
    """One prompt's running output."""

    index: int
    tokens: list[int]
    logprobs: list[float]
    entropies: list[float]
    hit_eos: bool = False
    first_mass: float | None = None
    proj: tuple[float, float] | None = None


def _prefill(
    run: Runner,
    prefix: Prefix,
    suf: list[list[int]],
    cache: KVCache,
    valid: Tensor,
    out: list[_Row],
    probe: SteerProbe | None,
) -> Tensor:
    """Prefill the batch's suffixes in chunks of similar length; next-token logits [n, vocab]."""
    dev, p, n, s_max = run.device, prefix.n, len(suf), len(suf[0])
    first = torch.empty(n, run.vocab, device=dev)
    pad = int(run.model.tokenizer.pad_token_id or 0)
    budget = PREFILL_TOKENS.get(dev.type, PREFILL_TOKENS_DEFAULT)
    r0 = 0
    while r0 < n:  # rows are sorted longest first, so row r0 is its chunk's widest
        s_c = len(suf[r0])
        r1 = min(n, r0 + max(1, budget // max(1, s_c)))
        ids = torch.full((r1 - r0, s_c), pad, dtype=torch.long)
        pos = torch.full((r1 - r0, s_c), p, dtype=torch.long)
        for r in range(r0, r1):
            k = len(suf[r])
            ids[r - r0, s_c - k :] = torch.tensor(suf[r])
            pos[r - r0, s_c - k :] = torch.arange(p, p + k)
        # The chunk's columns end where the batch's suffix region ends (decode starts there for
        # every row); the columns in between stay masked.
        q0 = p + s_max - s_c
        mask = prefill_mask(valid[r0:r1, : p + s_max], q0, s_c)
        if probe is not None:
            probe.clear()
        with forward_phase("prompt"):
            h = run.hidden(ids.to(dev), pos.to(dev), mask, cache.rows(r0, r1, q0))
        first[r0:r1] = run.logits(h[:, -1])
        if probe is not None and probe.records:  # mean over prefix + this row's own tokens
            rec, m = probe.records[-1], valid[r0:r1, q0 : p + s_max]
            for r in range(r0, r1):
                mr, k = m[r - r0], int(m[r - r0].sum()) + p
                b = (prefix.proj_sum[0] + float(rec.before[r - r0][mr].sum())) / k
                a = (prefix.proj_sum[1] + float(rec.after[r - r0][mr].sum())) / k
                out[r].proj = (b, a)
        r0 = r1
    cache.at = [p + s_max] * run.n_layers  # the chunks wrote through row views of this cache
    return first


def _decode(
    run: Runner,
    cache: KVCache,
    valid: Tensor,
    pos: Tensor,
    logits: Tensor,
    out: list[_Row],
    *,
    gens: list[torch.Generator | None],
    eos: set[int],
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    bar: Any,
) -> None:
    """The decode loop: cache row j holds out[live[j]]; finished rows leave the batch."""
    live = list(range(len(out)))
    done = [False] * len(out)
    col = cache.at[0]
    eos_t = torch.tensor(sorted(eos), device=run.device)
    for step in range(max_new_tokens):
        todo = [j for j, r in enumerate(live) if not done[r]]
        tok, lp, ent = _choose(logits, todo, [gens[r] for r in live], temperature, top_p)
        tl, lpl, entl = tok.tolist(), lp.tolist(), ent.tolist()
        eosl = torch.isin(tok, eos_t).tolist()
        for j in todo:
            row = out[live[j]]
            row.tokens.append(tl[j])
            row.logprobs.append(lpl[j])
            row.entropies.append(entl[j])
            if eosl[j] or step == max_new_tokens - 1:
                row.hit_eos, done[live[j]] = bool(eosl[j]), True
                bar.update(1)
        bar.step()
        remaining = max_new_tokens - step - 1
        keep = [j for j, r in enumerate(live) if not done[r]]
        if not keep or remaining == 0:
            return
        # Dropping rows copies every kept row's cache once (a fraction of one row-step); keeping
        # a finished row costs a full row-step per remaining step. Compact when that pays.
        if (len(live) - len(keep)) * remaining * 4 >= len(live):
            idx = torch.tensor(keep, device=run.device)
            cache.keep(idx, col)
            valid, pos, tok = valid[idx], pos[idx], tok[idx]
            live = [live[j] for j in keep]
        valid[:, col] = True
        with forward_phase("generated"):
            h = run.hidden(
                tok[:, None], pos[:, None], valid[:, None, None, : col + 1].contiguous(), cache
            )
        logits = run.logits(h[:, -1])
        pos, col = pos + 1, col + 1


def _open_batch(
    run: Runner,
    prefix: Prefix,
    rows: list[int],
    seqs: list[list[int]],
    new_tokens: int,
    probe: SteerProbe | None,
) -> tuple[list[list[int]], KVCache, Tensor, list[_Row], Tensor]:
    """One batch of prompts (sorted longest first) prefilled behind the shared prefix, with
    room for `new_tokens`: (their suffixes, the KV cache, valid columns, rows, first logits)."""
    p = prefix.n
    suf = [seqs[i][p:] for i in rows]
    n, s_max = len(rows), len(suf[0])
    cap = p + s_max + new_tokens
    if run.max_len is not None and cap > run.max_len:
        raise InputError(
            "prompt + max_new_tokens exceeds the model's sliding window",
            value=cap,
            expected=f"<= {run.max_len} tokens",
        )
    # Layout per row: [shared prefix | left padding | own suffix | generated tokens].
    cache = KVCache.zeros(run, n, cap)
    if prefix.cache is not None:
        cache.fill_prefix(prefix.cache, p)
    valid = torch.zeros(n, cap, dtype=torch.bool, device=run.device)
    valid[:, :p] = True
    for r, t in enumerate(suf):
        valid[r, p + s_max - len(t) : p + s_max] = True
    out = [_Row(i, [], [], []) for i in rows]
    first = _prefill(run, prefix, suf, cache, valid, out, probe)
    return suf, cache, valid, out, first


def _batch(
    run: Runner,
    prefix: Prefix,
    rows: list[int],
    seqs: list[list[int]],
    *,
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    gens: list[torch.Generator | None],
    eos: set[int],
    track: Tensor | None,
    probe: SteerProbe | None,
    bar: Any,
) -> list[_Row]:
    """Generate for one batch of prompts (sorted longest first); returns their rows in that order."""
    with phase("generation: prefill"):
        suf, cache, valid, out, first = _open_batch(run, prefix, rows, seqs, max_new_tokens, probe)
    if track is not None:
        mass = first.softmax(-1)[:, track].sum(-1).tolist()
        for r in range(len(rows)):
            out[r].first_mass = mass[r]
    pos = torch.tensor([prefix.n + len(t) for t in suf], device=run.device)
    if probe is not None:
        probe.enabled = False  # prompt projections only; decode steps would only add garbage
    try:
        with phase("generation: decode"):
            _decode(
                run,
                cache,
                valid,
                pos,
                first,
                out,
                gens=[gens[i] for i in rows],
                eos=eos,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                bar=bar,
            )
    finally:
        if probe is not None:
            probe.enabled = True
    return out


def _encoded(
    model: LoadedModel, prompts: Sequence[str], system_prompt: str | None
) -> tuple[list[list[int]], list[int]]:
    """The formatted prompts' token ids, and their indices longest first (the batch order)."""
    tok = model.tokenizer
    seqs = [encode(tok, format_prompt(tok, p, system_prompt=system_prompt)) for p in prompts]
    return seqs, sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))


@timed("last-token reads")
def next_token_logits(
    model: LoadedModel,
    prompts: Sequence[str],
    *,
    system_prompt: str | None = None,
    batch_size: int = 16,
) -> Tensor:
    """Next-token logits after each formatted prompt, [n, vocab] float32 on the CPU, under any
    active steering: the engine's prefill (shared prefix computed once, no decode step)."""
    if not prompts:
        raise InputError("no prompts to read logits for", field="prompts", expected="at least one")
    run = Runner(model)
    seqs, order = _encoded(model, prompts, system_prompt)
    batch_size = _rows_within_budget(run, batch_size, len(seqs[order[0]]))
    out = torch.empty(len(seqs), run.vocab)
    with torch.inference_mode(), forward_phase("prompt"):
        shared = seqs[0][: shared_prefix(seqs)]
        prefix = run_prefix(run, shared, None)
        # no decode step follows: a read under a steering at layer L reuses the layers below L
        # from an earlier read of the same prompts (Runner.reusing)
        with run.reusing(shared):
            for b0 in range(0, len(order), batch_size):
                rows = order[b0 : b0 + batch_size]
                first = _open_batch(run, prefix, rows, seqs, 0, None)[-1]
                out[torch.tensor(rows)] = first.float().cpu()
    return out


def _rows_within_budget(run: Runner, batch_size: int, seq_len: int) -> int:
    """batch_size, lowered so that the batch's KV cache fits KV_BUDGET_BYTES."""
    per_row = 2 * run.n_layers * run.n_kv_heads * run.head_dim * seq_len * run.dtype.itemsize
    return max(1, min(batch_size, KV_BUDGET_BYTES // per_row))


class _Progress:
    """The tqdm bar (shown or not) plus a count of finished prompts for the listeners
    (listeners.GENERATION_PROGRESS)."""

    def __init__(self, bar: Any, total: int) -> None:
        self.bar, self.done, self.total = bar, 0, total

    def update(self, n: int) -> None:
        self.bar.update(n)
        self.done += n

    def step(self) -> None:
        for fn in GENERATION_PROGRESS:
            fn(self.done, self.total)


def generate(
    model: LoadedModel,
    prompts: Sequence[str],
    *,
    prompt_ids: Sequence[str],
    max_new_tokens: int,
    temperature: float = 0.0,
    top_p: float = 1.0,
    seed: int = 0,
    steerings: Sequence[Steering] = (),
    system_prompt: str | None = None,
    batch_size: int = 64,
    track_token_ids: Sequence[int] | None = None,
    progress: bool = False,
) -> list[Generation]:
    """Complete raw user requests (formatted with format_prompt) under steerings; input order."""
    from tqdm.auto import tqdm

    check_generation_args(prompts, prompt_ids, max_new_tokens, temperature, top_p, batch_size)
    if not prompts:
        return []
    run = Runner(model)
    tok = model.tokenizer
    seqs, order = _encoded(model, prompts, system_prompt)
    p = shared_prefix(seqs)
    batch_size = _rows_within_budget(run, batch_size, len(seqs[order[0]]) + max_new_tokens)
    gens: list[torch.Generator | None] = [None] * len(seqs)
    if temperature > 0:
        for i, pid in enumerate(prompt_ids):
            gens[i] = torch.Generator(device=run.device).manual_seed(prompt_seed(seed, pid))
    track = (
        None
        if track_token_ids is None
        else torch.tensor(list(track_token_ids), dtype=torch.long, device=run.device)
    )
    rows: list[_Row] = []
    with (
        torch.inference_mode(),
        steering_of(model, steerings) as probe,
        tqdm(total=len(seqs), disable=not progress, unit="prompt", desc="generate") as tq,
    ):
        bar = _Progress(tq, len(seqs))
        with forward_phase("prompt"), phase("generation: prefill"):
            prefix = run_prefix(run, seqs[0][:p], probe)
        for b0 in range(0, len(order), batch_size):
            rows += _batch(
                run,
                prefix,
                order[b0 : b0 + batch_size],
                seqs,
                max_new_tokens=max_new_tokens,
                temperature=temperature,
                top_p=top_p,
                gens=gens,
                eos=eos_ids(model),
                track=track,
                probe=probe,
                bar=bar,
            )
    add_tokens(sum(len(r.tokens) for r in rows))
    result: list[Generation | None] = [None] * len(seqs)
    for r in rows:
        body = r.tokens[:-1] if r.hit_eos else r.tokens
        result[r.index] = Generation(
            prompt_id=str(prompt_ids[r.index]),
            text=tok.decode(body, skip_special_tokens=True),
            token_ids=tuple(r.tokens),
            logprobs=tuple(r.logprobs),
            entropies=tuple(r.entropies),
            hit_eos=r.hit_eos,
            first_token_mass=r.first_mass,
            proj_before=None if r.proj is None else r.proj[0],
            proj_after=None if r.proj is None else r.proj[1],
        )
    return [g for g in result if g is not None]
