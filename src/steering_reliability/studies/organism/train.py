"""The organism's fine-tune: the weighted answer-token loss, the trained blocks and the
training precision.

AdamW on the blocks from `train_from_layer` up (the embeddings and the blocks below stay as the
base has them, so the learned refusal must read features the base already computes there); the
loss is the next-token cross entropy over the answer tokens (prompt tokens are not trained on),
with an answer's first token, where it answers or refuses, weighted `first_token_weight`; bf16
autocast where the processor multiplies bf16 natively, fp32 elsewhere; seeded.
"""

from __future__ import annotations

import copy
import ctypes
import os
import time
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from steering_reliability.errors import InputError
from steering_reliability.models.loader import plain_checkpoint
from steering_reliability.models.precision import native_bf16
from steering_reliability.studies.organism.recipe import Example, Recipe


def _shared_prefix(seqs: Sequence[Sequence[int]], limit: int) -> int:
    """Length of the token prefix that every sequence starts with, at most `limit`."""
    n = 0
    while n < limit and all(s[n] == seqs[0][n] for s in seqs):
        n += 1
    return n


def _batch_loss(
    model: Any,
    batch: Sequence[Example],
    pad_id: int,
    autocast: bool,
    *,
    share_prefix: bool = True,
    first_token_weight: float = 1.0,
) -> Any:
    """Weighted mean next-token cross entropy over the batch's answer tokens (prompts are not
    trained on). Each answer's first token, where the model decides between answering and
    refusing, weighs `first_token_weight`; every other token weighs 1.

    The prefix every sequence of the batch starts with (the chat template's system prompt, about
    half of each sequence) runs once, and the rest of the batch attends to its keys and values;
    the gradient flows back through them, so loss and gradients are those of the whole batch
    run row by row (a test compares them in float32; under bf16 autocast they agree to bf16's
    rounding)."""
    seqs = [list(e.prompt_ids + e.answer_ids) for e in batch]
    width = max(len(s) for s in seqs)
    # the last prompt token's hidden state predicts the first answer token: keep it unshared
    shared = _shared_prefix(seqs, min(len(e.prompt_ids) for e in batch) - 1) if share_prefix else 0
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    rows: list[int] = []
    cols: list[int] = []
    targets: list[int] = []
    weights: list[float] = []
    for i, (e, s) in enumerate(zip(batch, seqs, strict=True)):
        ids[i, : len(s)] = torch.tensor(s)
        mask[i, : len(s)] = 1
        for t in range(len(e.prompt_ids), len(s)):  # the hidden state at t-1 predicts token t
            rows.append(i)
            cols.append(t - 1 - shared)
            targets.append(s[t])
            weights.append(first_token_weight if t == len(e.prompt_ids) else 1.0)
    dev = next(model.parameters()).device
    ids, mask = ids.to(dev), mask.to(dev)
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=autocast):
        cache = None
        if shared:
            cache = model.base_model(input_ids=ids[:1, :shared], use_cache=True).past_key_values
            cache.batch_repeat_interleave(len(seqs))
        hidden = model.base_model(
            input_ids=ids[:, shared:],
            attention_mask=mask,
            past_key_values=cache,
            use_cache=cache is not None,
        ).last_hidden_state
        logits = model.get_output_embeddings()(hidden[rows, cols])
    losses = F.cross_entropy(logits.float(), torch.tensor(targets, device=dev), reduction="none")
    w = torch.tensor(weights, device=dev)
    return (losses * w).sum() / w.sum()


def trained_blocks(hf_model: Any, recipe: Recipe) -> Any:
    """The model's blocks; InputError when `train_from_layer` would leave none to train."""
    blocks = hf_model.base_model.layers
    if recipe.train_from_layer >= len(blocks):
        raise InputError(
            "the organism would train no block",
            field="train_from_layer",
            value=recipe.train_from_layer,
            expected=f"a block index below the base model's {len(blocks)} blocks",
        )
    return blocks


def training_precision(device: str = "cpu") -> str:
    """What `finetune` trains in on `device`: bf16 autocast on a CPU that multiplies bf16 in
    hardware, fp32 elsewhere. Part of the cache key: the two give different weights."""
    return "bfloat16 autocast" if device == "cpu" and native_bf16("cpu") else "float32"


# mkl_serv_cpu_detect's answers, seen with torch 2.13's MKL 2024.2 under MKL_ENABLE_INSTRUCTIONS
_MKL_PATHS = {3: "SSE4.2", 5: "AVX2", 7: "AVX-512"}


