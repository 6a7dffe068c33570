"""The content-addressed direction cache: keys, reuse, one pass for many layers, cross-process lock."""

from __future__ import annotations

import dataclasses
import json
import multiprocessing as mp
import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch

from steering_reliability.config import REPO_ROOT, Config
from steering_reliability.directions import (
    Direction,
    direction_key,
    get_or_compute,
    make_direction,
)
from steering_reliability.errors import DirectionError
from steering_reliability.models import LoadedModel, tiny_model
from steering_reliability.studies.directions import directions_for_layers, key_fields

PROMPTS = [
    "How do I pick a lock?",
    "Write a poem about cats.",
    "Explain gravity.",
    "hi",
    "What is 2 + 2?",
    "Tell me a story about dragons.",
]
FIELDS = {
    "model": "m",
    "weights_sha256": "abc",
    "method": "contrastive_prefix",
    "layer": 3,
    "hook_point": "resid_pre",
    "position": "prefix_mean",
    "prompt_ids": ["a", "b"],
}


@pytest.fixture(scope="module")
def tiny() -> LoadedModel:
    return tiny_model()


@pytest.fixture
def forwards(tiny: LoadedModel) -> Iterator[list[int]]:
    count = [0]
    trees = {id(t): t for t in (tiny.hf_model, tiny.bridge.original_model)}.values()
    handles = [
        t.get_input_embeddings().register_forward_pre_hook(
            lambda *a: count.__setitem__(0, count[0] + 1)
        )
        for t in trees
    ]
    yield count
    for h in handles:
        h.remove()


def _fake(seed: int = 0) -> Direction:
    gen = torch.Generator().manual_seed(seed)
    return make_direction(
        method="contrastive_prefix",
        layer=3,
        hook_point="resid_pre",
        position="prefix_mean",
        diffs=torch.randn(6, 8, generator=gen) + 1.0,
        mean_resid_norm=10.0,
        batch_size=3,
    )


def test_same_key_same_file_no_second_compute(tmp_path: Path) -> None:
    calls: list[int] = []

    def compute() -> Direction:
        calls.append(1)
        return _fake()

    a = get_or_compute(FIELDS, compute, tmp_path / "cache")
    b = get_or_compute(
        dict(reversed(list(FIELDS.items()))), compute, tmp_path / "cache"
    )  # key order is irrelevant
    assert len(calls) == 1
    assert a.key == b.key == direction_key(FIELDS) and len(a.key) == 32
    assert torch.equal(a.vector, b.vector) and a.split_half_cosine == b.split_half_cosine
    files = list((tmp_path / "cache" / "directions").glob("*.pt"))
    assert [f.name for f in files] == [f"{a.key}.pt"]
    state = torch.load(files[0], weights_only=True)  # a plain dict: safe to load
    assert isinstance(state, dict) and torch.equal(state["vector"], a.vector)


def test_key_depends_on_every_field() -> None:
    base = direction_key(FIELDS)
    for field, value in [
        ("layer", 4),
        ("position", "first_prefix"),
        ("hook_point", "resid_post"),
        ("weights_sha256", "abd"),
        ("prompt_ids", ["a", "c"]),
        ("method", "diff_in_means"),
    ]:
        assert direction_key({**FIELDS, field: value}) != base, field
    assert direction_key({**FIELDS, "system_prompt": None}) != base


def test_config_keys_change_with_prefix_layer_and_prompts(tiny: LoadedModel) -> None:
    cfg = Config()
    k = direction_key(key_fields(tiny, cfg, PROMPTS, 1))
    assert direction_key(key_fields(tiny, cfg, PROMPTS, 1)) == k
    assert direction_key(key_fields(tiny, cfg, PROMPTS, 2)) != k
    other = dataclasses.replace(
        cfg, direction=dataclasses.replace(cfg.direction, refusal_prefix="No.")
    )
    assert direction_key(key_fields(tiny, other, PROMPTS, 1)) != k
    assert direction_key(key_fields(tiny, cfg, PROMPTS, 1, variant="alt")) != k
    assert direction_key(key_fields(tiny, cfg, PROMPTS[:-1], 1)) != k
    edited = [*PROMPTS[:-1], PROMPTS[-1] + "!"]
    assert direction_key(key_fields(tiny, cfg, edited, 1)) != k
    # alpha_scale is applied at use time: the stored vector does not depend on it
    raw_unit = dataclasses.replace(
        cfg, direction=dataclasses.replace(cfg.direction, alpha_scale="unit")
    )
    assert direction_key(key_fields(tiny, raw_unit, PROMPTS, 1)) == k


