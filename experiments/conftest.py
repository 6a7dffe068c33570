"""Session fixtures of the experiments: model, prompts, directions, baseline. Thin by design.

The session fixtures are read-only: tests must not modify the model, the prompts or the
generations they hand out. Each xdist worker loads its own model; directions and the alpha = 0
baseline come from content-addressed caches on disk, computed once across workers under a lock.
"""

from __future__ import annotations

import os
from typing import Any

import pytest

from steering_reliability import behaviours
from steering_reliability.config import Config, sanity_layer, validate_for_model
from steering_reliability.errors import SteeringReliabilityError
from steering_reliability.generation.cache import cached_generate
from steering_reliability.metrics import refusal_token_ids
from steering_reliability.models import load
from steering_reliability.models.loader import card_of, check_model_name, default_cache_dir
from steering_reliability.models.registry import EMBEDDED, ORGANISMS
from steering_reliability.prompts.parts import PARTS
from steering_reliability.pytest_plugin import behaviour_marker, run_config
from steering_reliability.studies import check_inputs
from steering_reliability.studies.directions import directions_for_layers
from steering_reliability.studies.organism.build import ensure
from steering_reliability.studies.shared import (
    check_lengths,
    direction_prompts,
    file_parts,
    harmless_prompts,
    request_for,
    select_prompts,
    split_files,
)


def _config_at_collection(config: pytest.Config) -> Config:
    cfg: Config = run_config(config)
    return cfg


@pytest.hookimpl(trylast=True)
def pytest_configure(config: pytest.Config) -> None:
    """On the controller, before workers start or any model loads: what is knowable now stops
    the session once, with one message and exit code 4 (no traceback, no per-case errors): a bad
    config value, an unknown model, an unreadable or invalid prompt file, layers an embedded
    model lacks, and a model organism that misses its acceptance targets (built here first if
    it is not in the cache)."""
    for name, b in behaviours.registered().items():  # -m toxicity, on every process
        if name != "refusal":
            config.addinivalue_line("markers", f"{name}: {behaviour_marker(name, b.description)}")
    if hasattr(config, "workerinput") or config.option.help or config.option.version:
        return

    try:
        cfg = _config_at_collection(config)
        check_model_name(cfg.model.name)
        select_prompts(cfg)  # reads and validates every prompt file
        check_inputs(cfg)  # each study's own files (a behaviour's sets and pairs, the CE text)
        known = EMBEDDED.get(cfg.model.name)
        if known is not None and known.n_layers is not None:
            validate_for_model(cfg, model_name=known.name, n_layers=known.n_layers)
        if cfg.model.name in ORGANISMS and not config.option.collectonly:
            # built here, once, with every core, before the workers load it; one that missed
            # its acceptance targets (and was not kept with --accept-weak) stops the session
            ensure(cfg.model.name, default_cache_dir())
    except (SteeringReliabilityError, pytest.UsageError) as exc:
        raise pytest.UsageError(str(exc)) from None


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> Any:
    """A baseline (a case marked `records_baseline(name)`) is recorded once, and the cases that
    read it (marked `needs_baseline(name)`, or using the `baseline` fixture: refusal's) are
    compared with it: a selection (`-k layer12`, `-m sanity`) that keeps such a case keeps the
    baseline cases too (their generations are cached, so this costs seconds once they exist).
    A test parametrized over an empty list (a config that lists no behaviour) is deselected."""
    placeholders = [i for i in items if _empty_parameter_set(i)]
    if placeholders:  # nothing to run: not a case, not a skip
        items[:] = [i for i in items if i not in placeholders]
        config.hook.pytest_deselected(items=placeholders)
    everything = list(items)
    result = yield  # -k / -m deselect inside
    wanted = {_baseline_of(i) for i in items} - {None}
    if wanted:
        kept = set(items)
        needed = [i for i in everything if _records_baseline(i) in wanted and i not in kept]
        if needed:
            items[:0] = needed
            reporter = config.pluginmanager.get_plugin("terminalreporter")
            deselected = reporter.stats.get("deselected", []) if reporter is not None else []
            deselected[:] = [i for i in deselected if i not in needed]
            if reporter is not None:
                reporter.write_line(
                    f"steering_reliability: kept the {len(needed)} baseline cases that the "
                    "selected cases are compared with"
                )
    return result


def _empty_parameter_set(item: pytest.Item) -> bool:
    """The placeholder pytest makes of a test parametrized over an empty list."""
    skip = item.get_closest_marker("skip")
    return skip is not None and str(skip.kwargs.get("reason", "")).startswith(
        "got empty parameter set"
    )


