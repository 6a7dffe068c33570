"""Batched, left-padded, KV-cached generation under steering hooks; per-prompt seeds.

Runs on the bridge-free view of the model (interventions.sites.raw_model) with its own decode
loop. What makes it fast on a CPU: the chat template's shared prefix (system prompt) is computed
once and its KV reused by every row; prompts are sorted by length into batches and prefilled in
chunks of similar length; only the last position is unembedded in prefill; K/V live in
preallocated buffers (no per-step concatenation); finished rows are dropped from the batch.
Sampling draws from one torch.Generator per prompt, seeded from (seed, prompt id), so a prompt's
output does not depend on batch size, order or worker.
"""

from __future__ import annotations

import hashlib
import math
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from .errors import InputError
from .interventions.sites import raw_model
from .interventions.steer import Steering, SteerProbe, forward_phase, steer
from .models import LoadedModel, format_prompt
from .models import encode_prompt as encode

# Rows x padded length per prefill chunk. Small chunks of similar length waste little on padding
# (measured on CPU, 64 chat prompts: 512 -> 6.0 s, 2048 -> 8.5 s); a GPU wants large ones.
PREFILL_TOKENS = {"cpu": 512}
PREFILL_TOKENS_DEFAULT = 8192
MIN_SHARED_PREFIX = 2  # share the template prefix's KV only when at least this many tokens
# Largest KV cache one batch may allocate; batches shrink to fit (SmolLM2, 150 tokens: 7 MB/row).
KV_BUDGET_BYTES = 4 << 30


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


@dataclass(frozen=True)
class TeacherForced:
    """Cost of a steering on a fixed completion: mean KL(unsteered || steered) and steered CE (nats)."""

    kl_to_baseline: float
    ce: float