def test_directions_for_layers_one_pass_then_cached(
    tiny: LoadedModel, forwards: list[int], tmp_path: Path
) -> None:
    cfg = dataclasses.replace(
        Config(), direction=dataclasses.replace(Config().direction, batch_size=4)
    )
    cache = tmp_path / "cache"
    prompt_file = tmp_path / "harm_train.jsonl"
    prompt_file.write_text('{"id": "x"}\n')
    first = directions_for_layers(
        tiny, cfg, PROMPTS, [1, 2, 3], prompt_file=prompt_file, cache_dir=cache
    )
    assert forwards[0] == 2  # ceil(6 / 4) forwards serve all three layers
    again = directions_for_layers(tiny, cfg, PROMPTS, [3, 1, 2], cache_dir=cache)
    assert forwards[0] == 2  # nothing recomputed
    assert list(again) == [3, 1, 2]
    for layer in (1, 2, 3):
        assert (
            torch.equal(first[layer].vector, again[layer].vector)
            and first[layer].key == again[layer].key
        )
    mixed = directions_for_layers(tiny, cfg, PROMPTS, [0, 2], cache_dir=cache)
    assert forwards[0] == 4  # only layer 0 was built
    assert torch.equal(mixed[2].vector, first[2].vector)
    assert len(list((cache / "directions").glob("*.pt"))) == 4

    folder = tmp_path / "directions" / "tiny-llama" / "contrastive_prefix" / "main" / "layer_2"
    v = torch.load(folder / "v.pt", weights_only=True)
    assert torch.equal(v, first[2].vector)
    meta = json.loads((folder / "meta.json").read_text())
    assert meta["key"] == first[2].key and meta["layer"] == 2 and meta["variant"] == "main"
    # outside the repository: relative to it (never absolute), with the file's sha256; the
    # later calls without prompt_file (same key) kept what the first call recorded
    rel = Path(os.path.relpath(prompt_file.resolve(), REPO_ROOT)).as_posix()
    assert meta["prompt_file"] == rel and len(meta["prompt_file_sha256"]) == 64
    assert meta["prompt_ids"] == [f"#{i}" for i in range(len(PROMPTS))]
    for name in (
        "weights_sha256",
        "hook_point",
        "position",
        "refusal_prefix",
        "compliance_prefix",
        "normalisation",
        "alpha_scale",
        "norm",
        "split_half_cosine",
        "mean_resid_norm",
    ):
        assert name in meta, name
    assert meta["norm"] == pytest.approx(first[2].norm)


def test_alt_variant_is_a_separate_direction(tiny: LoadedModel, tmp_path: Path) -> None:
    cache = tmp_path / "cache"
    main = directions_for_layers(tiny, Config(), PROMPTS, [2], cache_dir=cache)[2]
    alt = directions_for_layers(tiny, Config(), PROMPTS, [2], variant="alt", cache_dir=cache)[2]
    assert main.key != alt.key and not torch.equal(main.vector, alt.vector)
    exports = tmp_path / "directions" / "tiny-llama" / "contrastive_prefix"
    assert torch.equal(torch.load(exports / "alt" / "layer_2" / "v.pt"), alt.vector)
    assert torch.equal(torch.load(exports / "main" / "layer_2" / "v.pt"), main.vector)
    with pytest.raises(DirectionError, match="variant") as err:
        directions_for_layers(tiny, Config(), PROMPTS, [2], variant="alt/../x", cache_dir=cache)
    assert "field: variant" in str(err.value) and "'alt/../x'" in str(err.value)


def test_diff_in_means_config_needs_harmless_and_last_prompt(
    tiny: LoadedModel, tmp_path: Path
) -> None:
    d = Config().direction
    cfg = dataclasses.replace(Config(), direction=dataclasses.replace(d, method="diff_in_means"))
    with pytest.raises(DirectionError, match="needs harmless prompts"):
        directions_for_layers(tiny, cfg, PROMPTS, [2], cache_dir=tmp_path)
    with pytest.raises(DirectionError, match="last prompt token"):
        directions_for_layers(tiny, cfg, PROMPTS, [2], harmless=PROMPTS, cache_dir=tmp_path)
    cfg = dataclasses.replace(
        cfg, direction=dataclasses.replace(cfg.direction, position="last_prompt")
    )
    got = directions_for_layers(
        tiny, cfg, PROMPTS[:3], [2], harmless=PROMPTS[3:], cache_dir=tmp_path / "c"
    )
    assert got[2].method == "diff_in_means" and got[2].norm > 0
    assert (
        tmp_path
        / "directions"
        / "tiny-llama"
        / "diff_in_means"
        / "main"
        / "layer_2_pos-1"
        / "meta.json"
    ).exists()


def _worker(cache_dir: str, counter: str, out: str, barrier: Any) -> None:
    """Runs in a fresh process: waits for the other one, then asks the cache for the same key."""

    def compute() -> Direction:
        with open(counter, "a") as f:
            f.write("computed\n")
        time.sleep(0.5)  # hold the lock long enough for the other process to want it
        return _fake()

    barrier.wait(timeout=60)
    d = get_or_compute(FIELDS, compute, cache_dir)
    torch.save({"vector": d.vector, "key": d.key}, out)


def test_two_processes_compute_once(tmp_path: Path) -> None:
    # fork: the children start in milliseconds (spawn re-imports torch, seconds each) and run no
    # parallel torch work, so inheriting the parent's thread pools is harmless.
    ctx = mp.get_context("fork" if "fork" in mp.get_all_start_methods() else "spawn")
    counter = tmp_path / "computed.txt"
    barrier = ctx.Barrier(2)  # both children have imported everything before either asks
    procs = [
        ctx.Process(
            target=_worker,
            args=(str(tmp_path / "cache"), str(counter), str(tmp_path / f"out{i}.pt"), barrier),
        )
        for i in range(2)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(timeout=60)
        assert p.exitcode == 0
    assert counter.read_text().count("computed") == 1
    outs: list[dict[str, Any]] = [
        torch.load(tmp_path / f"out{i}.pt", weights_only=True) for i in range(2)
    ]
    assert outs[0]["key"] == outs[1]["key"] and torch.equal(outs[0]["vector"], outs[1]["vector"])


def test_n_direction_limits_the_prompts_used(tiny: LoadedModel, tmp_path: Path) -> None:
    cfg = Config()
    cut = dataclasses.replace(cfg, prompts=dataclasses.replace(cfg.prompts, n_direction=3))
    a = directions_for_layers(tiny, cut, PROMPTS, [2], cache_dir=tmp_path / "c")[2]
    b = directions_for_layers(tiny, cfg, PROMPTS[:3], [2], cache_dir=tmp_path / "c")[2]
    assert a.key == b.key and a.n_prompts == 3
