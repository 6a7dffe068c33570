"""timing.py: exclusive phase times, the merge across cases, and the engine's own phases."""

from __future__ import annotations

import time

import pytest

from steering_reliability import timing


def test_nested_phases_are_counted_once_under_the_inner_name() -> None:
    timing.take()
    with timing.phase("scoring"):
        time.sleep(0.02)
        with timing.phase("teacher forcing"):
            time.sleep(0.03)
    got = timing.take()["phases"]
    assert 0.02 <= got["scoring"] < 0.045, got  # 0.05 s in all, 0.03 of it nested
    assert got["teacher forcing"] >= 0.03
    assert timing.take() == {"phases": {}, "tokens": 0}  # take resets
    with pytest.raises(ValueError, match="unknown phase"), timing.phase("lunch"):
        pass


def test_merge_adds_tallies_and_counts_the_rest_of_each_case_as_other() -> None:
    merged = timing.merge(
        [
            {"phases": {"scoring": 1.0, "generation: decode": 3.0}, "tokens": 10, "seconds": 5.0},
            {"phases": {"scoring": 0.5}, "tokens": 2, "seconds": None},
            {"phases": {"report": 2.0}, "tokens": 0},
        ]
    )
    assert merged["phases"]["scoring"] == 1.5 and merged["phases"]["other"] == 1.0
    assert merged["tokens"] == 12
    lines = timing.render(merged, wall=4.0, workers=2)
    assert lines[0].startswith(
        "time by phase, summed over 2 worker(s) and the controller: 7.5 s in 4.0 s"
    )
    assert "12 tokens generated, 4 tok/s" in lines[-1]


def test_the_engine_reports_prefill_decode_and_its_tokens(one_thread: None) -> None:
    from steering_reliability.generation import generate
    from steering_reliability.models import tiny_model

    tiny = tiny_model()
    timing.take()
    outs = generate(
        tiny, ["hello", "why is the sky blue?"], prompt_ids=["a", "b"], max_new_tokens=5
    )
    got = timing.take()
    assert got["tokens"] == sum(len(g.token_ids) for g in outs) > 0
    assert {"generation: prefill", "generation: decode"} <= set(got["phases"])


def test_the_generation_rate_is_put_against_the_bench_ceiling(tmp_path) -> None:  # type: ignore[no-untyped-def]
    import json

    path = tmp_path / "bench.json"
    assert timing.bench_ceiling(path) is None  # no bench run yet
    path.write_text("{not json")
    assert timing.bench_ceiling(path) is None
    path.write_text(json.dumps({"matmul_ceiling_tok_per_s": 200.0, "model": "m", "device": "cpu",
                                "dtype": "float32", "threads": 1, "batch": 64}))  # fmt: skip
    ceiling = timing.bench_ceiling(path)
    merged = {"phases": {"generation: decode": 4.0, "generation: prefill": 1.0}, "tokens": 500}
    line = timing.render(merged, wall=None, workers=1, ceiling=ceiling)[-1]
    assert "100 tok/s per worker in generation, 50% of the matmul-only ceiling 200 tok/s" in line
