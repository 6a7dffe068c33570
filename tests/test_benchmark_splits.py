"""Benchmarks as further splits of a run: their names, which prompts are evaluated (a seeded
sample of the report half only), and that nothing about the three splits changes."""

from __future__ import annotations

import pytest

from steering_reliability.config import load_config
from steering_reliability.errors import ConfigError
from steering_reliability.studies.shared import eval_splits, file_parts, select_prompts

TWO = {"prompts.benchmarks": {"harmbench": "benchmark:harmbench",
                              "mine": "data/prompts/harm_test.jsonl"}}  # fmt: skip


def test_benchmark_splits_follow_the_three_and_evaluate_only_report_prompts() -> None:
    cfg = load_config("configs/fast.yaml", {**TWO, "prompts.n_benchmark": 20})
    assert eval_splits(cfg) == ("harm_train", "harm_test", "benign", "harmbench", "mine")
    chosen = select_prompts(cfg)
    parts = file_parts(cfg)
    for split in ("harmbench", "mine"):
        assert len(chosen[split]) == 20
        assert {parts[split][p.id] for p in chosen[split]} == {"report"}
        assert {p.meta["split"] for p in chosen[split]} == {split}
    # both parts of the three splits, as before
    assert {parts["harm_test"][p.id] for p in chosen["harm_test"]} == {"select", "report"}
    again = select_prompts(load_config("configs/fast.yaml", {**TWO, "prompts.n_benchmark": 20}))
    assert [p.id for p in again["harmbench"]] == [p.id for p in chosen["harmbench"]]


def test_all_of_a_benchmarks_report_half_when_n_benchmark_is_null() -> None:
    cfg = load_config("configs/fast.yaml", {**TWO, "prompts.n_benchmark": None})
    chosen = select_prompts(cfg)
    assert len(chosen["harmbench"]) == 100  # 200 standard behaviours, half of them report


def test_adding_a_benchmark_leaves_the_three_splits_prompts_unchanged() -> None:
    plain = select_prompts(load_config("configs/fast.yaml", {"prompts.benchmarks": {}}))
    more = select_prompts(load_config("configs/fast.yaml", TWO))
    for split in ("harm_train", "harm_test", "benign"):
        assert [p.id for p in plain[split]] == [p.id for p in more[split]]


@pytest.mark.parametrize("name", ["harm_test", "Bench", "9lives", "has space"])
def test_a_benchmark_split_name_must_be_plain_and_new(name: str) -> None:
    with pytest.raises(ConfigError, match="invalid value") as info:
        load_config("configs/fast.yaml", {"prompts.benchmarks": {name: "benchmark:harmbench"}})
    assert info.value.field == f"prompts.benchmarks.{name}" and info.value.value == name
    assert "lower-case letters" in str(info.value)


def test_an_unknown_benchmark_in_the_split_map_is_refused_at_load() -> None:
    with pytest.raises(ConfigError, match="harmbench") as info:
        load_config("configs/fast.yaml", {"prompts.benchmarks": {"x": "benchmark:harmbenhc"}})
    assert "prompts.benchmarks.x" in str(info.value)
