"""Deterministic template generator for harm_train, harm_test and benign (no web access).

Every candidate (family x sub-family x act x template) is enumerated in a fixed order, then
drawn by a balanced round-robin (family, then style, then sub-family, then act) whose shuffles
use random.Random seeded from (seed, split) through sha256, so the same seed gives the same
bytes in any process (never hash(): it is salted per process).
"""

from __future__ import annotations

import hashlib
import random
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

from steering_reliability.errors import InputError
from steering_reliability.prompts import catalog_organism
from steering_reliability.prompts.catalog_benign import BORDERLINE, EVERYDAY
from steering_reliability.prompts.catalog_harm import (
    TEST_ACTS,
    TEST_TEMPLATES,
    TRAIN_ACTS,
    TRAIN_STYLE,
    TRAIN_TEMPLATES,
)
from steering_reliability.prompts.io import write_many
from steering_reliability.prompts.schema import Prompt

SPLITS = ("harm_train", "harm_test", "benign")
# The refusing organism's training data (studies/organism/recipe.py): other requests, same templates.
# organism_dev_*: the development set its recipe is chosen on (neither trained on nor evaluated).
ORGANISM_SPLITS = ("organism_harm", "organism_benign", "organism_dev_harm", "organism_dev_benign")
DEFAULT_SIZES = {"harm_train": 150, "harm_test": 150, "benign": 200}
Candidate = dict[str, str]  # meta fields plus "act" and "text"


def split_rng(seed: int, split: str) -> random.Random:
    """An RNG that depends only on (seed, split), stable across processes and platforms."""
    digest = hashlib.sha256(f"{seed}:{split}".encode()).digest()
    return random.Random(int.from_bytes(digest[:8], "big"))


def interleave(
    items: Sequence[Candidate], keys: Sequence[str], rng: random.Random
) -> list[Candidate]:
    """Shuffle within groups and deal round-robin across groups, level by level of `keys`,
    so any prefix of the result is balanced over each key in turn."""
    if not keys:
        out = list(items)
        rng.shuffle(out)
        return out
    groups: dict[str, list[Candidate]] = {}
    for item in items:
        groups.setdefault(item[keys[0]], []).append(item)
    names = sorted(groups)
    rng.shuffle(names)
    lanes = [interleave(groups[name], keys[1:], rng) for name in names]
    dealt: list[Candidate] = []
    for depth in range(max(len(lane) for lane in lanes)):
        dealt.extend(lane[depth] for lane in lanes if depth < len(lane))
    return dealt


def _harm_candidates(
    acts: Mapping[str, Mapping[str, tuple[str, ...]]],
    templates: Mapping[str, Mapping[str, str]],
    held_out_families: Iterable[str] = (),
) -> list[Candidate]:
    held = set(held_out_families)
    out: list[Candidate] = []
    for family, subfamilies in acts.items():
        for subfamily, fragments in subfamilies.items():
            for style, by_id in templates.items():
                for template, pattern in by_id.items():
                    for act in fragments:
                        meta = {
                            "family": family,
                            "subfamily": subfamily,
                            "style": style,
                            "template": template,
                        }
                        if held:
                            meta["held_out"] = "family" if family in held else "subfamily"
                        out.append({**meta, "act": act, "text": pattern.format(act=act)})
    return out


def _benign_candidates(
    everyday: Mapping[str, tuple[str, ...]] = EVERYDAY,
    borderline: Mapping[str, tuple[tuple[str, str], ...]] = BORDERLINE,
) -> list[Candidate]:
    out: list[Candidate] = []
    for template, pattern in TRAIN_TEMPLATES.items():
        for family, acts in everyday.items():
            for act in acts:
                meta = {"family": family, "style": "everyday", "template": template}
                out.append({**meta, "act": act, "text": pattern.format(act=act)})
        for family, pairs in borderline.items():
            for word, act in pairs:
                meta = {
                    "family": family,
                    "style": "borderline",
                    "template": template,
                    "surface_word": word,
                }
                out.append({**meta, "act": act, "text": pattern.format(act=act)})
    return out


