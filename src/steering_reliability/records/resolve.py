"""Resolve the run's configuration into plain, hashable values.

The loader is a hook (`pytest_sr_load_config`, see hookspecs.py); by default it is
`steering_reliability.config.load_config`. Whatever it returns (a Config with `to_dict()`,
a dataclass or a mapping) becomes a plain JSON dict: its hash names the run's parts folder
and enters every case key, and the sha256 of every input file it names enters run.json.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from .keys import canonical_json
from .manifest import config_hash, file_sha256, flatten

# Keys of the resolved dict that say where the config came from, not what it is.
SOURCE_KEYS = ("source",)


@dataclass(frozen=True)
class Resolved:
    """A loaded config object with its plain identity dict, hash and input files' sha256."""

    obj: Any
    data: dict[str, Any]
    source: str
    hash: str
    inputs: dict[str, str]


def default_load(path: str | None, overrides: Mapping[str, Any]) -> Any:
    """`steering_reliability.config.load_config`, or a plain YAML/JSON read where it is absent."""
    try:
        from steering_reliability.config import load_config
    except ModuleNotFoundError as exc:
        if exc.name != "steering_reliability.config":
            raise
        return load_plain(path, overrides)
    return load_config(path, overrides)


def load_plain(path: str | None, overrides: Mapping[str, Any]) -> dict[str, Any]:
    """A YAML (or JSON) mapping with dotted overrides applied; {} without a path."""
    data: dict[str, Any] = {}
    if path is not None:
        import yaml

        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as exc:
            raise ConfigError(f"cannot read config: {exc}", file=str(path)) from exc
        if not isinstance(loaded, dict):
            raise ConfigError("expected a mapping at the top level", file=str(path), value=loaded)
        data = loaded
    for dotted, value in overrides.items():
        node = data
        *head, last = dotted.split(".")
        for part in head:
            node = node.setdefault(part, {})
        node[last] = value
    return data


def to_plain(obj: Any) -> dict[str, Any]:
    """A config object as a plain JSON dict (tuples -> lists); refuse what JSON cannot hold."""
    if hasattr(obj, "to_dict"):
        raw = obj.to_dict()
    elif dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        raw = dataclasses.asdict(obj)
    elif isinstance(obj, Mapping):
        raw = dict(obj)
    else:
        raise ConfigError(
            "the config loader returned neither a mapping nor an object with to_dict()",
            value=type(obj).__name__,
            hint="make the pytest_sr_load_config hook return a Config or a dict",
        )
    try:
        plain: dict[str, Any] = json.loads(canonical_json(raw))
    except (TypeError, ValueError) as exc:
        raise ConfigError(
            f"resolved config is not plain JSON ({exc})",
            hint="configs hold str/int/float/bool/None/lists/mappings only, and no NaN",
        ) from exc
    return plain


def guess_input_files(data: Mapping[str, Any], rootdir: Path) -> list[str]:
    """Config string values naming an existing file (relative to rootdir or absolute)."""
    found: list[str] = []
    for value in flatten(data).values():
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str) or not item or len(item) > 1024 or "\n" in item:
                continue
            p = Path(item)
            if (p if p.is_absolute() else rootdir / p).is_file() and item not in found:
                found.append(item)
    return found


def hash_inputs(files: Iterable[str | Path], rootdir: Path) -> dict[str, str]:
    """{path as named: sha256 of its bytes}."""
    out: dict[str, str] = {}
    for name in files:
        p = Path(name)
        out[str(name)] = file_sha256(p if p.is_absolute() else rootdir / p)
    return out


def resolve(
    obj: Any,
    rootdir: Path,
    path: str | None = None,
    input_files: Callable[[dict[str, Any]], Iterable[str | Path] | None] | None = None,
) -> Resolved:
    """Turn a loaded config into a Resolved (the hash excludes the `source` key).

    `input_files(data)` names the files to hash; None (or it returning None) guesses them.
    """
    data = to_plain(obj)
    source = str(data.get("source") or path or "")
    for key in SOURCE_KEYS:
        data.pop(key, None)
    files = input_files(data) if input_files is not None else None
    if files is None:
        files = guess_input_files(data, rootdir)
    return Resolved(obj, data, source, config_hash(data), hash_inputs(files, rootdir))
