"""Hooks a conftest.py can implement to plug its own configuration into the recorder."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest


@pytest.hookspec(firstresult=True)
def pytest_sr_load_config(
    config: pytest.Config, path: str | None, overrides: Mapping[str, Any]
) -> Any:
    """Called to load the run's configuration, once per process that needs it.

    `path` comes from --config (or configs/fast.yaml with --fast; None: the default config);
    `overrides` holds dotted keys (e.g. {"model.name": ...} from --model). Return a Config
    object with `to_dict()`, a dataclass or a mapping; the first non-None result wins. The
    default is `steering_reliability.config.load_config(path, overrides)`.
    """


@pytest.hookspec(firstresult=True)
def pytest_sr_input_files(config: pytest.Config, resolved: Mapping[str, Any]) -> list[str] | None:
    """Called to list the input files (prompt files...) whose sha256 identifies the run.

    Return None to use the default: every string in the resolved config that names an
    existing file (relative to the rootdir or absolute).
    """