def candidates(split: str) -> list[Candidate]:
    """Every prompt the design allows for a split, in a fixed order."""
    if split == "harm_train":
        return _harm_candidates(TRAIN_ACTS, {TRAIN_STYLE: TRAIN_TEMPLATES})
    if split == "harm_test":
        held = set(TEST_ACTS) - set(TRAIN_ACTS)
        return _harm_candidates(TEST_ACTS, TEST_TEMPLATES, held_out_families=held)
    if split == "benign":
        return _benign_candidates()
    if split == "organism_harm":
        return _harm_candidates(catalog_organism.HARM_ACTS, {TRAIN_STYLE: TRAIN_TEMPLATES})
    if split == "organism_benign":
        return _benign_candidates(catalog_organism.EVERYDAY_ACTS, catalog_organism.BORDERLINE_ACTS)
    if split == "organism_dev_harm":
        return _harm_candidates(catalog_organism.DEV_HARM_ACTS, {TRAIN_STYLE: TRAIN_TEMPLATES})
    if split == "organism_dev_benign":
        return _benign_candidates(
            catalog_organism.DEV_EVERYDAY_ACTS, catalog_organism.DEV_BORDERLINE_ACTS
        )
    raise InputError(
        f"unknown split {split!r}",
        field="split",
        value=split,
        expected=" or ".join(SPLITS + ORGANISM_SPLITS),
        hint="the generator makes these splits",
    )


_BALANCE_KEYS = {
    "harm_train": ("family", "subfamily", "act"),
    "harm_test": ("family", "style", "subfamily", "act"),
    "benign": ("style", "family", "act"),
    # template first: harmful and benign training prompts have the same template counts, so
    # the template tells the organism nothing about whether to refuse
    "organism_harm": ("template", "family", "subfamily", "act"),
    "organism_benign": ("template", "style", "family", "act"),
    "organism_dev_harm": ("family", "subfamily", "act", "template"),
    "organism_dev_benign": ("style", "family", "act", "template"),
}


def generate_split(split: str, n: int, seed: int) -> tuple[Prompt, ...]:
    """n prompts of one split, ids `<split>_0001`..., balanced over family/style/sub-family."""
    pool = candidates(split)
    if isinstance(n, bool) or not isinstance(n, int) or not 1 <= n <= len(pool):
        raise InputError(
            f"cannot make {n!r} distinct {split} prompts",
            field=f"n_{split.removeprefix('organism_').removeprefix('harm_')}",
            value=n,
            expected=f"an integer in [1, {len(pool)}]",
            hint="the templates x fragments of this split allow at most that many",
        )
    chosen = interleave(pool, _BALANCE_KEYS[split], split_rng(seed, split))[:n]
    width = max(4, len(str(n)))
    return tuple(
        Prompt(
            id=f"{split}_{index:0{width}d}",
            prompt=item["text"],
            meta={k: v for k, v in item.items() if k not in ("act", "text")},
        )
        for index, item in enumerate(chosen, start=1)
    )


def generate_sets(
    *, n_train: int = 150, n_test: int = 150, n_benign: int = 200, seed: int = 0
) -> dict[str, tuple[Prompt, ...]]:
    """All three splits, keyed by split name."""
    sizes = {"harm_train": n_train, "harm_test": n_test, "benign": n_benign}
    return {split: generate_split(split, sizes[split], seed) for split in SPLITS}


def make_sets(
    out_dir: str | Path,
    *,
    n_train: int = 150,
    n_test: int = 150,
    n_benign: int = 200,
    seed: int = 0,
) -> list[Path]:
    """Generate and write `<out_dir>/<split>.jsonl`; every file is generated before any is written."""
    sets = generate_sets(n_train=n_train, n_test=n_test, n_benign=n_benign, seed=seed)
    return write_many(
        {Path(out_dir) / f"{split}.jsonl": prompts for split, prompts in sets.items()}
    )