def prompt_seed(seed: int, prompt_id: str) -> int:
    """The sampling seed of one prompt: blake2b of (run seed, prompt id), 63 bits."""
    digest = hashlib.blake2b(f"{int(seed)}\x00{prompt_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class _KV:
    """Per-layer K/V buffers [batch, kv_heads, capacity, head_dim], written in place.

    Duck-types the part of transformers' Cache that the decoder layers call (update,
    get_seq_length); updates return views up to the written column, so a decode step never
    concatenates. `rows(r0, r1, at)` views a row range (a prefill chunk writes into its batch).
    """

    def __init__(self, k: list[Tensor], v: list[Tensor], at: int) -> None:
        self.k, self.v, self.at = k, v, [at] * len(k)

    @classmethod
    def zeros(cls, run: _Runner, batch: int, capacity: int) -> _KV:
        # Zeros, not empty: masked key columns must hold finite values (0 * NaN is NaN in SDPA).
        shape = (batch, run.n_kv_heads, capacity, run.head_dim)
        k = [torch.zeros(shape, dtype=run.dtype, device=run.device) for _ in range(run.n_layers)]
        v = [torch.zeros(shape, dtype=run.dtype, device=run.device) for _ in range(run.n_layers)]
        return cls(k, v, 0)

    def update(
        self, key: Tensor, value: Tensor, layer_idx: int, *args: Any, **kwargs: Any
    ) -> tuple[Tensor, Tensor]:
        start = self.at[layer_idx]
        end = start + key.shape[2]
        k, v = self.k[layer_idx], self.v[layer_idx]
        k[:, :, start:end] = key
        v[:, :, start:end] = value
        self.at[layer_idx] = end
        return k[:, :, :end], v[:, :, :end]

    def get_seq_length(self, layer_idx: int = 0) -> int:
        return self.at[layer_idx]

    def rows(self, r0: int, r1: int, at: int) -> _KV:
        return _KV([t[r0:r1] for t in self.k], [t[r0:r1] for t in self.v], at)

    def fill_prefix(self, prefix: _KV, n: int) -> None:
        """Copy a one-row prefix cache into the first n columns of every row; next write at n."""
        for mine, theirs in ((self.k, prefix.k), (self.v, prefix.v)):
            for t, p in zip(mine, theirs, strict=False):
                t[:, :, :n] = p[:, :, :n]
        self.at = [n] * len(self.k)

    def keep(self, idx: Tensor, at: int) -> None:
        """Drop rows, keeping idx; copies only the columns written so far."""
        for buf in (self.k, self.v):
            for i, t in enumerate(buf):
                new = t.new_empty(len(idx), *t.shape[1:])  # columns >= at are written before read
                new[:, :, :at] = t[idx, :, :at]
                buf[i] = new
        self.at = [at] * len(self.k)


_PACKED: dict[int, tuple[Any, int, Tensor]] = {}


def _packed_head(w: Tensor) -> Tensor | None:
    """oneDNN-packed copy of a CPU fp32 unembedding, cached per weight tensor, or None.

    Measured at 64 rows x 576 -> 49152: 47 -> 65 GFLOP/s on one core (MKL's plain sgemm is slow
    for this wide shape); logits differ from F.linear by float rounding only (~1e-5).
    """
    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if w.device.type != "cpu" or w.dtype != torch.float32 or op is None:
        return None
    hit = _PACKED.get(id(w))
    if hit is not None and hit[0]() is w and hit[1] == w._version:
        return hit[2]
    try:
        packed = torch.ops.mkldnn._reorder_linear_weight(w.detach(), None)
    except (RuntimeError, AttributeError):
        return None
    _PACKED[id(w)] = (weakref.ref(w), w._version, packed)
    weakref.finalize(w, _PACKED.pop, id(w), None)
    return packed


class _Runner:
    """Forward passes of the raw view with explicit masks and positions."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.raw: Any = raw_model(model.hf_model)
        self.base: Any = self.raw.base_model
        self.head: Any = self.raw.get_output_embeddings()
        cfg = self.raw.config
        self.text_cfg: Any = cfg.get_text_config() if hasattr(cfg, "get_text_config") else cfg
        self.softcap = getattr(self.text_cfg, "final_logit_softcapping", None)
        param = next(self.raw.parameters())
        self.device, self.dtype = param.device, param.dtype
        self.n_layers = model.info.n_layers
        c = self.text_cfg
        self.n_kv_heads = int(getattr(c, "num_key_value_heads", None) or c.num_attention_heads)
        self.head_dim = int(getattr(c, "head_dim", None) or c.hidden_size // c.num_attention_heads)
        self.vocab = int(model.info.vocab_size)
        window = getattr(c, "sliding_window", None)
        self.max_len = int(window) if window else None  # masks here do not implement windows
        self.packed = (
            _packed_head(self.head.weight) if isinstance(self.head, torch.nn.Linear) else None
        )

    def hidden(self, ids: Tensor, pos: Tensor, mask: Tensor, cache: _KV) -> Tensor:
        """Final-norm hidden states [b, s, d] of ids [b, s] at positions pos, attending per mask [b,1,s,k]."""
        out = self.base(
            input_ids=ids,
            attention_mask=mask,
            position_ids=pos,
            past_key_values=cache,
            use_cache=True,
        )
        return out.last_hidden_state

    def logits(self, h: Tensor) -> Tensor:
        """Unembed [..., d] -> float32 logits [..., vocab]."""
        if self.packed is not None and h.dim() == 2:
            z = torch.ops.mkldnn._linear_pointwise(h, self.packed, self.head.bias, "none", [], "")
        else:
            z = self.head(h).float()
        if self.softcap:
            z = torch.tanh(z / self.softcap) * self.softcap
        return z


def _prefill_mask(valid: Tensor, q0: int, s: int) -> Tensor:
    """[b, 1, s, k] bool: query i (column q0+i) sees valid keys at columns <= its own, and itself."""
    k = valid.shape[1]
    cols = torch.arange(k, device=valid.device)
    qcols = q0 + torch.arange(s, device=valid.device)
    causal = cols[None, :] <= qcols[:, None]
    own = cols[None, :] == qcols[:, None]  # a pad query must see something, or SDPA gives NaN
    return ((valid[:, None, None, :] & causal[None, None]) | own[None, None]).contiguous()


def _check_args(
    prompts: Sequence[str],
    prompt_ids: Sequence[str],
    max_new_tokens: int,
    temperature: float,
    top_p: float,
    batch_size: int,
) -> None:
    if len(prompts) != len(prompt_ids):
        raise InputError(
            "prompts and prompt_ids differ in length",
            field="prompt_ids",
            value=(len(prompts), len(prompt_ids)),
            expected="one id per prompt",
        )
    for name, value, ok, expected in (
        (
            "max_new_tokens",
            max_new_tokens,
            isinstance(max_new_tokens, int) and max_new_tokens >= 1,
            "an int >= 1",
        ),
        (
            "temperature",
            temperature,
            math.isfinite(temperature) and temperature >= 0,
            "a finite float >= 0 (0 = greedy)",
        ),
        ("top_p", top_p, 0 < top_p <= 1, "0 < top_p <= 1"),
        ("batch_size", batch_size, isinstance(batch_size, int) and batch_size >= 1, "an int >= 1"),
    ):
        if not ok:
            raise InputError(f"bad {name}", field=name, value=value, expected=expected)


def eos_ids(model: LoadedModel) -> set[int]:
    ids: set[int] = set()
    gen_eos = getattr(getattr(model.hf_model, "generation_config", None), "eos_token_id", None)
    for e in gen_eos if isinstance(gen_eos, (list, tuple)) else [gen_eos]:
        if e is not None:
            ids.add(int(e))
    if model.tokenizer.eos_token_id is not None:
        ids.add(int(model.tokenizer.eos_token_id))
    return ids


def _shared_prefix(seqs: list[list[int]]) -> int:
    """Length of the common token prefix, leaving every sequence at least one token of its own."""
    n = min(len(s) for s in seqs) - 1
    first = seqs[0]
    for s in seqs[1:]:
        i = 0
        while i < n and s[i] == first[i]:
            i += 1
        n = i
    return n if n >= MIN_SHARED_PREFIX else 0


@dataclass
class _Prefix:
    """The shared prefix's KV (one row) and the probe's projection sums over it."""

    n: int
    cache: _KV | None
    proj_sum: tuple[float, float] = (0.0, 0.0)


def _run_prefix(run: _Runner, ids: list[int], probe: SteerProbe | None) -> _Prefix:
    if not ids:
        return _Prefix(0, None)
    cache = _KV.zeros(run, 1, len(ids))
    x = torch.tensor([ids], device=run.device)
    pos = torch.arange(len(ids), device=run.device)[None]
    valid = torch.ones(1, len(ids), dtype=torch.bool, device=run.device)
    if probe is not None:
        probe.clear()
    run.hidden(x, pos, _prefill_mask(valid, 0, len(ids)), cache)
    sums = (0.0, 0.0)
    if probe is not None and probe.records:
        rec = probe.records[-1]
        sums = (float(rec.before.sum()), float(rec.after.sum()))
    return _Prefix(len(ids), cache, sums)


@contextmanager
def _steering(model: LoadedModel, steerings: Sequence[Steering]) -> Iterator[SteerProbe | None]:
    if not steerings:
        yield None
        return
    with steer(model, steerings, probe=True) as probe:
        yield probe


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
    run: _Runner,
    prefix: _Prefix,
    suf: list[list[int]],
    cache: _KV,
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
        mask = _prefill_mask(valid[r0:r1, : p + s_max], q0, s_c)
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
    run: _Runner,
    cache: _KV,
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


def _batch(
    run: _Runner,
    prefix: _Prefix,
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
    p = prefix.n
    suf = [seqs[i][p:] for i in rows]
    n, s_max = len(rows), len(suf[0])
    cap = p + s_max + max_new_tokens
    if run.max_len is not None and cap > run.max_len:
        raise InputError(
            "prompt + max_new_tokens exceeds the model's sliding window",
            value=cap,
            expected=f"<= {run.max_len} tokens",
        )
    # Layout per row: [shared prefix | left padding | own suffix | generated tokens].
    cache = _KV.zeros(run, n, cap)
    if prefix.cache is not None:
        cache.fill_prefix(prefix.cache, p)
    valid = torch.zeros(n, cap, dtype=torch.bool, device=run.device)
    valid[:, :p] = True
    for r, t in enumerate(suf):
        valid[r, p + s_max - len(t) : p + s_max] = True
    out = [_Row(i, [], [], []) for i in rows]
    first = _prefill(run, prefix, suf, cache, valid, out, probe)
    if track is not None:
        mass = first.softmax(-1)[:, track].sum(-1).tolist()
        for r in range(n):
            out[r].first_mass = mass[r]
    pos = torch.tensor([p + len(t) for t in suf], device=run.device)
    if probe is not None:
        probe.enabled = False  # prompt projections only; decode steps would only add garbage
    try:
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


def _rows_within_budget(run: _Runner, batch_size: int, seq_len: int) -> int:
    """batch_size, lowered so that the batch's KV cache fits KV_BUDGET_BYTES."""
    per_row = 2 * run.n_layers * run.n_kv_heads * run.head_dim * seq_len * run.dtype.itemsize
    return max(1, min(batch_size, KV_BUDGET_BYTES // per_row))


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

    _check_args(prompts, prompt_ids, max_new_tokens, temperature, top_p, batch_size)
    if not prompts:
        return []
    run = _Runner(model)
    tok = model.tokenizer
    seqs = [encode(tok, format_prompt(tok, p, system_prompt=system_prompt)) for p in prompts]
    p = _shared_prefix(seqs)
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
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
        _steering(model, steerings) as probe,
        tqdm(total=len(seqs), disable=not progress, unit="prompt", desc="generate") as bar,
    ):
        with forward_phase("prompt"):
            prefix = _run_prefix(run, seqs[0][:p], probe)
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


def _forced_hidden(
    run: _Runner,
    prompt_seqs: list[list[int]],
    completions: list[list[int]],
    p: int,
    rows: list[int],
    prefix: _Prefix,
) -> list[Tensor]:
    """Hidden states [len(completion), d] predicting each completion token, per row of one batch."""
    dev = run.device
    full = [prompt_seqs[i][p:] + completions[i] for i in rows]
    n, width = len(rows), max(len(f) for f in full)
    cache = _KV.zeros(run, n, p + width)
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
        h = run.hidden(ids.to(dev), pos.to(dev), _prefill_mask(valid.to(dev), p, width), cache)
    out = []
    for r in range(n):
        c = len(completions[rows[r]])
        out.append(h[r, width - c - 1 : width - 1])  # position t predicts the token at t + 1
    return out


# Unsteered teacher-forced hidden states of the last few (model, prompts, completions) sets: a
# sweep scores every case against the same baseline completions, so its half of the work is
# done once per worker instead of once per case.
_BASELINES: OrderedDict[tuple[Any, ...], dict[int, Tensor]] = OrderedDict()
_BASELINES_KEPT = 2


def _has_foreign_hooks(run: _Runner) -> bool:
    """Whether hooks someone else installed (an enclosing steer()) would change a forward."""
    return any(m._forward_hooks or m._forward_pre_hooks for m in run.raw.modules())


def _forced_pass(
    run: _Runner, seqs: list[list[int]], comps: list[list[int]], p: int, batch_size: int
) -> dict[int, Tensor]:
    """Hidden states predicting each completion token, per prompt index, under the hooks in place."""
    order = sorted(range(len(seqs)), key=lambda i: -(len(seqs[i]) + len(comps[i])))
    with forward_phase("prompt"):
        prefix = _run_prefix(run, seqs[0][:p], None)
    out: dict[int, Tensor] = {}
    for b0 in range(0, len(order), batch_size):
        rows = order[b0 : b0 + batch_size]
        out.update(zip(rows, _forced_hidden(run, seqs, comps, p, rows, prefix), strict=True))
    return out


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
    from .metrics.divergence import cross_entropy, kl_divergence

    _check_args(prompts, prompt_ids, 1, 0.0, 1.0, batch_size)
    if len(completions_token_ids) != len(prompts):
        raise InputError(
            "prompts and completions differ in length",
            field="completions_token_ids",
            value=(len(prompts), len(completions_token_ids)),
            expected="one per prompt",
        )
    if not prompts:
        return []
    run = _Runner(model)
    tok = model.tokenizer
    seqs = [encode(tok, format_prompt(tok, q, system_prompt=system_prompt)) for q in prompts]
    comps = [[int(t) for t in c] for c in completions_token_ids]
    p = _shared_prefix(seqs)
    with torch.inference_mode():
        key = (id(model.hf_model), model.info.weights_sha256, _digest(seqs, comps))
        cacheable = not _has_foreign_hooks(run)
        base_h = _BASELINES.get(key) if cacheable else None
        if base_h is None:
            base_h = _forced_pass(run, seqs, comps, p, batch_size)
        if cacheable:
            _BASELINES[key] = base_h
            _BASELINES.move_to_end(key)
            while len(_BASELINES) > _BASELINES_KEPT:
                _BASELINES.popitem(last=False)
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


def _digest(seqs: list[list[int]], comps: list[list[int]]) -> str:
    h = hashlib.blake2b(digest_size=16)
    for s, c in zip(seqs, comps, strict=True):
        h.update(repr((s, c)).encode())
    return h.hexdigest()
