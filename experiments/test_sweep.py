"""The sweep: layer x intervention x alpha, each case recording one row per prompt and split.

Asserts validity only (rows complete, metrics finite). Collapse at high alpha and any
generalisation gap are findings, recorded in the rows (`collapsed`, refusal rates), not failures.
"""

from __future__ import annotations

import math
from typing import Any

import pytest

from steering_reliability.config import Config
from steering_reliability.generation import teacher_forced_scores
from steering_reliability.pytest_plugin import run_config
from steering_reliability.studies.shared import eval_splits, generate_for, score_rows, steering_for
from steering_reliability.studies.sweep.cases import Case, sweep_cases

pytestmark = [pytest.mark.sweep, pytest.mark.experiment]


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """The grid from the config's ordered lists, with readable ids (layer12-add-a1); the
    baseline once per split (the benchmarks of prompts.benchmarks included)."""
    cfg = run_config(metafunc.config)
    if "case" in metafunc.fixturenames:
        cases = sweep_cases(cfg)
        metafunc.parametrize("case", cases, ids=[c.id for c in cases])
    if "split" in metafunc.fixturenames:
        metafunc.parametrize("split", eval_splits(cfg))


_FINITE = (
    "refusal_score",
    "helpfulness_score",
    "mean_entropy",
    "mean_logprob",
    "distinct_2",
    "repeated_ngram_frac",
)


def assert_valid(rows: list[dict[str, Any]], n_expected: int) -> None:
    """Every prompt has a row, and every score is a finite number in its range."""
    assert len(rows) == n_expected, f"expected {n_expected} rows, got {len(rows)}"
    for r in rows:
        for col in _FINITE:
            if r[col] is not None or r["n_tokens"] > 0:
                assert r[col] is not None and math.isfinite(r[col]), (
                    f"{r['prompt_id']}: {col}={r[col]!r}"
                )
        assert 0.0 <= r["refusal_score"] <= 1.0 and 0.0 <= r["helpfulness_score"] <= 1.0


@pytest.mark.records_baseline("refusal")
def test_baseline(
    split: str,
    record: Any,
    sr_config: Config,
    sr_run: Any,
    model: Any,
    splits: dict[str, Any],
    baseline: dict[str, list[Any]],
) -> None:
    """alpha = 0: the unsteered model on each split, recorded once; every case compares with it."""
    rows = score_rows(
        cfg=sr_config,
        model=model,
        run_id=sr_run.run_id,
        experiment="baseline",
        case="baseline",
        split=split,
        prompts=splits[split],
        gens=baseline[split],
    )
    assert_valid(rows, len(splits[split]))
    record.rows(rows)


def test_sweep(
    case: Case,
    record: Any,
    sr_config: Config,
    sr_run: Any,
    model: Any,
    splits: dict[str, Any],
    directions: dict[int, Any],
    baseline: dict[str, list[Any]],
    refusal_ids: tuple[int, ...],
) -> None:
    """One (layer, intervention, alpha) on harm_train, harm_test, benign and each benchmark."""
    cfg = sr_config
    d = directions[case.layer]
    steering = steering_for(
        cfg, case.intervention, case.layer, d.scaled(cfg.direction.alpha_scale), case.alpha
    )
    rows: list[dict[str, Any]] = []
    for split in eval_splits(cfg):
        prompts = splits[split]
        gens = generate_for(model, cfg, prompts, [steering], track_token_ids=refusal_ids)
        tf = None
        if split == "benign":  # CE / KL against the model's own unsteered completions
            tf = teacher_forced_scores(
                model,
                [p.prompt for p in prompts],
                [g.token_ids for g in baseline[split]],
                prompt_ids=[p.id for p in prompts],
                steerings=[steering],
                system_prompt=cfg.model.system_prompt,
            )
        split_rows = score_rows(
            cfg=cfg,
            model=model,
            run_id=sr_run.run_id,
            experiment="sweep",
            case=case.id,
            split=split,
            prompts=prompts,
            gens=gens,
            layer=case.layer,
            intervention=case.intervention,
            alpha=case.alpha,
            teacher_forced=tf,
        )
        assert_valid(split_rows, len(prompts))
        rows += split_rows
    record.rows(rows)  # the baseline is test_baseline's record, never copied here
