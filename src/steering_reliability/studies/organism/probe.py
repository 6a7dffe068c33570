"""`python -m steering_reliability.studies.organism.probe [--steps N] [--threads N]`:
what decides the organism's bytes on this machine, in a minute instead of a build.

Trains the registered recipe for a few steps on its base model (the first 8 x steps harmful and
benign training prompts, every one answered with its seeded refusal wording: a numerics probe,
not the recipe's data) and prints the kernel family beside the sha256 of the trained weights.
Run it twice with one thing changed (the thread count, ATEN_CPU_CAPABILITY,
MKL_ENABLE_INSTRUCTIONS, ONEDNN_MAX_CPU_ISA, set before Python starts): where the hash changes,
that thing decides the bytes and belongs in the key (docs/organism.md, "One key, one set of
weights").
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import time
from collections.abc import Sequence

import torch

from steering_reliability.models.formatting import encode_prompt, format_prompt
from steering_reliability.models.loader import load
from steering_reliability.models.registry import ORGANISMS
from steering_reliability.studies.organism.recipe import (
    Example,
    recipe_for,
    refusal_for,
    training_prompts,
)
from steering_reliability.studies.organism.train import (
    finetune,
    kernel_family,
    training_precision,
)


def state_sha256(model: torch.nn.Module) -> str:
    """sha256 over the state dict's names and bytes, in name order."""
    h = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        h.update(name.encode())
        h.update(tensor.detach().contiguous().numpy().tobytes())
    return h.hexdigest()


def probe(name: str, steps: int, precision: str) -> dict[str, object]:
    """Train `steps` batches of the recipe of organism `name` and describe the result."""
    recipe = recipe_for(name)
    base = load(recipe.base, dtype="float32")
    tok = base.tokenizer
    harm, pool = training_prompts(recipe)
    data = [
        Example(
            tuple(encode_prompt(tok, format_prompt(tok, p.prompt))),
            (*tok(refusal_for(p, recipe.seed), add_special_tokens=False).input_ids,
             tok.eos_token_id),
        )
        for p in [*harm[: 8 * steps], *pool[: 8 * steps]]
    ]  # fmt: skip
    t0 = time.perf_counter()
    model, log = finetune(base.hf_model, data, dataclasses.replace(recipe, epochs=1),
                          pad_id=tok.pad_token_id, progress=False, precision=precision)  # fmt: skip
    return {
        "kernel_family": kernel_family(precision),
        "precision": precision,
        "steps": log["steps"],
        "loss_last_epoch": log["loss_last_epoch"],
        "weights_sha256": state_sha256(model),
        "seconds": round(time.perf_counter() - t0, 1),
    }


def main(argv: Sequence[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    parser = argparse.ArgumentParser(prog="python -m steering_reliability.studies.organism.probe",
                                     description=__doc__.split("\n\n")[0])  # fmt: skip
    parser.add_argument("name", nargs="?", default=next(iter(ORGANISMS)), choices=sorted(ORGANISMS))
    parser.add_argument("--steps", type=int, default=2, help="training steps (batches of 16)")
    parser.add_argument(
        "--threads", type=int, default=None, help="torch threads (default: torch's)"
    )
    parser.add_argument("--precision", choices=("float32", "bfloat16 autocast"), default=None,
                        help="default: what a build trains in on this CPU")  # fmt: skip
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    print(json.dumps(probe(args.name, args.steps, args.precision or training_precision("cpu"))))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
