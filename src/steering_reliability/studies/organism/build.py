"""The organism's build: its content-addressed key, the folder in the weight cache that key
names, and `ensure`, which an experiment whose config names an organism calls first.

The folder (`<cache>/models/organism-<name>-<key>/`) holds the weights, card.json and card.md.
Nothing is committed; a rebuild with the same inputs is a cache hit.
"""

from __future__ import annotations

import dataclasses
import json
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steering_reliability.atomic import atomic_write_json, digest, publish_dir_once
from steering_reliability.errors import ModelLoadError
from steering_reliability.models.loader import (
    default_cache_dir,
    load,
    organism_folder,
    organism_pointer,
    weights_sha256,
)
from steering_reliability.prompts.schema import Prompt
from steering_reliability.studies.organism.card import evaluate, summarise, write_card
from steering_reliability.studies.organism.recipe import (
    Recipe,
    check_disjoint,
    default_eval_sets,
    dev_sets,
    examples,
    recipe_for,
    training_prompts,
)
from steering_reliability.studies.organism.train import (
    finetune,
    kernel_family,
    trained_blocks,
    training_precision,
)

RECIPE_VERSION = 5  # bump when the training, the key or the card changes what a key's folder holds


@dataclass(frozen=True)
class Organism:
    name: str
    path: Path
    card: dict[str, Any]

    @property
    def usable(self) -> bool:
        return bool(self.card["accepted"] or self.card.get("accepted_weak"))

    def failures(self) -> list[str]:
        return [f"{c['name']} {c['value']:.3f} (target {c['target']})"
                for c in self.card["acceptance"] if not c["passed"]]  # fmt: skip


def _prompt_digest(prompts: Sequence[Prompt]) -> str:
    return digest([[p.id, p.prompt] for p in prompts], 16)