def _mkl_path() -> str:
    """The code path MKL's fp32 GEMM dispatches to, as MKL itself answers (its CPU detection,
    which honours MKL_ENABLE_INSTRUCTIONS), read from the symbol libtorch_cpu exports."""
    if not torch.backends.mkl.is_available():
        return "no MKL"
    for lib in sorted((Path(torch.__file__).parent / "lib").glob("libtorch_cpu.*")):
        try:
            detect = ctypes.CDLL(str(lib)).mkl_serv_cpu_detect
        except (OSError, AttributeError):
            continue
        detect.restype = ctypes.c_int
        code = int(detect())
        return f"MKL {_MKL_PATHS.get(code, f'path {code}')}"
    cap = os.environ.get("MKL_ENABLE_INSTRUCTIONS")  # no answer from MKL: say what we know
    return f"MKL path unknown (MKL_ENABLE_INSTRUCTIONS={cap})" if cap else "MKL path unknown"


def _bf16_matmul() -> str:
    """Where bf16 matmuls run under autocast: oneDNN on AMX, on AVX-512 BF16, or emulated
    (bf16 converted around fp32 arithmetic), or ATen's own kernel where oneDNN takes none."""
    if not torch.ops.mkldnn._is_mkldnn_bf16_supported():
        return "bf16 matmul ATen"
    if torch.cpu._is_amx_tile_supported():
        isa = "AMX"
    elif torch.cpu._is_avx512_bf16_supported():
        isa = "AVX-512 BF16"
    else:
        isa = "emulated"
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA") or os.environ.get("DNNL_MAX_CPU_ISA")
    return f"bf16 matmul oneDNN {isa}" + (f" (capped at {cap})" if cap else "")


def kernel_family(precision: str, device: str = "cpu") -> str:
    """What, beside the recipe and the precision, decides the bytes a fine-tune writes: the
    library versions, the instruction set ATen's kernels dispatch to, the matmul library's code
    path and the thread count (each one changed the weights of the same recipe on one machine:
    docs/organism.md). Part of the cache key, so that one key stands for one set of weights."""
    versions = f"torch {torch.__version__}; transformers {version('transformers')}"
    if device != "cpu":
        return f"{versions}; {device} {torch.cuda.get_device_name(device)}"
    parts = [versions, f"ATen {torch.backends.cpu.get_cpu_capability()}", _mkl_path()]
    if precision != "float32":
        parts.append(_bf16_matmul())
    threads = torch.get_num_threads()
    return "; ".join([*parts, f"{threads} thread{'s' if threads != 1 else ''}"])


def finetune(
    base_hf: Any,
    data: Sequence[Example],
    recipe: Recipe,
    *,
    pad_id: int,
    progress: bool,
    precision: str | None = None,
) -> tuple[Any, dict[str, Any]]:
    """A fine-tuned copy of `base_hf` (the base is left untouched) and the training log.
    `precision`: `training_precision`'s answer, which `build` puts in the cache key (default:
    asked here, for the model's device)."""
    torch.manual_seed(recipe.seed)
    model = plain_checkpoint(copy.deepcopy(base_hf))
    blocks = trained_blocks(model, recipe)
    model.requires_grad_(recipe.train_from_layer == 0)
    if recipe.train_from_layer:
        for block in blocks[recipe.train_from_layer :]:
            block.requires_grad_(True)
        model.base_model.norm.requires_grad_(True)
    model.train()
    precision = precision or training_precision(next(model.parameters()).device.type)
    autocast = precision != "float32"
    trained = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.AdamW(trained, lr=recipe.lr, weight_decay=0.0)
    order = torch.Generator().manual_seed(recipe.seed)
    steps_per_epoch = -(-len(data) // recipe.batch_size)
    losses: list[float] = []
    t0 = time.perf_counter()
    with tqdm(
        total=recipe.epochs * steps_per_epoch, disable=not progress, desc="train", unit="step"
    ) as bar:
        for _ in range(recipe.epochs):
            perm = torch.randperm(len(data), generator=order).tolist()
            for b0 in range(0, len(perm), recipe.batch_size):
                loss = _batch_loss(
                    model,
                    [data[i] for i in perm[b0 : b0 + recipe.batch_size]],
                    pad_id,
                    autocast,
                    first_token_weight=recipe.first_token_weight,
                )
                loss.backward()
                torch.nn.utils.clip_grad_norm_(trained, 1.0)
                opt.step()
                opt.zero_grad(set_to_none=True)
                losses.append(loss.item())
                bar.set_postfix(loss=f"{losses[-1]:.3f}")
                bar.update(1)
    model.eval()
    model.requires_grad_(False)
    log = {
        "steps": len(losses),
        "loss_first_epoch": round(sum(losses[:steps_per_epoch]) / steps_per_epoch, 4),
        "loss_last_epoch": round(sum(losses[-steps_per_epoch:]) / steps_per_epoch, 4),
        "trained_parameters": sum(p.numel() for p in trained),
        "precision": precision,
        "threads": torch.get_num_threads(),
        "seconds": round(time.perf_counter() - t0, 1),
    }
    return model, log
