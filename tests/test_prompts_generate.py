"""The generator is deterministic, reproduces the committed sets, and builds a real shift."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from steering_reliability.errors import InputError
from steering_reliability.prompts import generate_sets, generate_split, load_prompts, make_sets
from steering_reliability.prompts.catalog_harm import TEST_TEMPLATES, TRAIN_TEMPLATES

DATA = Path(__file__).resolve().parents[1] / "data" / "prompts"
SIZES = {"harm_train": 150, "harm_test": 150, "benign": 200}
TEST_STYLES = {"slang", "indirect", "fiction", "hypothetical", "roleplay", "past_tense"}


@pytest.fixture(scope="module")
def committed() -> dict[str, tuple]:
    return {split: load_prompts(DATA / f"{split}.jsonl") for split in SIZES}


def test_the_generator_reproduces_the_committed_files_byte_for_byte(tmp_path: Path) -> None:
    paths = make_sets(tmp_path, n_train=150, n_test=150, n_benign=200, seed=0)
    assert sorted(p.name for p in paths) == sorted(f"{s}.jsonl" for s in SIZES)
    for path in paths:
        assert path.read_bytes() == (DATA / path.name).read_bytes(), (
            f"{path.name} differs from the committed file: run `make prompts` and commit"
        )
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")], "temp files left"


def test_same_seed_same_sets_other_seed_other_order() -> None:
    a = generate_sets(n_train=20, n_test=20, n_benign=20, seed=1)
    assert a == generate_sets(n_train=20, n_test=20, n_benign=20, seed=1)
    b = generate_sets(n_train=20, n_test=20, n_benign=20, seed=2)
    assert [p.prompt for p in a["harm_train"]] != [p.prompt for p in b["harm_train"]]


def test_committed_sizes_ids_and_labels(committed: dict[str, tuple]) -> None:
    for split, n in SIZES.items():
        prompts = committed[split]
        assert len(prompts) == n
        assert [p.id for p in prompts] == [f"{split}_{i:04d}" for i in range(1, n + 1)]
        for p in prompts:
            assert {"family", "style", "template"} <= set(p.meta), p
        assert len({p.prompt for p in prompts}) == n, f"repeated text in {split}"


def test_harm_test_shifts_style_template_and_subfamily_at_once(committed: dict[str, tuple]) -> None:
    train, test = committed["harm_train"], committed["harm_test"]
    assert {p.style for p in train} == {"direct"}
    assert {p.style for p in test} == TEST_STYLES
    assert {p.template for p in train} <= set(TRAIN_TEMPLATES)
    assert {p.template for p in test} <= {t for by in TEST_TEMPLATES.values() for t in by}
    train_sub = {p.meta["subfamily"] for p in train}
    assert not train_sub & {p.meta["subfamily"] for p in test}
    held_families = {p.family for p in test if p.meta["held_out"] == "family"}
    assert held_families and not held_families & {p.family for p in train}
    assert {p.meta["held_out"] for p in test} == {"family", "subfamily"}


def test_train_covers_the_required_families_evenly(committed: dict[str, tuple]) -> None:
    counts = Counter(p.family for p in committed["harm_train"])
    assert set(counts) >= {"weapons", "hacking", "fraud", "drugs", "theft", "harassment"}
    assert max(counts.values()) - min(counts.values()) <= 1


def test_benign_has_borderline_prompts_that_share_surface_words(
    committed: dict[str, tuple],
) -> None:
    benign = committed["benign"]
    assert {p.style for p in benign} == {"everyday", "borderline"}
    borderline = [p for p in benign if p.style == "borderline"]
    assert len(borderline) >= 60 and len({p.family for p in benign}) >= 12
    for p in borderline:
        assert p.meta["surface_word"].split()[0].lower() in p.prompt.lower(), p
    texts = " ".join(p.prompt for p in borderline)
    assert "kill a Python process" in texts and "shoot a portrait" in texts


ANSWER_MARKERS = re.compile(r"(?i)\bstep 1\b|^sure\b|here'?s how|^\s*\d+\.|\bfirst,\s")


def test_prompts_are_requests_only(committed: dict[str, tuple]) -> None:
    for prompts in committed.values():
        for p in prompts:
            assert len(p.prompt) < 240 and "\n" not in p.prompt, p
            assert not ANSWER_MARKERS.search(p.prompt), p


@pytest.mark.parametrize("n", [0, -1, 10_000, True])
def test_impossible_sizes_are_refused(n: int) -> None:
    with pytest.raises(InputError, match="cannot make"):
        generate_split("harm_train", n, seed=0)


def test_a_refused_size_writes_nothing(tmp_path: Path) -> None:
    with pytest.raises(InputError):
        make_sets(tmp_path, n_train=5, n_test=5, n_benign=100_000, seed=0)
    assert not list(tmp_path.iterdir())


def test_unknown_split_is_refused() -> None:
    with pytest.raises(InputError, match="unknown split"):
        generate_split("harm_val", 5, seed=0)
