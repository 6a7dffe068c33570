"""Select and report parts: every prompt set is split once, seeded and stratified by family x
style, into a part where choices are made (operating point, best layer, thresholds) and a part
the headline numbers are reported on (VALIDITY.md section 1)."""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence

from steering_reliability.prompts.schema import Prompt

PARTS: tuple[str, ...] = ("select", "report")


def assign_parts(prompts: Sequence[Prompt], seed: str) -> dict[str, str]:
    """prompt id -> "select" or "report": a seeded half/half split stratified by family x style.

    Within each (family, style) stratum the prompts are shuffled and dealt alternately, the
    first card going to whichever part is smaller so far, so every stratum and the whole set are
    split as evenly as their sizes allow. Depends only on the prompts and the seed string.
    """
    strata: dict[tuple[str, str], list[Prompt]] = {}
    for p in prompts:
        strata.setdefault((p.family, p.style), []).append(p)
    rng = random.Random(seed)
    parts: dict[str, str] = {}
    count = dict.fromkeys(PARTS, 0)
    for key in sorted(strata):
        group = sorted(strata[key], key=lambda p: p.id)
        rng.shuffle(group)
        first = min(PARTS, key=lambda part: (count[part], PARTS.index(part)))
        order = (first, *(x for x in PARTS if x != first))
        for i, p in enumerate(group):
            part = order[i % 2]
            parts[p.id] = part
            count[part] += 1
    return parts


def sample_parts(
    prompts: tuple[Prompt, ...], parts: Mapping[str, str], n: int | None, seed: str
) -> tuple[Prompt, ...]:
    """n prompts (None: all), half from each part (select, report), each half a seeded sample
    (`{seed}:{part}`); file order."""
    if n is None or n >= len(prompts):
        return prompts
    chosen: set[str] = set()
    for k, part in enumerate(PARTS):
        pool = tuple(p for p in prompts if parts[p.id] == part)
        take = (n + 1) // 2 if k == 0 else n // 2
        chosen |= {p.id for p in sample_subset(pool, take, f"{seed}:{part}")}
    return tuple(p for p in prompts if p.id in chosen)


def sample_subset(prompts: tuple[Prompt, ...], n: int | None, seed: str) -> tuple[Prompt, ...]:
    """A seeded sample of n prompts kept in file order (str seeds are stable across processes)."""
    if n is None or n >= len(prompts):
        return prompts
    chosen = set(random.Random(seed).sample(range(len(prompts)), n))
    return tuple(p for i, p in enumerate(prompts) if i in chosen)
