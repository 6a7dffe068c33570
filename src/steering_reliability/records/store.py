"""Rows on disk: one atomic parquet part per finished case, compacted into results.parquet.

A case's part is `parts/<config_hash>/<key>.parquet`, written through `atomic.atomic_write`, so a
visible part is always complete and a killed writer leaves only a hidden temp (removed by the
next session that starts, `clean_stale_temps`). A part describes itself in its footer (key, row
count, the case's time and kind), so the resume check reads the footer alone. A case that did
not pass keeps its rows under `failed/`: only its verdict rows reach results.parquet, and the
case is not done. `results.parquet` is always derived from the parts, so compaction is safe to
repeat.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from steering_reliability.atomic import atomic_write, canonical_json, digest, stale_temps
from steering_reliability.errors import SteeringReliabilityError
from steering_reliability.records.schema import ROW_KEY, ROW_SCHEMA, rows_to_table

PART_SUFFIX = ".parquet"
FAILED_DIR = "failed"
RESULTS_NAME = "results.parquet"
META_KEY = b"steering_reliability.part"  # the part's own description, in parquet metadata
_HINT = "hint: delete it and rerun to recompute that case"


class PartError(SteeringReliabilityError, ValueError):
    """A visible part file that cannot be used (truncated, wrong schema, wrong key)."""


class ConflictingRowsError(SteeringReliabilityError, ValueError):
    """Two rows with the same row key but different values."""


@dataclass(frozen=True)
class PartInfo:
    """What a valid part says about itself (from its parquet footer)."""

    path: str
    key: str
    n_rows: int
    meta: dict[str, Any]


def case_key(cell: Mapping[str, Any], config_hash: str) -> str:
    """The key of one case: blake2b of the canonical JSON of its cell plus the config hash."""
    return digest({"cell": dict(cell), "config_hash": config_hash}, size=16)


def parts_dir(run_dir: str | Path, config_hash: str) -> Path:
    """Where the parts of one configuration of a run live."""
    return Path(run_dir) / "parts" / config_hash


def part_path(directory: str | Path, key: str, *, failed: bool = False) -> Path:
    """The file of a finished case (or, `failed`, of a case that ran and did not pass)."""
    return Path(directory) / (FAILED_DIR if failed else "") / f"{key}{PART_SUFFIX}"


def check_unique_keys(rows: Sequence[Mapping[str, Any]], where: str) -> None:
    """Refuse two rows with one row key inside one case (they would collide at compaction)."""
    seen: dict[tuple[Any, ...], int] = {}
    for i, row in enumerate(rows):
        k = tuple(row.get(name) for name in ROW_KEY)
        if k in seen:
            named = ", ".join(f"{n}={v!r}" for n, v in zip(ROW_KEY, k, strict=True))
            raise ValueError(
                f"{where}: rows {seen[k]} and {i} have the same row key ({named}); "
                "hint: give them distinct split/prompt_id/direction_variant/seed values"
            )
        seen[k] = i


def _write_table(table: pa.Table, fh: Any) -> None:
    """Serialize one table into an open binary file (a seam for failure-injection tests)."""
    pq.write_table(table, fh)


def write_part(
    directory: str | Path,
    key: str,
    rows: Sequence[Mapping[str, Any]],
    meta: Mapping[str, Any] | None = None,
) -> Path:
    """Write one case's rows atomically as `<key>.parquet` (replacing one of the same key)."""
    table = rows_to_table(list(rows))
    check_unique_keys(table.to_pylist(), f"part {key}")
    info = {**dict(meta or {}), "key": key, "n_rows": table.num_rows}
    table = table.replace_schema_metadata({META_KEY: canonical_json(info).encode()})
    return atomic_write(part_path(directory, key), lambda fh: _write_table(table, fh))


def check_part(path: str | Path) -> PartInfo:
    """Validate one visible part from its footer alone (schema, its metadata, the row count it
    holds); raise PartError naming the file and the fault. A truncated file has no footer."""
    path = Path(path)
    try:
        footer = pq.read_metadata(path)
        schema = footer.schema.to_arrow_schema()
    except (OSError, pa.ArrowException) as exc:
        raise PartError(f"{path}: unreadable part ({exc}); {_HINT}") from exc
    wrong = [f.name for f in schema if ROW_SCHEMA.get_field_index(f.name) < 0
             or f.type != ROW_SCHEMA.field(f.name).type]  # fmt: skip
    if wrong:
        raise PartError(f"{path}: columns {wrong} are not in ROW_SCHEMA (or of another type)")
    raw = footer.metadata or {}
    if META_KEY not in raw:
        raise PartError(f"{path}: not a part file (no {META_KEY.decode()} metadata)")
    meta = json.loads(raw[META_KEY])
    key = str(meta.get("key"))
    if path.name != f"{key}{PART_SUFFIX}":
        raise PartError(f"{path}: holds the rows of key {key!r}, not of its file name")
    if meta.get("n_rows") != footer.num_rows:
        raise PartError(f"{path}: {footer.num_rows} rows, its metadata says {meta.get('n_rows')}")
    return PartInfo(str(path), key, footer.num_rows, meta)