def build(
    name: str,
    *,
    recipe: Recipe | None = None,
    base: Any = None,
    eval_sets: Mapping[str, Sequence[Prompt]] | None = None,
    cache_dir: str | Path | None = None,
    accept_weak: bool = False,
    progress: bool = False,
) -> Organism:
    """The organism `name`: from the weight cache when its key is there, else built (then cached).

    `recipe`, `base` (a LoadedModel) and `eval_sets` default to the registered recipe, its base
    model and the committed evaluation sets; tests pass a tiny model and small sets.
    """
    t0 = time.perf_counter()
    recipe = recipe or recipe_for(name)
    eval_sets = dict(eval_sets or default_eval_sets())
    cache = Path(cache_dir) if cache_dir is not None else default_cache_dir()
    harm, benign = training_prompts(recipe)
    dev = dev_sets(recipe)
    # the base's weights hash names the organism; the base itself is loaded only to build it
    base_sha = base.info.weights_sha256 if base is not None else weights_sha256(recipe.base, cache)
    prompts = {
        "train": _prompt_digest(harm + benign),
        "eval": {s: _prompt_digest(p) for s, p in eval_sets.items()},
        "dev": {s: _prompt_digest(p) for s, p in dev.items()},
    }
    device = next(base.hf_model.parameters()).device.type if base is not None else "cpu"
    precision = training_precision(device)
    kernels = kernel_family(precision, device)  # with the precision, what decides the bytes
    key = digest(
        {"version": RECIPE_VERSION, "recipe": dataclasses.asdict(recipe), "base": base_sha,
         "precision": precision, "kernels": kernels} | prompts
    )  # fmt: skip

    def fill(folder: Path) -> None:
        say = print if progress else (lambda *a, **k: None)
        say(f"building the model organism {name} (key {key}) from {recipe.base}, "
            f"in {precision} on {kernels}")  # fmt: skip
        check_disjoint(harm + benign, {**eval_sets, **dev})
        check_disjoint(
            [p for ps in dev.values() for p in ps], eval_sets, what="organism development prompts"
        )
        start = load(recipe.base, dtype="float32", cache_dir=cache) if base is None else base
        trained_blocks(start.hf_model, recipe)  # said before the base answers its pool
        data, unhelpful = examples(start, recipe, harm, benign, cache_dir=cache, progress=progress)
        tok = start.tokenizer
        model, log = finetune(start.hf_model, data, recipe, pad_id=tok.pad_token_id,
                              progress=progress, precision=precision)  # fmt: skip
        model.save_pretrained(folder)
        tok.save_pretrained(folder)
        del model
        organism = load(str(folder), dtype="float32", cache_dir=cache)  # as a user will load it
        say("evaluating the organism and its base on the held-out evaluation sets")
        held_out = {**eval_sets, **dev}
        mine = evaluate(organism, held_out, recipe, cache_dir=cache, progress=progress)
        theirs = evaluate(start, held_out, recipe, cache_dir=cache, progress=progress)
        card = {
            "name": name,
            "key": key,
            "recipe_version": RECIPE_VERSION,
            "recipe": dataclasses.asdict(recipe),
            "base": {"name": start.info.name, "weights_sha256": base_sha},
            "weights_sha256": organism.info.weights_sha256,
            "kernel_family": kernels,
            "data": {
                "n_harm": len(harm),
                "n_benign": recipe.n_benign,
                "benign_pool": len(benign),
                "benign_unhelpful_base_answers_skipped": unhelpful,
                "train_prompts": prompts["train"],
                "eval_prompts": prompts["eval"],
                "dev_prompts": prompts["dev"],
                "leaking_pairs": 0,
            },
            "training": log,
            **summarise(mine, theirs, recipe),
            "accepted_weak": False,
            "build_seconds": round(time.perf_counter() - t0, 1),
        }
        write_card(folder, card)

    final = cache / "models" / f"organism-{name}-{key}"
    publish_dir_once(final, fill, marker="card.json")
    card = json.loads((final / "card.json").read_text())
    if accept_weak and not card["accepted"] and not card.get("accepted_weak"):
        card["accepted_weak"] = True
        write_card(final, card)
    # the loader finds the organism of the current recipe through this pointer
    atomic_write_json(organism_pointer(name, cache), {"folder": final.name, "key": key})
    return Organism(name, final, card)


def ensure(name: str, cache_dir: Path) -> Path:
    """The folder of a usable organism for the loader (built on first use); ModelLoadError
    when it misses its acceptance targets and was not accepted as weak."""
    found = build(name, cache_dir=cache_dir, progress=True)
    if not found.usable:
        raise ModelLoadError(
            f"the model organism {name} misses its acceptance targets: "
            f"{'; '.join(found.failures())} (card: {found.path / 'card.md'}). "
            f"To use it anyway: make organism ORGANISM_ARGS=--accept-weak"
        )
    return found.path


def run_input(name: str, folder: Path) -> dict[str, str]:
    """The organism in `folder` as one of a run's inputs: its weights' sha256, read from its
    card (the model is not loaded), under a name that says which organism it is."""
    card = json.loads((folder / "card.json").read_text(encoding="utf-8"))
    return {f"organism:{name}": card["weights_sha256"]}


def run_inputs(name: str, cache_dir: Path, *, build_missing: bool = True) -> dict[str, str]:
    """{"organism:<name>": its weights' sha256} for a run whose config names the organism.

    The weights are an input of the run beside its prompt files, so a run recorded on other
    weights is never added to: `--resume auto` starts a new run, `--run-id` is refused with the
    difference named. `build_missing`: make sure of the organism first (`ensure`: built if
    missing, refused if it misses its targets), as the controller does before it plans the run;
    otherwise only locate it, {} when none is built (collect-only; xdist workers, for which the
    controller has built it)."""
    if build_missing:
        return run_input(name, ensure(name, cache_dir))
    try:
        return run_input(name, organism_folder(name, cache_dir))
    except ModelLoadError:
        return {}
