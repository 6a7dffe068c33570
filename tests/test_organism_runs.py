"""A run on a model organism: its weights' sha256 is one of the run's inputs, so a run
recorded on other organism weights is never added to (docs/organism.md)."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from steering_reliability import pytest_plugin
from steering_reliability.errors import ResumeError
from steering_reliability.models.loader import organism_pointer
from steering_reliability.records.run import plan_run
from steering_reliability.studies.organism import build as org_build
from steering_reliability.studies.organism.build import Organism, build, run_input, run_inputs
from steering_reliability.studies.organism.recipe import Recipe, default_eval_sets

NAME = "smollm2-135m-refusal"
TINY = Recipe(base="tiny", n_harm=8, n_benign=8, benign_pool=32, skip_unhelpful=False,
              n_dev_harm=4, n_dev_benign=4, epochs=1, batch_size=4, answer_tokens=4,
              eval_tokens=4, train_from_layer=0, first_token_weight=1.0)  # fmt: skip
CONFIG: dict[str, Any] = {"model": {"name": NAME}, "seed": 0}


@pytest.fixture(scope="module")
def tiny_sets() -> dict[str, Any]:
    return {k: v[:6] for k, v in default_eval_sets().items()}


def _build(cache: Path, sets: dict[str, Any], seed: int) -> Organism:
    from steering_reliability.models import tiny_model

    return build(NAME, recipe=dataclasses.replace(TINY, seed=seed), base=tiny_model(),
                 eval_sets=sets, cache_dir=cache, accept_weak=True)  # fmt: skip


def _start(plan: Any) -> None:
    plan.start(cases={}, rootdir=".")


def test_a_run_on_other_organism_weights_is_not_resumed(
    tmp_path: Path, tiny_sets: dict[str, Any], one_thread: None
) -> None:
    a = _build(tmp_path / "cache", tiny_sets, seed=2)
    b = _build(tmp_path / "cache", tiny_sets, seed=1)  # other weights under the same name
    inputs_a, inputs_b = run_input(NAME, a.path), run_input(NAME, b.path)
    assert inputs_a == {f"organism:{NAME}": a.card["weights_sha256"]}
    assert inputs_a != inputs_b

    runs = tmp_path / "runs"
    first = plan_run(runs, config=CONFIG, inputs=inputs_a)
    _start(first)
    assert plan_run(runs, config=CONFIG, inputs=inputs_a).run_dir == first.run_dir  # resumed
    other = plan_run(runs, config=CONFIG, inputs=inputs_b)  # --resume auto: a new run
    assert other.run_dir != first.run_dir and not other.resumed
    with pytest.raises(
        ResumeError, match=f"organism:{NAME}: sha256 {a.card['weights_sha256'][:12]}"
    ):
        plan_run(runs, config=CONFIG, inputs=inputs_b, run_id=first.run_id)
    with pytest.raises(ResumeError, match=f"organism:{NAME}"):
        plan_run(runs, config=CONFIG, inputs=inputs_b, resume="must")


def test_run_inputs_builds_first_or_only_locates(
    tmp_path: Path, tiny_sets: dict[str, Any], monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    cache = tmp_path / "cache"
    assert run_inputs(NAME, cache, build_missing=False) == {}  # nothing built: nothing to name
    ensured: list[Path] = []

    def ensure(name: str, cache_dir: Path) -> Path:  # the registered recipe, made tiny
        ensured.append(cache_dir)
        return _build(cache_dir, tiny_sets, seed=2).path

    monkeypatch.setattr(org_build, "ensure", ensure)
    built = run_inputs(NAME, cache)
    assert ensured == [cache]
    # the build left the pointer the loader and the workers follow: locating finds the same
    assert organism_pointer(NAME, cache).is_file()
    assert run_inputs(NAME, cache, build_missing=False) == built
    assert ensured == [cache]


@pytest.mark.parametrize(
    ("model", "collectonly", "worker", "expected"),
    [
        (NAME, False, False, [True]),  # the controller builds before it plans
        (NAME, True, False, [False]),  # --collect-only builds nothing
        (NAME, False, True, [False]),  # an xdist worker: the controller built it
        ("smollm2-135m-instruct", False, False, []),  # not an organism: no organism input
    ],
)
def test_the_plugin_adds_the_organism_to_the_run_inputs(
    model: str, collectonly: bool, worker: bool, expected: list[bool],
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path,
) -> None:  # fmt: skip
    calls: list[bool] = []

    def fake(name: str, cache_dir: Path, *, build_missing: bool = True) -> dict[str, str]:
        calls.append(build_missing)
        return {f"organism:{name}": "ab" * 32}

    monkeypatch.setattr(org_build, "run_inputs", fake)
    monkeypatch.setenv("STEERING_RELIABILITY_CACHE", str(tmp_path))
    config: Any = SimpleNamespace(option=SimpleNamespace(collectonly=collectonly))
    if worker:
        config.workerinput = {}
    obj = SimpleNamespace(model=SimpleNamespace(name=model), behaviours={})
    found = pytest_plugin.pytest_sr_input_files(config=config, obj=obj, root=tmp_path)
    assert calls == expected
    assert found == ({f"organism:{NAME}": "ab" * 32} if expected else {})
