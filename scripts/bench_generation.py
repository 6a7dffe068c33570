"""Steered-generation throughput, as ratios measured side by side in one run (`make bench`).

(a) engine steered vs Hugging Face `generate` unsteered on the same plain HF model (SDPA; the
    bridge is booted over a separate module tree, models.sites) (target >= 2x);
(b) engine steered vs engine unsteered (hook overhead, target <= 5%);
(c) alpha = 0 steered output identical to unsteered (checked, not timed);
(e) where the CPU has native bf16: the steered engine and the matmul ceiling in bfloat16 beside
    float32, and how many greedy sequences stay identical;
(d) the ceiling: tokens/s if the job cost only its matmuls. Every nn.Linear of the model is
    timed alone in the same run, at the batch's rows for decode and 512-row chunks for the
    prompt tokens after the shared system prompt (the engine's own prefill work). Attention,
    norms, sampling and Python come on top, so no method reaches it: it bounds what any fp32
    engine on this CPU and thread count can gain.
New tokens are counted the same way everywhere: tokens up to and including the first EOS.
Absolute times on a shared machine are noise; the ratios are the result. Prints numbers only.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

REPO = Path(__file__).resolve().parents[1]
BUILTIN = [
    "Explain how photosynthesis works.",
    "Write a short poem about the sea.",
    "Give me three tips for learning a new language.",
    "What is the capital of Australia?",
    "Summarise the plot of Romeo and Juliet.",
    "How do I bake bread at home?",
    "Describe the water cycle for a ten-year-old.",
    "List five healthy breakfast ideas.",
    "What are the benefits of regular exercise?",
    "How does a bicycle gear system work?",
    "Write a friendly email inviting a colleague to lunch.",
    "Explain what a prime number is.",
    "What causes the seasons on Earth?",
    "Suggest a name for a pet goldfish.",
    "How do vaccines train the immune system?",
    "Translate 'good morning' into French and Spanish.",
]


def bench_prompts(n: int) -> list[str]:
    """n prompts taken in turn from data/prompts/*.jsonl (built-in benign requests if absent)."""
    pools = []
    for path in sorted((REPO / "data" / "prompts").glob("*.jsonl")):
        rows = [
            json.loads(line)["prompt"] for line in path.read_text().splitlines() if line.strip()
        ]
        if rows:
            pools.append(rows)
    pools = pools or [BUILTIN]
    out: list[str] = []
    i = 0
    while len(out) < n:
        pool = pools[i % len(pools)]
        out.append(pool[(i // len(pools)) % len(pool)])
        i += 1
    return out


def count_new(rows: list[list[int]], eos: set[int]) -> int:
    """Tokens per row up to and including the first EOS, summed."""
    total = 0
    for r in rows:
        k = next((j + 1 for j, t in enumerate(r) if t in eos), len(r))
        total += k
    return total


def hf_generate(
    hf: Any, tok: Any, texts: list[str], new_tokens: int, batch: int
) -> list[list[int]]:
    """Greedy HF generate, left-padded batches (HF's own decode loop)."""
    import torch

    from steering_reliability.generation import encode

    out: list[list[int]] = []
    pad = tok.pad_token_id
    dev = hf.device
    for b0 in range(0, len(texts), batch):
        seqs = [encode(tok, t) for t in texts[b0 : b0 + batch]]
        width = max(len(s) for s in seqs)
        ids = torch.tensor([[pad] * (width - len(s)) + s for s in seqs], device=dev)
        mask = torch.tensor([[0] * (width - len(s)) + [1] * len(s) for s in seqs], device=dev)
        with torch.inference_mode():
            res = hf.generate(
                ids,
                attention_mask=mask,
                max_new_tokens=new_tokens,
                do_sample=False,
                pad_token_id=pad,
            )
        out += res[:, width:].tolist()
    return out


@dataclass(frozen=True)
class Ceiling:
    """Seconds per token of the model's linear layers alone, at the job's row counts."""

    decode: float  # one decode step of `batch` rows, every nn.Linear incl. the unembedding, / rows
    prefill: float  # prompt tokens in chunks of 512 rows, every nn.Linear but the unembedding

    def job_seconds(self, prefill_tokens: int, new_tokens: int) -> float:
        return prefill_tokens * self.prefill + new_tokens * self.decode


def matmul_ceiling(raw: Any, rows: int, repeats: int = 5) -> Ceiling:
    """Time the model's matmuls alone (best of `repeats`): the floor under any fp32 engine."""
    import torch
    import torch.nn.functional as F

    head = raw.get_output_embeddings()
    lins = [m for m in raw.modules() if isinstance(m, torch.nn.Linear)]
    body = [m for m in lins if m is not head]

    def per_token(mods: list[Any], m_rows: int) -> float:
        w = mods[0].weight
        xs = {
            m.in_features: torch.randn(m_rows, m.in_features, dtype=w.dtype, device=w.device)
            for m in mods
        }
        best = float("inf")
        with torch.inference_mode():
            for rep in range(repeats + 1):  # the first pass is a warm-up
                sync()
                t0 = time.perf_counter()
                for m in mods:
                    F.linear(xs[m.in_features], m.weight, m.bias)
                sync()
                if rep:
                    best = min(best, time.perf_counter() - t0)
        return best / m_rows

    return Ceiling(decode=per_token(lins, rows), prefill=per_token(body, 512))


def sync() -> None:
    """Wait for queued GPU work, so wall-clock timings cover it (a no-op on the CPU)."""
    import torch

    if torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.synchronize()


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    sync()
    t0 = time.perf_counter()
    res = fn()
    sync()
    return time.perf_counter() - t0, res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smollm2-135m-instruct")
    ap.add_argument("--n", type=int, default=64, help="prompts (default 64)")
    ap.add_argument("--new-tokens", type=int, default=64, help="max new tokens (default 64)")
    ap.add_argument("--batch", type=int, default=64, help="batch size (default 64)")
    ap.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch threads (default 1: what each xdist worker of the suite runs with)",
    )
    ap.add_argument("--repeats", type=int, default=1, help="interleaved repeats; medians reported")
    ap.add_argument(
        "--no-dtypes", action="store_true", help="skip the float32 vs bfloat16 comparison (e)"
    )
    ap.add_argument("--layer", type=int, default=None, help="steered layer (default: middle)")
    ap.add_argument(
        "--device", default="auto", help="auto (default: cuda when torch sees a GPU), cpu, cuda"
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the numbers to this file")
    args = ap.parse_args(argv)

    import torch

    torch.set_num_threads(args.threads)
    from steering_reliability.generation import encode, eos_ids, generate
    from steering_reliability.generation.runtime import shared_prefix
    from steering_reliability.interventions import Steering
    from steering_reliability.models import format_prompt, load
    from steering_reliability.models.precision import resolve_device

    args.device = resolve_device(args.device)
    model = load(args.model, device=args.device)
    tok, eos = model.tokenizer, eos_ids(model)
    prompts = bench_prompts(args.n)
    pids = [f"bench_{i:04d}" for i in range(len(prompts))]
    texts = [format_prompt(tok, p) for p in prompts]
    layer = args.layer if args.layer is not None else model.info.n_layers // 2
    v = torch.nn.functional.normalize(
        torch.randn(model.info.d_model, generator=torch.Generator().manual_seed(0)), dim=0
    ).to(args.device)
    steered = [Steering("add", layer, v, 1.0)]

    def engine(st: list[Steering]) -> Callable[[], Any]:
        return lambda: generate(
            model,
            prompts,
            prompt_ids=pids,
            max_new_tokens=args.new_tokens,
            steerings=st,
            batch_size=args.batch,
        )

    runs: dict[str, Callable[[], Any]] = {
        "engine unsteered": engine([]),
        "engine steered": engine(steered),
        "HF generate, plain HF modules": lambda: hf_generate(
            model.hf_model, tok, texts, args.new_tokens, args.batch
        ),
    }
    print(
        f"model {model.info.name}; {len(prompts)} prompts, batch {args.batch}, {args.new_tokens} new tokens, "
        f"{args.threads} thread(s), device {device_name(args.device)}, steering: add at layer "
        f"{layer} (unit vector, alpha 1)",
        flush=True,
    )
    # Warm-up: first calls pay one-off costs (allocator, lazy init) that are not throughput.
    generate(model, prompts[:2], prompt_ids=pids[:2], max_new_tokens=2, steerings=steered)
    hf_generate(model.hf_model, tok, texts[:2], 2, 2)
    rates: dict[str, list[float]] = {k: [] for k in runs}
    outputs: dict[str, Any] = {}
    ceilings: list[Ceiling] = []
    for rep in range(args.repeats):
        ceilings.append(matmul_ceiling(model.hf_model, args.batch))
        print(
            f"  [{rep + 1}] matmul floor per token: decode {1e3 * ceilings[-1].decode:.2f} ms, "
            f"prefill {1e3 * ceilings[-1].prefill:.2f} ms",
            flush=True,
        )
        for name, fn in runs.items():
            secs, res = timed(fn)
            rows = [list(g.token_ids) for g in res] if name.startswith("engine") else res
            n_new = count_new(rows, eos)
            rates[name].append(n_new / secs)
            outputs[name] = rows
            print(
                f"  [{rep + 1}] {name:36s} {n_new:6d} tokens {secs:7.1f} s {n_new / secs:7.1f} tok/s",
                flush=True,
            )
    # Best of the repeats: on a shared machine the least disturbed run is the closest to the truth.
    best = {k: max(v) for k, v in rates.items()}
    result: dict[str, Any] = {
        "model": model.info.name, "device": device_name(args.device), "dtype": model.info.dtype,
        "prompts": len(prompts), "batch": args.batch, "new_tokens": args.new_tokens,
        "threads": args.threads, "repeats": args.repeats, "tok_per_s": best,
    }  # fmt: skip
    eng_u, eng_s = best["engine unsteered"], best["engine steered"]
    hf_p = best["HF generate, plain HF modules"]
    print(f"\nratios (best of {args.repeats} run(s) per method, tokens/s):")
    print(f"  (a) engine steered / HF generate, plain HF:      {eng_s / hf_p:.2f}x  (target >= 2)")
    print(
        f"  (b) hook overhead, engine unsteered / steered:   {100 * (eng_u / eng_s - 1):+.1f}%  (target <= 5%)"
    )
    zero = generate(
        model,
        prompts,
        prompt_ids=pids,
        max_new_tokens=args.new_tokens,
        batch_size=args.batch,
        steerings=[Steering("add", layer, v, 0.0)],
    )
    same = sum(
        list(g.token_ids) == r for g, r in zip(zero, outputs["engine unsteered"], strict=False)
    )
    print(f"  (c) alpha = 0 identical to unsteered:            {same}/{len(prompts)} prompts")
    result["alpha0_identical"] = same
    # The floor: the engine's own work (prompt tokens after the shared prefix, every new token)
    # costed at the matmul-only rate. Attention, norms, sampling and Python come on top.
    seqs = [encode(tok, t) for t in texts]
    n_prefill = sum(len(q) for q in seqs) - (len(seqs) - 1) * shared_prefix(seqs)
    n_new = count_new(outputs["engine steered"], eos)
    floor = Ceiling(min(c.decode for c in ceilings), min(c.prefill for c in ceilings))
    ceiling = n_new / floor.job_seconds(n_prefill, n_new)
    print(
        f"  (d) matmul-only ceiling for this job ({n_prefill} prompt tokens, {n_new} new): "
        f"{ceiling:.0f} tok/s; each method as a share of it:"
    )
    for name, rate in best.items():
        print(f"      {name:36s} {100 * rate / ceiling:5.1f}%")
    result["matmul_ceiling_tok_per_s"] = round(ceiling, 1)
    need = 100 * 2 * hf_p / ceiling
    print(
        f"      2x HF generate (plain HF) = {2 * hf_p:.0f} tok/s = {need:.0f}% of the ceiling"
        + (" (> 100%: out of reach at this precision and thread count)" if need > 100 else "")
    )
    hf_rows = [
        r[: next((j + 1 for j, t in enumerate(r) if t in eos), len(r))]
        for r in outputs["HF generate, plain HF modules"]
    ]
    agree = sum(a == b for a, b in zip(hf_rows, outputs["engine unsteered"], strict=False))
    print(f"  engine greedy tokens == HF generate (plain HF):  {agree}/{len(prompts)} prompts")
    result["engine_equals_hf"] = agree
    if not args.no_dtypes:
        result["bfloat16"] = compare_dtypes(args, model, prompts, pids, steered, eos,
                                            best["engine steered"], outputs["engine steered"],
                                            floor, n_prefill)  # fmt: skip
    if args.json is not None:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return 0 if same == len(prompts) else 1


def device_name(device: str) -> str:
    """'cpu', or the GPU's name (e.g. 'cuda (NVIDIA H200)')."""
    import torch

    return f"cuda ({torch.cuda.get_device_name()})" if device.startswith("cuda") else device


def compare_dtypes(
    args: Any, model: Any, prompts: list[str], pids: list[str], steered: list[Any],
    eos: set[int], fp32_rate: float, fp32_rows: list[list[int]], fp32_floor: Ceiling,
    n_prefill: int,
) -> dict[str, Any] | None:  # fmt: skip
    """(e) float32 vs bfloat16 in the same run, where the device multiplies bf16 natively."""
    from steering_reliability.generation import generate
    from steering_reliability.models import load
    from steering_reliability.models.precision import native_bf16

    if not native_bf16(args.device):
        print(f"  (e) bfloat16: this {args.device} has no native bf16 matmul: skipped")
        return None
    bf16 = load(args.model, dtype="bfloat16", device=args.device)

    def run() -> Any:
        return generate(bf16, prompts, prompt_ids=pids, max_new_tokens=args.new_tokens,
                        steerings=steered, batch_size=args.batch)  # fmt: skip

    generate(bf16, prompts[:2], prompt_ids=pids[:2], max_new_tokens=2, steerings=steered)
    rates, rows = [], []
    for _ in range(args.repeats):
        secs, gens = timed(run)
        rows = [list(g.token_ids) for g in gens]
        rates.append(count_new(rows, eos) / secs)
    rate = max(rates)
    floor = min((matmul_ceiling(bf16.hf_model, args.batch) for _ in range(args.repeats)),
                key=lambda c: c.decode)  # fmt: skip
    n_new = count_new(rows, eos)
    ceiling = n_new / floor.job_seconds(n_prefill, n_new)
    fp32_ceiling = count_new(fp32_rows, eos) / fp32_floor.job_seconds(
        n_prefill, count_new(fp32_rows, eos)
    )
    same = sum(a == b for a, b in zip(rows, fp32_rows, strict=True))
    first8 = sum(a[:8] == b[:8] for a, b in zip(rows, fp32_rows, strict=True))
    print(
        f"  (e) engine steered, bfloat16: {rate:.1f} tok/s = {rate / fp32_rate:.2f}x float32 "
        f"({fp32_rate:.1f}); matmul-only ceilings: bfloat16 {ceiling:.0f} tok/s, float32 "
        f"{fp32_ceiling:.0f} tok/s ({ceiling / fp32_ceiling:.2f}x)"
    )
    print(
        f"      greedy tokens identical to float32: {same}/{len(rows)} sequences; first 8 "
        f"tokens identical: {first8}/{len(rows)}"
    )
    return {"engine_steered_tok_per_s": round(rate, 1), "vs_float32": round(rate / fp32_rate, 2),
            "matmul_ceiling_tok_per_s": round(ceiling, 1), "identical_sequences": same,
            "identical_first8": first8}  # fmt: skip


if __name__ == "__main__":
    sys.exit(main())
