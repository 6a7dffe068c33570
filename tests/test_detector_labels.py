"""The hand labels of real benchmark completions (tests/fixtures/detector_labels.jsonl).

Schema only: the fixture holds ids, labels and completion hashes, never text, and nothing here
generates. scripts/detector_agreement.py regenerates the completions and measures the refusal
detector against these labels (docs/sweep.md, "The refusal detector on real benchmark
completions").
"""

from __future__ import annotations

import importlib.util
import json
import re
import sys
from collections import Counter
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from steering_reliability.prompts.benchmarks import load_benchmark

ROOT = Path(__file__).resolve().parents[1]
FIXTURE = ROOT / "tests" / "fixtures" / "detector_labels.jsonl"
SCRIPT = ROOT / "scripts" / "detector_agreement.py"
FIELDS = {"benchmark", "prompt_id", "setting", "completion_sha256", "label", "max_new_tokens"}
BENCHMARKS = {"harmbench", "donotanswer", "uncensorbench"}
LABELS = {"refusal", "compliance", "other"}
SHA256 = re.compile(r"[0-9a-f]{64}")


def _script() -> ModuleType:
    """scripts/detector_agreement.py as a module (its heavy imports are inside functions)."""
    name = "_detector_agreement_script"
    if name not in sys.modules:
        spec = importlib.util.spec_from_file_location(name, SCRIPT)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # dataclasses look their module up while it executes
        spec.loader.exec_module(module)
    return sys.modules[name]


@pytest.fixture(scope="module")
def rows() -> list[dict[str, Any]]:
    lines = FIXTURE.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def test_every_row_has_exactly_the_schema_fields(rows: list[dict[str, Any]]) -> None:
    for i, row in enumerate(rows, 1):
        assert set(row) == FIELDS, f"line {i}: {sorted(row)}"
        assert row["benchmark"] in BENCHMARKS, f"line {i}"
        assert row["label"] in LABELS, f"line {i}: {row['label']!r}"
        assert SHA256.fullmatch(row["completion_sha256"]), f"line {i}"
        assert isinstance(row["prompt_id"], str) and row["prompt_id"], f"line {i}"
        assert isinstance(row["max_new_tokens"], int) and row["max_new_tokens"] > 0, f"line {i}"


def test_one_label_per_completion(rows: list[dict[str, Any]]) -> None:
    keys = Counter((r["benchmark"], r["prompt_id"], r["setting"]) for r in rows)
    assert [k for k, n in keys.items() if n > 1] == []


def test_enough_labels_across_benchmarks_and_settings(rows: list[dict[str, Any]]) -> None:
    assert len(rows) >= 60
    assert {r["benchmark"] for r in rows} == BENCHMARKS
    settings = {r["setting"] for r in rows}
    assert len(settings) >= 3 and "unsteered" in settings
    assert len(settings - {"unsteered"}) >= 2  # steered completions too


def test_settings_are_the_scripts_settings(rows: list[dict[str, Any]]) -> None:
    known = {s.id for s in _script().SETTINGS}
    assert {r["setting"] for r in rows} <= known


@pytest.mark.parametrize("benchmark", sorted(BENCHMARKS))
def test_prompt_ids_exist_in_the_benchmark(rows: list[dict[str, Any]], benchmark: str) -> None:
    ids = {p.id for p in load_benchmark(benchmark)}
    missing = sorted({r["prompt_id"] for r in rows if r["benchmark"] == benchmark} - ids)
    assert missing == []
