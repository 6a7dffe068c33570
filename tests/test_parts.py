"""Select/report parts: seeded, stratified, disjoint; the direction never sees a report prompt."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from steering_reliability.config import load_config
from steering_reliability.prompts import Prompt
from steering_reliability.prompts.parts import PARTS, assign_parts
from steering_reliability.studies.shared import (
    direction_prompts,
    file_parts,
    select_prompts,
)

ROOT = Path(__file__).resolve().parents[1]


def _prompts(strata: list[tuple[str, str, int]]) -> list[Prompt]:
    out = []
    for family, style, n in strata:
        for i in range(n):
            out.append(
                Prompt(
                    f"{family}_{style}_{i:03d}", f"request {i}", {"family": family, "style": style}
                )
            )
    return out


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(st.sampled_from("abcd"), st.sampled_from("xyz"), st.integers(1, 9)),
        min_size=1,
        max_size=8,
        unique_by=lambda t: (t[0], t[1]),
    ),
    st.text(min_size=1, max_size=8),
)
def test_parts_are_balanced_within_every_stratum_and_overall(strata, seed) -> None:
    prompts = _prompts(strata)
    parts = assign_parts(prompts, seed)
    assert set(parts) == {p.id for p in prompts} and set(parts.values()) <= set(PARTS)
    total = Counter(parts.values())
    assert abs(total["select"] - total["report"]) <= 1
    for family, style, _n in strata:
        got = Counter(parts[p.id] for p in prompts if (p.family, p.style) == (family, style))
        assert abs(got["select"] - got["report"]) <= 1, (family, style, got)
    assert assign_parts(list(reversed(prompts)), seed) == parts  # order does not matter


def test_parts_depend_on_the_seed() -> None:
    prompts = _prompts([("a", "x", 40)])
    assert assign_parts(prompts, "0") != assign_parts(prompts, "1")


def test_the_fast_config_measures_both_parts_and_builds_the_direction_on_select_only() -> None:
    cfg = load_config(ROOT / "configs" / "fast.yaml")
    parts = file_parts(cfg)
    chosen = select_prompts(cfg)
    for split, prompts in chosen.items():
        counts = Counter(parts[split][p.id] for p in prompts)
        if split in cfg.prompts.benchmarks:  # a benchmark: its report part only
            assert counts["report"] == cfg.prompts.n_benchmark and not counts["select"]
            continue
        assert counts["select"] == counts["report"] == 12, (split, counts)
    used = direction_prompts(cfg)
    assert len(used) == cfg.prompts.n_direction
    assert all(parts["harm_train"][p.id] == "select" for p in used)
    report_train = {p.id for p in chosen["harm_train"] if parts["harm_train"][p.id] == "report"}
    assert report_train and not report_train & {p.id for p in used}
