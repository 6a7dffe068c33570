"""Engine internals: the bridge-free runner, preallocated KV buffers, the shared prompt prefix."""

from __future__ import annotations

import hashlib
import itertools
import math
import weakref
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from steering_reliability.errors import InputError
from steering_reliability.interventions.steer import Steering, SteerProbe, steer
from steering_reliability.models import LoadedModel
from steering_reliability.models.sites import cache_kwarg

# Rows x padded length per prefill chunk. Small chunks of similar length waste little on padding
# (measured on CPU, 64 chat prompts: 512 -> 6.0 s, 2048 -> 8.5 s); a GPU wants large ones.
PREFILL_TOKENS = {"cpu": 512}
PREFILL_TOKENS_DEFAULT = 8192
MIN_SHARED_PREFIX = 2  # share the template prefix's KV only when at least this many tokens
# Largest KV cache one batch may allocate; batches shrink to fit (SmolLM2, 150 tokens: 7 MB/row).
KV_BUDGET_BYTES = 4 << 30
# Most bytes of unhooked residuals kept per process for passes that start at the first hooked
# layer (Runner.reusing); the full default sweep keeps about 60 MB per steered layer.
LOWER_LAYERS_BUDGET_BYTES = 1 << 30


def prompt_seed(seed: int, prompt_id: str) -> int:
    """The sampling seed of one prompt: blake2b of (run seed, prompt id), 63 bits."""
    digest = hashlib.blake2b(f"{int(seed)}\x00{prompt_id}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "little") & (2**63 - 1)


class KVCache:
    """Per-layer K/V buffers [batch, kv_heads, capacity, head_dim], written in place.

    Duck-types the part of transformers' Cache that the decoder layers call (update,
    get_seq_length); updates return views up to the written column, so a decode step never
    concatenates. `rows(r0, r1, at)` views a row range (a prefill chunk writes into its batch).
    """

    def __init__(self, k: list[Tensor], v: list[Tensor], at: int) -> None:
        self.k, self.v, self.at = k, v, [at] * len(k)

    @classmethod
    def zeros(cls, run: Runner, batch: int, capacity: int) -> KVCache:
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

    def rows(self, r0: int, r1: int, at: int) -> KVCache:
        return KVCache([t[r0:r1] for t in self.k], [t[r0:r1] for t in self.v], at)

    def fill_prefix(self, prefix: KVCache, n: int) -> None:
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
    """oneDNN-packed copy of a CPU fp32 or bf16 unembedding, cached per weight tensor, or None.

    Measured at 64 rows x 576 -> 49152: 47 -> 65 GFLOP/s on one core in fp32 (MKL's plain sgemm
    is slow for this wide shape), 24 -> 20 ms in bf16; logits differ from F.linear by float
    rounding only (~1e-5 in fp32, identical in the bf16 case measured).
    """
    op = getattr(torch.ops.mkldnn, "_linear_pointwise", None)
    if w.device.type != "cpu" or w.dtype not in (torch.float32, torch.bfloat16) or op is None:
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


class Runner:
    """Forward passes of the HF model with explicit masks and positions."""

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.raw: Any = model.hf_model
        self.base: Any = self.raw.base_model
        self.cache_kw = cache_kwarg(self.base)
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
        self._reuse: tuple[Any, ...] | None = None
        layers = getattr(self.base, "layers", None)
        ok = isinstance(layers, torch.nn.ModuleList) and len(layers) == self.n_layers
        self._layers: torch.nn.ModuleList | None = layers if ok else None
        self._norm: Any = getattr(self.base, "norm", None)
        self._owner = {
            id(m): i for i, layer in enumerate(self._layers or ()) for m in layer.modules()
        }

    def hidden(self, ids: Tensor, pos: Tensor, mask: Tensor, cache: KVCache) -> Tensor:
        """Final-norm hidden states [b, s, d] of ids [b, s] at positions pos, attending per mask [b,1,s,k].

        Inside `reusing(...)`, a pass whose inputs were seen before starts at the first layer
        that carries a hook: the layers below it compute what they computed then, so their
        output (kept from then) is fed in and they do not run. Those layers write no KV cache
        in such a pass, so only passes that decode nothing afterwards may reuse."""
        if self._reuse is None or self._layers is None:
            return self._forward(ids, pos, mask, cache)
        start = self.first_hooked_layer()
        if start <= 0:
            return self._forward(ids, pos, mask, cache)
        key = (self._reuse, start, _tensor_digest(ids, pos, mask))
        kept = _LOWER.get(key)
        if kept is not None:
            _LOWER.move_to_end(key)
            return self._forward(ids, pos, mask, cache, start=start, resid=kept)
        seen: list[Tensor] = []
        last = self._layers[start - 1]  # no hook below `start`: its output is the unhooked one
        handle = last.register_forward_hook(lambda module, args, out: _take(seen, out))
        try:
            out = self._forward(ids, pos, mask, cache)
        finally:
            handle.remove()
        if seen:
            _keep_lower(key, seen[-1])
        return out

    def _forward(
        self,
        ids: Tensor,
        pos: Tensor,
        mask: Tensor,
        cache: KVCache,
        *,
        start: int = 0,
        resid: Tensor | None = None,
    ) -> Tensor:
        if resid is None:
            return self.base(
                input_ids=ids,
                attention_mask=mask,
                position_ids=pos,
                use_cache=True,
                **{self.cache_kw: cache},
            ).last_hidden_state
        # Layers below `start` stand aside for this forward, the last of them handing over the
        # kept residual; the list keeps its length, so per-layer settings indexed by position
        # (Gemma's attention types) still line up.
        layers = self._layers
        assert layers is not None
        real = [layers[j] for j in range(start)]
        for j in range(start):
            layers[j] = _Handover(resid if j == start - 1 else None)
        try:
            return self._forward(ids, pos, mask, cache)
        finally:
            for j, layer in enumerate(real):
                layers[j] = layer

    @contextmanager
    def reusing(self, context: Sequence[int]) -> Iterator[None]:
        """Passes inside may start at the first hooked layer (see `hidden`); `context` is what
        else decides the lower layers' output besides the pass's own inputs: the ids of the
        shared prefix already in the KV cache."""
        # The model object itself (a token no other object gets, even after this one is freed:
        # an orthogonalised export shares its base's weights hash) and its weights' versions (an
        # in-place edit bumps them).
        versions = tuple(p._version for p in self.raw.parameters())
        self._reuse = (_model_token(self.raw), versions, str(self.device), str(self.dtype),
                       tuple(int(t) for t in context))  # fmt: skip
        try:
            yield
        finally:
            self._reuse = None

    def first_hooked_layer(self) -> int:
        """The first decoder layer that a forward or pre-forward hook could change (n_layers
        when none); 0 when a hook sits anywhere else but the final norm or the unembedding."""
        if self._layers is None or _global_hooks():
            return 0
        first = self.n_layers
        for m in self.raw.modules():
            if m._forward_hooks or m._forward_pre_hooks:
                layer = self._owner.get(id(m))
                if layer is None:
                    if m is self.head or m is self._norm:
                        continue
                    return 0
                first = min(first, layer)
        return first

    def logits(self, h: Tensor) -> Tensor:
        """Unembed [..., d] -> float32 logits [..., vocab]."""
        if self.packed is not None and h.dim() == 2:
            z = torch.ops.mkldnn._linear_pointwise(h, self.packed, self.head.bias, "none", [], "")
        else:
            z = self.head(h).float()
        if self.softcap:
            z = torch.tanh(z / self.softcap) * self.softcap
        return z


_LOWER: OrderedDict[tuple[Any, ...], Tensor] = OrderedDict()
_TOKENS: weakref.WeakKeyDictionary[Any, int] = weakref.WeakKeyDictionary()
_NEXT_TOKEN = itertools.count()


def _model_token(raw: Any) -> int:
    """A number for this model object that no other object ever gets; its kept residuals go
    when it is freed."""
    token = _TOKENS.get(raw)
    if token is None:
        token = _TOKENS[raw] = next(_NEXT_TOKEN)
        weakref.finalize(raw, _forget, token)
    return token


def _forget(token: int) -> None:
    for key in [k for k in _LOWER if k[0][0] == token]:
        del _LOWER[key]


def _tensor_digest(*tensors: Tensor) -> str:
    h = hashlib.blake2b(digest_size=16)
    for t in tensors:
        h.update(repr((tuple(t.shape), str(t.dtype))).encode())
        h.update(t.detach().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


def _keep_lower(key: tuple[Any, ...], resid: Tensor) -> None:
    _LOWER[key] = resid
    total = sum(t.numel() * t.element_size() for t in _LOWER.values())
    while total > LOWER_LAYERS_BUDGET_BYTES and _LOWER:
        _, old = _LOWER.popitem(last=False)
        total -= old.numel() * old.element_size()


def _global_hooks() -> bool:
    from torch.nn.modules import module as nn_module

    return bool(nn_module._global_forward_hooks or nn_module._global_forward_pre_hooks)


def _take(seen: list[Tensor], out: Any) -> None:
    """Keep a copy of a decoder layer's output: only a plain tensor (what `_Handover` can stand
    in for); a copy, so that a later in-place edit of the live tensor cannot reach it."""
    if isinstance(out, Tensor):
        seen.append(out.detach().clone())


class _Handover(torch.nn.Module):
    """Stands in for a decoder layer below the first hooked one: returns the kept residual (the
    last such layer) or its input unchanged (the layers before it), computing nothing."""

    def __init__(self, resid: Tensor | None) -> None:
        super().__init__()
        self.resid = resid

    def forward(self, hidden_states: Tensor, *args: Any, **kwargs: Any) -> Tensor:
        if self.resid is None:
            return hidden_states
        if self.resid.shape != hidden_states.shape:
            raise RuntimeError(
                f"kept residual {tuple(self.resid.shape)} != {tuple(hidden_states.shape)}"
            )
        return self.resid.clone()  # a copy: a hook editing its input in place cannot reach it


def prefill_mask(valid: Tensor, q0: int, s: int) -> Tensor:
    """[b, 1, s, k] bool: query i (column q0+i) sees valid keys at columns <= its own, and itself."""
    k = valid.shape[1]
    cols = torch.arange(k, device=valid.device)
    qcols = q0 + torch.arange(s, device=valid.device)
    causal = cols[None, :] <= qcols[:, None]
    own = cols[None, :] == qcols[:, None]  # a pad query must see something, or SDPA gives NaN
    return ((valid[:, None, None, :] & causal[None, None]) | own[None, None]).contiguous()


def check_generation_args(
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


def shared_prefix(seqs: list[list[int]]) -> int:
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
class Prefix:
    """The shared prefix's KV (one row) and the probe's projection sums over it."""

    n: int
    cache: KVCache | None
    proj_sum: tuple[float, float] = (0.0, 0.0)


def run_prefix(run: Runner, ids: list[int], probe: SteerProbe | None) -> Prefix:
    if not ids:
        return Prefix(0, None)
    cache = KVCache.zeros(run, 1, len(ids))
    x = torch.tensor([ids], device=run.device)
    pos = torch.arange(len(ids), device=run.device)[None]
    valid = torch.ones(1, len(ids), dtype=torch.bool, device=run.device)
    if probe is not None:
        probe.clear()
    run.hidden(x, pos, prefill_mask(valid, 0, len(ids)), cache)
    sums = (0.0, 0.0)
    if probe is not None and probe.records:
        rec = probe.records[-1]
        sums = (float(rec.before.sum()), float(rec.after.sum()))
    return Prefix(len(ids), cache, sums)


@contextmanager
def steering_of(model: LoadedModel, steerings: Sequence[Steering]) -> Iterator[SteerProbe | None]:
    if not steerings:
        yield None
        return
    with steer(model, steerings, probe=True) as probe:
        yield probe
