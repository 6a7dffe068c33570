"""Direction exports that do not lie: one folder per variant, main is the sweep's direction,
meta.json names prompt files relative to the repository (with sha256) and holds no absolute path."""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from steering_reliability.config import REPO_ROOT, Config
from steering_reliability.directions import (
    Direction,
    check_variant,
    direction_key,
    get_or_compute,
    make_direction,
)
from steering_reliability.errors import DirectionError
from steering_reliability.models import LoadedModel, tiny_model
from steering_reliability.prompts import load_prompts
from steering_reliability.studies.directions import directions_for_layers, key_fields
from test_directions_cache import PROMPTS  # the same six prompts

HARM_TRAIN = REPO_ROOT / "data" / "prompts" / "harm_train.jsonl"
LAYER = 2


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return tiny_model()


def _exports(tmp_path: Path) -> Path:
    """The export root next to the cache folder tmp_path / "cache"."""
    return tmp_path / "directions" / "tiny-llama" / "contrastive_prefix"


def _meta(folder: Path) -> dict[str, Any]:
    meta: dict[str, Any] = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
    return meta


def _strings(x: Any) -> Iterator[str]:
    """Every string in a JSON value: keys and values, at any depth."""
    if isinstance(x, str):
        yield x
    elif isinstance(x, dict):
        for k, v in x.items():
            yield k
            yield from _strings(v)
    elif isinstance(x, list):
        for v in x:
            yield from _strings(v)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_main_export_is_the_main_direction_after_a_variant_at_the_same_layer(
    tiny: LoadedModel, tmp_path: Path
) -> None:
    """The seed-robustness case: a direction from half the prompts, built after the main one at
    the same layer, lands in its own folder and leaves main's export alone."""
    cache = tmp_path / "cache"
    main = directions_for_layers(tiny, Config(), PROMPTS, [LAYER], cache_dir=cache)[LAYER]
    half = directions_for_layers(
        tiny, Config(), PROMPTS[:3], [LAYER], variant="seed-half-0", cache_dir=cache
    )[LAYER]
    assert half.key != main.key and not torch.equal(half.vector, main.vector)

    main_dir = _exports(tmp_path) / "main" / f"layer_{LAYER}"
    half_dir = _exports(tmp_path) / "seed-half-0" / f"layer_{LAYER}"
    assert torch.equal(torch.load(main_dir / "v.pt", weights_only=True), main.vector)
    assert _meta(main_dir)["key"] == main.key and _meta(main_dir)["n_prompts"] == len(PROMPTS)
    assert torch.equal(torch.load(half_dir / "v.pt", weights_only=True), half.vector)
    assert _meta(half_dir)["key"] == half.key and _meta(half_dir)["variant"] == "seed-half-0"

    # the same prompts under a free label: another key and folder, the main prefixes
    same = directions_for_layers(
        tiny, Config(), PROMPTS, [LAYER], variant="random-3", cache_dir=cache
    )[LAYER]
    assert same.key != main.key and torch.equal(same.vector, main.vector)
    assert torch.equal(torch.load(main_dir / "v.pt", weights_only=True), main.vector)


def test_free_labels_keep_the_main_prefixes_alt_changes_them(tiny: LoadedModel) -> None:
    cfg = Config()
    main = key_fields(tiny, cfg, PROMPTS, LAYER)
    label = key_fields(tiny, cfg, PROMPTS, LAYER, variant="seed-half-1")
    alt = key_fields(tiny, cfg, PROMPTS, LAYER, variant="alt")
    assert label["refusal_prefix"] == main["refusal_prefix"] == cfg.direction.refusal_prefix
    assert label["compliance_prefix"] == main["compliance_prefix"]
    assert alt["refusal_prefix"] == cfg.direction.alt_refusal_prefix
    assert len({direction_key(main), direction_key(label), direction_key(alt)}) == 3


def test_meta_names_repo_files_relative_with_sha256_and_no_absolute_path(
    tiny: LoadedModel, tmp_path: Path
) -> None:
    prompts = load_prompts(HARM_TRAIN, split="harm_train")[:4]
    cache = tmp_path / "cache"
    d = directions_for_layers(
        tiny, Config(), prompts, [LAYER], prompt_file=HARM_TRAIN, cache_dir=cache
    )[LAYER]
    folder = _exports(tmp_path) / "main" / f"layer_{LAYER}"
    meta = _meta(folder)
    assert meta["prompt_file"] == "data/prompts/harm_train.jsonl"
    assert meta["prompt_file_sha256"] == _sha256(HARM_TRAIN)
    assert meta["prompt_ids"] == [p.id for p in prompts]
    absolute = [s for s in _strings(meta) if s.startswith("/") or os.path.isabs(s)]
    assert absolute == []
    # the cache file is named relative to the export folder (and by its key)
    assert d.key in meta["cache_file"]
    assert (folder / meta["cache_file"]).resolve() == (
        cache / "directions" / f"{d.key}.pt"
    ).resolve()


