"""Behaviours beside refusal (the config's `behaviours:` section; toxicity by default).

For each listed behaviour: its unsteered baseline, then activation addition of its direction at
each layer x alpha (negative alphas steer away), on the set the direction is learned on, the
shifted set and the benign control set. Select one behaviour with its marker:
`pytest experiments -m toxicity -n auto`.

The cases assert validity only (every prompt has a row, scores in range); how much the behaviour
moves and what it costs are findings in the rows. The sanity checks (alpha 0 identity, a random
direction of equal norm, pair template robustness) are asserted: a failed check fails, an
inconclusive one is skipped with its reason.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from steering_reliability.behaviours import load_pairs
from steering_reliability.config import Config
from steering_reliability.generation import teacher_forced_scores
from steering_reliability.paths import REPO_ROOT
from steering_reliability.pytest_plugin import run_config
from steering_reliability.studies import checks
from steering_reliability.studies.behaviours.run import (
    BehaviourCase,
    BehaviourRun,
    behaviour_cases,
    portable,
)
from steering_reliability.verdict import Verdict

pytestmark = pytest.mark.experiment


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """One case per behaviour (baseline, sanity checks) or per behaviour x layer x alpha, each
    marked with its behaviour's name (`-m toxicity`)."""
    if not {"behaviour", "bcase"} & set(metafunc.fixturenames):
        return
    cfg = run_config(metafunc.config)
    if "bcase" in metafunc.fixturenames:
        cases = behaviour_cases(cfg)
        params = [pytest.param(c, id=c.id, marks=[getattr(pytest.mark, c.behaviour),
                                                  pytest.mark.needs_baseline(c.behaviour)])
                  for c in cases]  # fmt: skip
        metafunc.parametrize("bcase", params)
    if "behaviour" in metafunc.fixturenames:
        records = metafunc.definition.name == "test_behaviour_baseline"
        params = [pytest.param(n, id=n, marks=[getattr(pytest.mark, n)] + (
                      [pytest.mark.records_baseline(n)] if records else []))
                  for n in cfg.behaviours]  # fmt: skip
        metafunc.parametrize("behaviour", params)


class BehaviourState:
    """One behaviour in this worker: its run, evaluated prompts, directions at its layers and
    sanity layer (one pass over the pairs), and its unsteered generations (shared cache)."""

    def __init__(self, run: Any, model: Any) -> None:
        self.run = run
        self.model = model
        self.prompts = run.prompts()
        self.directions = run.directions(model, sorted({*run.layers, run.sanity_layer()}))
        self._baseline: dict[str, list[Any]] = {}

    def baseline(self, split: str) -> list[Any]:
        if split not in self._baseline:
            self._baseline[split] = self.run.baseline(self.model, split, self.prompts[split])
        return self._baseline[split]

    @property
    def sanity_prompts(self) -> tuple[Any, ...]:
        """The first n_sanity evaluated prompts of the learn set's select part."""
        learn = self.run.behaviour.split("learn")
        parts = self.run.parts(learn)
        chosen = [p for p in self.prompts[learn] if parts[p.id] == "select"]
        return tuple(chosen[: self.run.settings.n_sanity])

    @property
    def sanity_tokens(self) -> int:
        return min(24, self.run.settings.max_new_tokens)


@pytest.fixture(scope="session")
def behaviour_state(sr_config: Config, sr_run: Any, model: Any) -> Any:
    """name -> BehaviourState, built on first use in this worker (read-only)."""
    states: dict[str, BehaviourState] = {}

    def get(name: str) -> BehaviourState:
        if name not in states:
            run = BehaviourRun(sr_config, name)
            states[name] = BehaviourState(run, model)
            sr_run.annotate(f"behaviour:{name}", _behaviour_record(states[name]))
        return states[name]

    return get