def _marked(item: pytest.Item, name: str) -> str | None:
    mark = item.get_closest_marker(name)
    return None if mark is None else str(mark.args[0])


def _records_baseline(item: pytest.Item) -> str | None:
    """Which baseline a baseline case records (refusal's, or a behaviour's name)."""
    return _marked(item, "records_baseline")


def _baseline_of(item: pytest.Item) -> str | None:
    """The baseline a (non-baseline) case is compared with, if any."""
    if _records_baseline(item) is not None:
        return None
    needs = _marked(item, "needs_baseline")
    return needs or ("refusal" if "baseline" in getattr(item, "fixturenames", ()) else None)


def _pin_threads() -> None:
    """cores // workers torch threads per process (two workers x two threads thrash 2 cores)."""
    import torch

    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1") or 1)
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))


@pytest.fixture(scope="session")
def model(sr_config: Config, sr_run: Any) -> Any:
    """The model under test (read-only; never edit its weights)."""
    _pin_threads()
    m = load(sr_config.model.name, device=sr_config.model.device, dtype=sr_config.model.dtype)
    validate_for_model(sr_config, model_name=m.info.name, n_layers=m.info.n_layers)
    sr_run.annotate(
        "model",
        {
            "name": m.info.name,
            "source": m.info.source,
            "weights_sha256": m.info.weights_sha256,
            "n_layers": m.info.n_layers,
            "d_model": m.info.d_model,
            "prompt_format": m.info.prompt_format,
            "dtype": m.info.dtype,
            "device": m.info.device,
        },
    )
    card = card_of(m)
    if card is not None:  # a model organism: how it was made and whether it met its targets
        keep = (
            "key",
            "weights_sha256",
            "kernel_family",
            "base",
            "recipe",
            "recipe_version",
            "accepted",
            "accepted_weak",
            "acceptance",
            "aim",
        )
        sr_run.annotate("organism", {"card": m.extra["card"], **{k: card.get(k) for k in keep}})
    return m


@pytest.fixture(scope="session")
def splits(sr_config: Config, sr_run: Any, model: Any) -> dict[str, tuple[Any, ...]]:
    """Evaluation prompts per split (validated; length-checked against the model's context).

    run.json records which evaluated prompts are in the select and report parts, and which
    prompts built the direction (always select prompts of harm_train).
    """
    chosen = select_prompts(sr_config)
    check_lengths(model, sr_config, chosen)
    parts = file_parts(sr_config)
    sr_run.annotate(
        "parts",
        {
            "rule": "seeded half/half split of each prompt file, stratified by family x style; "
            "choices on select, headline numbers on report",
            "direction_prompt_ids": [p.id for p in direction_prompts(sr_config)],
            **{
                split: {
                    part: [p.id for p in prompts if parts[split][p.id] == part] for part in PARTS
                }
                for split, prompts in chosen.items()
            },
        },
    )
    return chosen


@pytest.fixture(scope="session")
def refusal_ids(model: Any) -> tuple[int, ...]:
    return refusal_token_ids(model.tokenizer)


@pytest.fixture(scope="session")
def directions(sr_config: Config, model: Any) -> dict[int, Any]:
    """The main direction at every sweep layer (and the sanity layer), one pass, cached."""
    layers = sorted({*sr_config.sweep.layers, sanity_layer(sr_config)})
    files = split_files(sr_config)
    harmless = (
        harmless_prompts(sr_config) if sr_config.direction.method == "diff_in_means" else None
    )
    return directions_for_layers(
        model,
        sr_config,
        direction_prompts(sr_config),
        layers,
        harmless=harmless,
        prompt_file=files["harm_train"],
        harmless_file=files["benign"] if harmless is not None else None,
    )


@pytest.fixture(scope="session")
def baseline(
    sr_config: Config, model: Any, splits: dict[str, Any], refusal_ids: tuple[int, ...]
) -> dict[str, list[Any]]:
    """Unsteered (alpha = 0) generations per split: computed once across all cases and workers.

    Each worker starts with a different split (rotated by worker index), so on a cold cache the
    workers generate different splits in parallel instead of queueing on one lock.
    """
    worker = os.environ.get("PYTEST_XDIST_WORKER", "gw0")
    shift = int(worker[2:]) if worker[2:].isdigit() else 0
    names = list(splits)
    order = names[shift % len(names) :] + names[: shift % len(names)]
    found = {
        split: cached_generate(
            model,
            request_for(model, sr_config, splits[split]),
            batch_size=sr_config.generation.batch_size,
            track_token_ids=refusal_ids,
        )
        for split in order
    }
    return {split: found[split] for split in names}
