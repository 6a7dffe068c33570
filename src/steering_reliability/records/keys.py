"""Canonical JSON, content hashes and durable renames (no pyarrow: cheap to import)."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

PART_SUFFIX = ".parquet"


def canonical_json(obj: Any) -> str:
    """The one JSON spelling of a value: sorted keys, no spaces, no NaN (hash input)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest(obj: Any, size: int = 8) -> str:
    """blake2b hex digest of the canonical JSON of `obj` (never Python's salted `hash()`)."""
    return hashlib.blake2b(canonical_json(obj).encode(), digest_size=size).hexdigest()


def case_key(cell: Mapping[str, Any], config_hash: str) -> str:
    """The key of one case: blake2b of the canonical JSON of its cell plus the config hash."""
    return digest({"cell": dict(cell), "config_hash": config_hash}, size=16)


def parts_dir(run_dir: str | Path, config_hash: str) -> Path:
    """Where the parts of one configuration of a run live."""
    return Path(run_dir) / "parts" / config_hash


def part_path(directory: str | Path, key: str) -> Path:
    """The visible file name of a finished case."""
    return Path(directory) / f"{key}{PART_SUFFIX}"


FAILED_DIR = "failed"


def failed_part_path(directory: str | Path, key: str) -> Path:
    """Where a case that failed keeps its rows: never counts as done, so the case reruns."""
    return Path(directory) / FAILED_DIR / f"{key}{PART_SUFFIX}"