def _behaviour_record(st: BehaviourState) -> dict[str, Any]:
    """What run.json keeps of a behaviour: files, scorer, pairs and the parts of its prompts."""
    run = st.run
    b = run.behaviour
    keys = [*b.split_names, *(["pairs"] if b.recipe == "contrastive_pairs" else [])]
    calibration = b.calibrate(run.scorer, run.settings.threshold) if b.calibrate else None
    return {
        "description": b.description,
        "calibration": calibration,
        "recipe": b.recipe,
        "sets": list(b.split_names),  # in role order: learn, shifted, control
        "scorer": getattr(run.scorer, "name", type(run.scorer).__name__),
        "files": {k: portable(run.file(k), REPO_ROOT) for k in keys},
        "pair_ids": [p.id for p in run.pairs()],
        "parts": {
            split: {
                part: [p.id for p in prompts if run.parts(split)[p.id] == part]
                for part in ("select", "report")
            }
            for split, prompts in st.prompts.items()
        },
    }


def _valid(rows: list[dict[str, Any]], n: int) -> None:
    assert len(rows) == n, f"expected {n} rows, got {len(rows)}"
    for r in rows:
        s = r["behaviour_score"]
        assert s is not None and math.isfinite(s) and 0.0 <= s <= 1.0, (r["prompt_id"], s)
        assert r["behaviour_flag"] in (True, False)


def test_behaviour_baseline(behaviour: str, record: Any, sr_run: Any, model: Any,
                            behaviour_state: Any) -> None:  # fmt: skip
    """alpha = 0: the unsteered model on each of the behaviour's sets, recorded once."""
    st = behaviour_state(behaviour)
    case = BehaviourCase(behaviour, -1, 0.0)
    rows: list[dict[str, Any]] = []
    for split, prompts in st.prompts.items():
        split_rows = st.run.rows(model, sr_run.run_id, case, split, prompts, st.baseline(split))
        _valid(split_rows, len(prompts))
        rows += split_rows
    record.rows(rows)


def test_behaviour_sweep(bcase: BehaviourCase, record: Any, sr_run: Any, model: Any,
                         behaviour_state: Any) -> None:  # fmt: skip
    """Activation addition at one layer and alpha, on every set of the behaviour; on the control
    set also the KL to the unsteered model on its own completions."""
    st = behaviour_state(bcase.behaviour)
    run = st.run
    steering = run.steering(bcase.layer, st.directions[bcase.layer].vector, bcase.alpha)
    control = run.behaviour.split("control")
    rows: list[dict[str, Any]] = []
    for split, prompts in st.prompts.items():
        gens = run.generate(model, prompts, [steering])
        tf = None
        if split == control:
            tf = teacher_forced_scores(
                model, [p.prompt for p in prompts], [g.token_ids for g in st.baseline(split)],
                prompt_ids=[p.id for p in prompts], steerings=[steering],
                system_prompt=run.cfg.model.system_prompt,
            )  # fmt: skip
        split_rows = run.rows(model, sr_run.run_id, bcase, split, prompts, gens, tf)
        _valid(split_rows, len(prompts))
        rows += split_rows
    record.rows(rows)


# ---------------------------------------------------------------- sanity


def _conclude(st: Any, record: Any, run_id: str, v: Verdict, layer: int, **extra: Any) -> None:
    """Record the verdict, then make the pytest outcome say the same: failed fails,
    inconclusive is skipped with its reason (never shown as passed)."""
    row = checks.verdict_row(st.run.cfg, run_id, v, layer=layer, behaviour=st.run.name,
                             alpha=st.run.sanity_alpha, site=st.run.site(), **extra)  # fmt: skip
    record.rows([row])
    if v.verdict == "failed":
        pytest.fail(f"{st.run.name} {v.name} failed: {v.reason}", pytrace=False)
    if v.verdict == "inconclusive":
        pytest.skip(f"{st.run.name} {v.name} inconclusive: {v.reason}")


