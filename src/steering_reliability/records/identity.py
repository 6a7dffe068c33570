"""Which collected tests are recording cases, and the identity (cell, key) of each.

The cell is built from the item (path, class, function, parameters), never parsed from the
node id: `--dist loadgroup` rewrites node ids, and workers must agree on every key.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .keys import case_key

FIXTURE = "record"
PLUGIN_MODULE = "steering_reliability.pytest_plugin"  # where the `record` fixture is defined


@dataclass(frozen=True)
class CaseSpec:
    """Identity of one recording case: its cell, key and readable ids."""

    key: str
    cell: dict[str, Any]
    case_id: str
    experiment: str
    nodeid: str


SPEC = pytest.StashKey[CaseSpec]()


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def cell_of(item: pytest.Item, rootpath: Path) -> dict[str, Any]:
    """The cell of a case: test path + class + function name + its parameters.

    Built from the item, never parsed from the node id (`--dist loadgroup` rewrites ids).
    Parameters that are not plain JSON are identified by the parametrize id instead.
    """
    try:
        path = item.path.relative_to(rootpath).as_posix()
    except ValueError:
        path = item.path.name
    classes = [n.name for n in item.listchain() if isinstance(n, pytest.Class)]
    name = getattr(item, "originalname", item.name)
    cell: dict[str, Any] = {"test": "::".join([path, *classes, name]), "params": {}}
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        params = dict(sorted(callspec.params.items()))
        cell["params"] = {k: v for k, v in params.items() if _jsonable(v)}
        if len(cell["params"]) < len(params):
            cell["id"] = callspec.id
    return cell


def uses_record(item: pytest.Item) -> bool:
    """Whether the item really gets this plugin's `record` fixture.

    A test may parametrize an argument named `record`, or a conftest may define its own
    fixture of that name; only a chain of overrides that ends in ours counts.
    """
    info = getattr(item, "_fixtureinfo", None)
    defs = info.name2fixturedefs.get(FIXTURE, ()) if info is not None else ()
    for fixturedef in reversed(defs):
        if getattr(fixturedef.func, "__module__", "") == PLUGIN_MODULE:
            return True
        if FIXTURE not in fixturedef.argnames:  # an override that does not wrap ours
            return False
    return False


def spec_of(item: pytest.Item, rootpath: Path, config_hash: str) -> CaseSpec:
    """The CaseSpec of a collected item."""
    cell = cell_of(item, rootpath)
    callspec = getattr(item, "callspec", None)
    case_id = callspec.id if callspec is not None else getattr(item, "originalname", item.name)
    stem = item.path.stem
    experiment = stem[len("test_") :] if stem.startswith("test_") else stem
    return CaseSpec(case_key(cell, config_hash), cell, case_id, experiment, item.nodeid)
