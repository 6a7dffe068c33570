"""Compaction of parts into results.parquet: de-duplicated, loud on conflicts, repeatable."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from steering_reliability.records.schema import ROW_KEY, ROW_SCHEMA
from steering_reliability.records.store import ConflictingRowsError, PartError, compact, write_part


def rows(case: str, prompts: range, score: float = 0.5) -> list[dict[str, Any]]:
    return [
        {
            "run_id": "r",
            "experiment": "sweep",
            "case_id": case,
            "split": "benign",
            "prompt_id": f"p{i}",
            "layer": 2,
            "alpha": 1.0,
            "completion": f"{case}-{i}",
            "refusal_score": score,
            "matched_phrases": ["sorry"] if i % 2 else [],
        }
        for i in prompts
    ]


def keys(path: Path) -> list[tuple[Any, ...]]:
    table = pq.read_table(path)
    return [tuple(r[k] for k in ROW_KEY) for r in table.to_pylist()]


def test_compaction_unions_parts_in_a_canonical_order(tmp_path: Path) -> None:
    parts_a, parts_b = tmp_path / "a", tmp_path / "b"
    for name in ("c1", "c2", "c3"):
        write_part(parts_a, name, rows(name, range(4)))
    for name in ("c3", "c1", "c2"):  # another write order, as with other workers
        write_part(parts_b, name, rows(name, range(4)))
    res_a = compact(parts_a, tmp_path / "a.parquet")
    res_b = compact(parts_b, tmp_path / "b.parquet")
    assert (res_a.n_rows, res_a.n_parts, res_a.n_duplicates) == (12, 3, 0)
    a, b = pq.read_table(res_a.path), pq.read_table(res_b.path)
    assert a.schema.equals(ROW_SCHEMA) and a.equals(b)
    assert len(set(keys(Path(res_a.path)))) == 12


def test_identical_duplicates_collapse_and_compaction_repeats(tmp_path: Path) -> None:
    write_part(tmp_path / "p", "c1", rows("shared", range(3)))
    write_part(tmp_path / "p", "c2", rows("shared", range(2, 5)))  # p2 recorded twice, same values
    out = tmp_path / "results.parquet"
    first = compact(tmp_path / "p", out)
    assert (first.n_rows, first.n_duplicates) == (5, 1)
    before = pq.read_table(out)
    second = compact(tmp_path / "p", out)
    assert second == first and pq.read_table(out).equals(before)
    assert not list(tmp_path.glob(".*"))  # no temp left next to results.parquet


def test_disagreeing_duplicates_are_refused_naming_key_and_column(tmp_path: Path) -> None:
    write_part(tmp_path / "p", "c1", rows("shared", range(3), score=0.5))
    write_part(tmp_path / "p", "c2", rows("shared", range(2, 4), score=0.75))
    out = tmp_path / "results.parquet"
    with pytest.raises(ConflictingRowsError) as err:
        compact(tmp_path / "p", out)
    text = str(err.value)
    assert "prompt_id='p2'" in text and "refusal_score: 0.5 != 0.75" in text
    assert "c1.parquet" in text and "c2.parquet" in text
    assert not out.exists()


def test_a_broken_visible_part_fails_compaction_loudly(tmp_path: Path) -> None:
    good = write_part(tmp_path / "p", "c1", rows("c1", range(3)))
    (tmp_path / "p" / "c2.parquet").write_bytes(good.read_bytes()[:100])
    with pytest.raises(PartError, match=r"c2\.parquet"):
        compact(tmp_path / "p", tmp_path / "results.parquet")


def test_empty_parts_folder_gives_an_empty_typed_table(tmp_path: Path) -> None:
    res = compact(tmp_path / "nothing-yet", tmp_path / "results.parquet")
    table = pq.read_table(res.path)
    assert res.n_rows == 0 and table.schema.equals(ROW_SCHEMA)