def test_prompt_file_outside_the_repo_is_never_absolute(tiny: LoadedModel, tmp_path: Path) -> None:
    outside = tmp_path / "elsewhere" / "my_prompts.jsonl"
    outside.parent.mkdir()
    outside.write_text('{"id": "x", "prompt": "hi"}\n', encoding="utf-8")
    directions_for_layers(
        tiny, Config(), PROMPTS, [LAYER], prompt_file=outside, cache_dir=tmp_path / "cache"
    )
    meta = _meta(_exports(tmp_path) / "main" / f"layer_{LAYER}")
    assert not meta["prompt_file"].startswith("/") and not os.path.isabs(meta["prompt_file"])
    assert meta["prompt_file"].endswith("my_prompts.jsonl")
    assert meta["prompt_file_sha256"] == _sha256(outside)
    assert [s for s in _strings(meta) if s.startswith("/")] == []


def test_prompt_file_is_not_null_once_a_caller_passed_it(tiny: LoadedModel, tmp_path: Path) -> None:
    """Why it was null: an export is written once per key, and a first caller without the file
    (a notebook, a sanity check) left null that later callers with the file never replaced."""
    cache = tmp_path / "cache"
    folder = _exports(tmp_path) / "main" / f"layer_{LAYER}"
    first = directions_for_layers(tiny, Config(), PROMPTS, [LAYER], cache_dir=cache)[LAYER]
    assert _meta(folder)["prompt_file"] is None  # bare strings, no file: nothing to record
    elsewhere = tmp_path / "harm.jsonl"
    elsewhere.write_text("{}\n", encoding="utf-8")
    again = directions_for_layers(
        tiny, Config(), PROMPTS, [LAYER], prompt_file=elsewhere, cache_dir=cache
    )[LAYER]
    assert again.key == first.key
    assert _meta(folder)["prompt_file"].endswith("harm.jsonl")
    directions_for_layers(tiny, Config(), PROMPTS, [LAYER], cache_dir=cache)  # no file again
    assert _meta(folder)["prompt_file"].endswith("harm.jsonl")  # kept, not erased


def test_prompt_file_is_taken_from_the_config_when_it_holds_the_prompts(
    tiny: LoadedModel, tmp_path: Path
) -> None:
    """Callers that pass no file (the sanity checks, the smoke notebook) still get provenance
    when the prompts are, id and text, in the configured harm_train file."""
    prompts = load_prompts(HARM_TRAIN, split="harm_train")[1:5]
    directions_for_layers(
        tiny, Config(), prompts, [LAYER], variant="seed-half-0", cache_dir=tmp_path / "cache"
    )
    meta = _meta(_exports(tmp_path) / "seed-half-0" / f"layer_{LAYER}")
    assert meta["prompt_file"] == "data/prompts/harm_train.jsonl"
    assert meta["prompt_file_sha256"] == _sha256(HARM_TRAIN)


@pytest.mark.parametrize(
    "variant",
    ["", "../main", "a/b", "a\\b", "seed half", ".", "..", ".hidden", "-x", "x" * 65, "é", "Main"],
)
def test_unsafe_variant_names_are_refused(tiny: LoadedModel, tmp_path: Path, variant: str) -> None:
    with pytest.raises(DirectionError) as err:
        directions_for_layers(
            tiny, Config(), PROMPTS, [LAYER], variant=variant, cache_dir=tmp_path / "cache"
        )
    text = str(err.value)
    assert "variant" in text and "field: variant" in text and repr(variant) in text
    assert not (tmp_path / "cache" / "directions").exists()  # refused before anything was built


def test_check_variant_accepts_safe_names_and_refuses_non_strings() -> None:
    for ok in ("main", "alt", "seed-half-0", "random_3", "A1"):
        assert check_variant(ok) == ok
    with pytest.raises(DirectionError, match="field: variant"):
        check_variant(3)


def test_get_or_compute_refuses_an_unsafe_variant_field(tmp_path: Path) -> None:
    calls: list[int] = []

    def compute() -> Direction:
        calls.append(1)
        return make_direction(
            method="contrastive_prefix",
            layer=LAYER,
            hook_point="resid_pre",
            position="prefix_mean",
            diffs=torch.ones(4, 8),
            mean_resid_norm=1.0,
            batch_size=2,
        )

    fields = {"model": "m", "method": "contrastive_prefix", "layer": LAYER, "variant": "../x"}
    with pytest.raises(DirectionError, match="field: variant"):
        get_or_compute(fields, compute, tmp_path / "cache")
    assert calls == []
