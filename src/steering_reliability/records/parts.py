"""Durable per-case part files: one atomic parquet file per finished case.

A part is written as `parts/<config_hash>/.<key>.<pid>.<uuid>.tmp`, fsynced, then
`os.replace`d to `<key>.parquet`. Readers (pyarrow datasets included) ignore names that
start with `.`, so a killed writer leaves at most a hidden temp that `clean_stale_temps`
removes at the next start; a visible part is always complete.
"""

from __future__ import annotations

import json
import os
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..atomic import fsync_dir
from ..errors import SteeringReliabilityError
from .keys import PART_SUFFIX, canonical_json, case_key, part_path, parts_dir
from .schema import ROW_KEY, ROW_SCHEMA, rows_to_table

TEMP_SUFFIX = ".tmp"
# Key of the part's own description in the parquet key-value metadata.
META_KEY = b"steering_reliability.part"

__all__ = [
    "PartError",
    "PartInfo",
    "canonical_json",
    "case_key",
    "check_unique_keys",
    "clean_stale_temps",
    "list_parts",
    "part_exists_and_valid",
    "part_path",
    "parts_dir",
    "read_part",
    "stale_temps",
    "write_part",
]


class PartError(SteeringReliabilityError, ValueError):
    """A visible part file that cannot be used (truncated, wrong schema, wrong key)."""


@dataclass(frozen=True)
class PartInfo:
    """What a valid part says about itself (from its parquet metadata)."""

    path: str
    key: str
    n_rows: int
    meta: dict[str, Any]


def row_key(row: Mapping[str, Any]) -> tuple[Any, ...]:
    """The ROW_KEY values of one normalized row."""
    return tuple(row.get(name) for name in ROW_KEY)


def check_unique_keys(rows: Sequence[Mapping[str, Any]], where: str) -> None:
    """Refuse two rows with one row key inside one case (they would collide at compaction)."""
    seen: dict[tuple[Any, ...], int] = {}
    for i, row in enumerate(rows):
        k = row_key(row)
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
    """Write one case's rows atomically as `<key>.parquet`; return the visible path.

    Rows are normalized to plain Python values against ROW_SCHEMA first (a bad row fails
    here, in the case that produced it). An existing part of the same key is replaced.
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    table = rows_to_table(list(rows))
    check_unique_keys(table.to_pylist(), f"part {key}")
    info = {**dict(meta or {}), "key": key, "n_rows": table.num_rows}
    table = table.replace_schema_metadata({META_KEY: canonical_json(info).encode()})
    final = part_path(directory, key)
    temp = directory / f".{key}.{os.getpid()}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
    try:
        with open(temp, "wb") as fh:
            _write_table(table, fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, final)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)
    return final


def read_part(path: str | Path) -> tuple[pa.Table, PartInfo]:
    """Read and validate one visible part; raise PartError naming the file and the fault."""
    path = Path(path)
    try:
        file_schema = pq.read_schema(path)
        # Explicit schema: a column an older part lacks reads as null instead of vanishing.
        table = pq.read_table(path, schema=ROW_SCHEMA)
    except (OSError, pa.ArrowException) as exc:
        raise PartError(
            f"{path}: unreadable part ({exc}); hint: delete it and rerun to recompute that case"
        ) from exc
    unknown = sorted(set(file_schema.names) - set(ROW_SCHEMA.names))
    if unknown:
        raise PartError(f"{path}: columns {unknown} are not in ROW_SCHEMA")
    raw = file_schema.metadata or {}
    if META_KEY not in raw:
        raise PartError(f"{path}: not a part file (no {META_KEY.decode()} metadata)")
    meta = json.loads(raw[META_KEY])
    key = str(meta.get("key"))
    if path.name != f"{key}{PART_SUFFIX}":
        raise PartError(f"{path}: holds the rows of key {key!r}, not of its file name")
    if meta.get("n_rows") != table.num_rows:
        raise PartError(f"{path}: {table.num_rows} rows, its metadata says {meta.get('n_rows')}")
    return table.replace_schema_metadata(None), PartInfo(str(path), key, table.num_rows, meta)


def part_exists_and_valid(directory: str | Path, key: str) -> Path | None:
    """The part's path when the case's part exists and validates, else None."""
    path = part_path(directory, key)
    if not path.exists():
        return None
    try:
        read_part(path)
    except PartError:
        return None
    return path


def list_parts(directory: str | Path) -> list[Path]:
    """Visible part files of a directory, sorted by name (temps are hidden and skipped)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    return sorted(
        p for p in directory.iterdir() if p.name.endswith(PART_SUFFIX) and p.name[0] not in "._"
    )


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def stale_temps(directory: str | Path) -> list[Path]:
    """Hidden temps whose writer process is gone (killed mid-write)."""
    directory = Path(directory)
    if not directory.is_dir():
        return []
    out = []
    for p in sorted(directory.glob(f".*{TEMP_SUFFIX}")):
        fields = p.name[1 : -len(TEMP_SUFFIX)].split(".")
        pid = int(fields[1]) if len(fields) == 3 and fields[1].isdigit() else -1
        if pid != os.getpid() and (pid < 0 or not _pid_alive(pid)):
            out.append(p)
    return out


def clean_stale_temps(directory: str | Path) -> list[Path]:
    """Remove the temps left by dead writers; return what was removed."""
    removed = []
    for p in stale_temps(directory):
        try:
            p.unlink()
        except FileNotFoundError:  # another worker cleaned it first
            continue
        removed.append(p)
    return removed
