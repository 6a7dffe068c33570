"""Compaction: every valid part of a run -> one de-duplicated `results.parquet`.

`results.parquet` is always derived from the parts, so compaction is safe to repeat (after
an interrupted session, by hand with `python -m steering_reliability.records compact RUN`).
Two rows with one ROW_KEY that agree collapse into one; two that disagree are an error,
because silently keeping either would hide a non-deterministic or mixed-up run.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.parquet as pq

from ..atomic import atomic_write
from ..errors import SteeringReliabilityError
from .keys import FAILED_DIR
from .parts import list_parts, read_part, row_key
from .schema import ROW_KEY, ROW_SCHEMA

RESULTS_NAME = "results.parquet"


class ConflictingRowsError(SteeringReliabilityError, ValueError):
    """Two rows with the same row key but different values."""


@dataclass(frozen=True)
class CompactResult:
    """What one compaction wrote."""

    path: str
    n_rows: int
    n_parts: int
    n_duplicates: int


def _describe_conflict(a: dict[str, Any], b: dict[str, Any], src_a: str, src_b: str) -> str:
    key = ", ".join(f"{n}={a[n]!r}" for n in ROW_KEY)
    diffs = [f"  {n}: {a[n]!r} != {b[n]!r}" for n in ROW_SCHEMA.names if a[n] != b[n]]
    return (
        f"two rows with one row key disagree ({key})\n  in {src_a}\n  and {src_b}\n"
        + "\n".join(diffs)
        + "\nhint: a case recorded the same measurement twice with different values; "
        "delete one of the parts and rerun that case"
    )


def _dedupe(table: pa.Table, sources: list[str]) -> tuple[pa.Table, int]:
    """Drop exact duplicate rows; raise ConflictingRowsError on disagreeing ones."""
    if table.num_rows == 0:
        return table, 0
    counts = table.group_by(list(ROW_KEY), use_threads=False).aggregate([([], "count_all")])
    if pc.max(counts["count_all"]).as_py() <= 1:
        return table, 0
    rows = table.to_pylist()
    kept: dict[tuple[Any, ...], int] = {}
    keep_idx: list[int] = []
    for i, row in enumerate(rows):
        k = row_key(row)
        j = kept.get(k)
        if j is None:
            kept[k] = i
            keep_idx.append(i)
        elif rows[j] != row:
            raise ConflictingRowsError(_describe_conflict(rows[j], row, sources[j], sources[i]))
    return table.take(pa.array(keep_idx, pa.int64())), len(rows) - len(keep_idx)


def read_parts(directory: str | Path) -> tuple[pa.Table, list[str]]:
    """All parts of a directory as one table with ROW_SCHEMA, plus the file of each row.

    A visible part that does not validate raises PartError naming it (never skipped quietly).
    """
    tables: list[pa.Table] = [ROW_SCHEMA.empty_table()]
    sources: list[str] = []
    done: set[str] = set()
    for path in list_parts(directory):
        table, info = read_part(path)
        tables.append(table)
        sources.extend([info.path] * table.num_rows)
        done.add(path.name)
    # Cases that did not pass contribute only their verdict rows (`verdict` set), so a failed or
    # inconclusive sanity check is reported as such while unvalidated measurements stay out.
    for path in list_parts(Path(directory) / FAILED_DIR):
        if path.name in done:
            continue
        table, info = read_part(path)
        table = table.filter(pc.fill_null(pc.not_equal(table["verdict"], ""), False))
        tables.append(table)
        sources.extend([info.path] * table.num_rows)
    return pa.concat_tables(tables), sources


def sort_rows(table: pa.Table) -> pa.Table:
    """A canonical row order: independent of worker count, part order and case order."""
    return table.sort_by([(name, "ascending") for name in ROW_KEY])


def write_table_atomic(table: pa.Table, path: str | Path) -> Path:
    """Write a parquet file via a hidden temp in the same directory + fsync + os.replace."""
    return atomic_write(path, lambda fh: pq.write_table(table, fh))


def compact(parts_directory: str | Path, out: str | Path) -> CompactResult:
    """Read every part of `parts_directory`, de-duplicate, write `out` atomically."""
    table, sources = read_parts(parts_directory)
    n_parts = len(list_parts(parts_directory))
    table, n_dup = _dedupe(table, sources)
    table = sort_rows(table).cast(ROW_SCHEMA)
    path = write_table_atomic(table, out)
    return CompactResult(str(path), table.num_rows, n_parts, n_dup)