def done_part(directory: str | Path, key: str) -> PartInfo | None:
    """The case's part when it exists and validates (the resume check), else None."""
    try:
        return check_part(part_path(directory, key))
    except PartError:
        return None


def list_parts(directory: str | Path) -> list[Path]:
    """Visible part files of a directory, sorted by name (temps are hidden and skipped)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(p for p in directory.glob(f"[!._]*{PART_SUFFIX}") if p.is_file())


def clean_stale_temps(directory: str | Path) -> list[Path]:
    """Remove the hidden temps of writers that died mid-write; return what was removed."""
    found = stale_temps(directory)
    for p in found:
        p.unlink(missing_ok=True)  # another worker may have cleaned it first
    return found


@dataclass(frozen=True)
class CompactResult:
    """What one compaction wrote."""

    path: str
    n_rows: int
    n_parts: int
    n_duplicates: int


def _scan(paths: list[Path], where: ds.Expression | None = None) -> Iterator[tuple[Any, str]]:
    """(record batch, its file) of parts already checked, read with the explicit schema (a column
    an older part lacks reads as null instead of vanishing). A corrupt page fails loudly."""
    dataset = ds.dataset([str(p) for p in paths], schema=ROW_SCHEMA, format="parquet")
    try:
        for tagged in dataset.scanner(filter=where).scan_batches():
            yield tagged.record_batch, tagged.fragment.path
    except (OSError, pa.ArrowException) as exc:  # name the file: the scan error does not
        for frag in dataset.get_fragments():
            try:
                frag.to_table(schema=ROW_SCHEMA)
            except (OSError, pa.ArrowException) as bad:
                raise PartError(f"{frag.path}: unreadable part ({bad}); {_HINT}") from exc
        raise


def read_parts(directory: str | Path) -> tuple[pa.Table, list[str], int]:
    """Every part of a directory as one ROW_SCHEMA table, the file of each row, and the number
    of parts of passed cases.

    A visible part that does not validate raises PartError naming it (never skipped quietly).
    Cases that did not pass contribute only their verdict rows, so a failed or inconclusive
    sanity check is reported as such while its unvalidated measurements stay out.
    """
    passed = list_parts(directory)
    names = {p.name for p in passed}
    failed = [p for p in list_parts(Path(directory) / FAILED_DIR) if p.name not in names]
    for path in passed + failed:
        check_part(path)
    batches, sources = [], []
    for paths, where in ((passed, None), (failed, ds.field("verdict") != "")):
        for batch, source in _scan(paths, where) if paths else ():
            batches.append(batch)
            sources += [source] * batch.num_rows
    return pa.Table.from_batches(batches, schema=ROW_SCHEMA), sources, len(passed)


def _dedupe(table: pa.Table, sources: list[str]) -> tuple[pa.Table, int]:
    """Drop exact duplicate rows; raise ConflictingRowsError on disagreeing ones. Each case
    records its own rows only, so duplicates are rare: the row loop runs only when one exists."""
    if table.num_rows == 0:
        return table, 0
    counts = table.group_by(list(ROW_KEY), use_threads=False).aggregate([([], "count_all")])
    if pc.max(counts["count_all"]).as_py() <= 1:
        return table, 0
    rows = table.to_pylist()
    kept: dict[tuple[Any, ...], int] = {}
    for i, row in enumerate(rows):
        j = kept.setdefault(tuple(row[n] for n in ROW_KEY), i)
        if rows[j] != row:
            key = ", ".join(f"{n}={row[n]!r}" for n in ROW_KEY)
            diffs = "\n".join(f"  {n}: {rows[j][n]!r} != {row[n]!r}"
                              for n in ROW_SCHEMA.names if rows[j][n] != row[n])  # fmt: skip
            raise ConflictingRowsError(
                f"two rows with one row key disagree ({key})\n  in {sources[j]}\n  and "
                f"{sources[i]}\n{diffs}\nhint: a case recorded the same measurement twice "
                "with different values; delete one of the parts and rerun that case"
            )
    keep = sorted(set(kept.values()))
    return table.take(pa.array(keep, pa.int64())), len(rows) - len(keep)


def compact(parts_directory: str | Path, out: str | Path) -> CompactResult:
    """Read every part of `parts_directory`, de-duplicate, write `out` atomically, in a
    canonical row order (independent of workers, part order and case order)."""
    table, sources, n_parts = read_parts(parts_directory)
    table, n_dup = _dedupe(table, sources)
    table = table.sort_by([(name, "ascending") for name in ROW_KEY])
    path = atomic_write(out, lambda fh: pq.write_table(table, fh))
    return CompactResult(str(path), table.num_rows, n_parts, n_dup)