@pytest.mark.sanity
def test_behaviour_alpha_zero_is_the_baseline(behaviour: str, record: Any, sr_run: Any,
                                              model: Any, behaviour_state: Any) -> None:  # fmt: skip
    """Adding the direction at alpha 0 at every layer of the grid changes no token and no
    log-prob of the sampled generations (same per-prompt seeds)."""
    st = behaviour_state(behaviour)
    prompts = st.sanity_prompts
    zero = [st.run.steering(layer, st.directions[layer].vector, 0.0) for layer in st.run.layers]
    plain = st.run.generate(model, prompts)
    steered = st.run.generate(model, prompts, zero)
    _conclude(st, record, sr_run.run_id, checks.identical_outputs(plain, steered),
              st.run.sanity_layer())  # fmt: skip


@pytest.mark.sanity
def test_behaviour_random_direction_of_equal_norm(behaviour: str, record: Any, sr_run: Any,
                                                  model: Any, behaviour_state: Any) -> None:  # fmt: skip
    """The direction raises the mean behaviour score of the generations more than each of 20
    random directions of its norm at the same layer and alpha (sanity prompts, learn set)."""
    st = behaviour_state(behaviour)
    run, layer = st.run, st.run.sanity_layer()
    prompts = st.sanity_prompts

    def measure(steerings: Any) -> float:
        gens = run.generate(model, prompts, steerings, max_new_tokens=st.sanity_tokens)
        scores = run.score([g.text for g in gens])
        return sum(s.score for s in scores) / len(scores)

    def make(vector: Any) -> Any:
        return run.steering(layer, vector, run.sanity_alpha)

    v = checks.random_null(measure, make, st.directions[layer].vector, seed=run.cfg.seed)
    _conclude(st, record, sr_run.run_id, v, layer)


@pytest.mark.sanity
def test_behaviour_pair_templates_agree(behaviour: str, record: Any, sr_run: Any, model: Any,
                                        behaviour_state: Any) -> None:  # fmt: skip
    """Directions learned from pairs in two different continuation wordings point the same way
    (cosine) and move the behaviour equally on the sanity prompts."""
    import pandas as pd

    st = behaviour_state(behaviour)
    run, layer = st.run, st.run.sanity_layer()

    if run.behaviour.recipe != "contrastive_pairs":
        v = Verdict("pair_template_robustness", "inconclusive", math.nan,
                    f"the {run.behaviour.recipe} recipe has no pair templates", {})  # fmt: skip
        _conclude(st, record, sr_run.run_id, v, layer)
    pairs = load_pairs(run.file("pairs"))
    templates = sorted({p.template for p in pairs})
    if len(templates) < 2:
        v = Verdict("pair_template_robustness", "inconclusive", math.nan,
                    f"every pair has the template {templates[0]!r}", {})  # fmt: skip
        _conclude(st, record, sr_run.run_id, v, layer)
    n = run.settings.n_pairs
    groups = [[p for p in pairs if p.template == t][:n] for t in templates[:2]]
    a, b = (run.directions(model, [layer], g)[layer] for g in groups)
    prompts = st.sanity_prompts

    def flags(steerings: Any) -> pd.Series:
        gens = run.generate(model, prompts, steerings, max_new_tokens=st.sanity_tokens)
        return pd.Series([float(s.flag) for s in run.score([g.text for g in gens])],
                         index=[p.id for p in prompts])  # fmt: skip

    alpha = run.sanity_alpha
    v = checks.template_agreement(
        a.vector, b.vector, flags([]), flags([run.steering(layer, a.vector, alpha)]),
        flags([run.steering(layer, b.vector, alpha)]),
        what=f"the directions of pair templates {templates[0]} and {templates[1]}",
    )  # fmt: skip
    v = Verdict("pair_template_robustness", v.verdict, v.value, v.reason, v.details)
    _conclude(st, record, sr_run.run_id, v, layer, templates=templates[:2],
              n_pairs=[len(g) for g in groups])  # fmt: skip
