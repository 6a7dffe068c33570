"""Command-line options of the recorder, and turning them into a resolved config + run plan."""

from __future__ import annotations

import os
import sys
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from .code import DEFAULT_CODE_PATHS, code_fingerprint
from .manifest import now_iso
from .resolve import Resolved, resolve
from .runs import RESUME_MODES, RunPlan, plan_run

FAST_CONFIG = "configs/fast.yaml"
DEFAULT_RUNS_DIR = "artifacts/runs"


def add_options(parser: pytest.Parser) -> None:
    """Register --config, --fast, --model, --dtype, --run-id, --resume, --report/--no-report,
    --runs-dir."""
    from ..config import DTYPES

    group = parser.getgroup("steering_reliability", "steering-reliability recording")
    group.addoption(
        "--config",
        dest="sr_config",
        metavar="PATH",
        default=None,
        help="experiment config YAML (default: configs/default.yaml)",
    )
    group.addoption(
        "--fast",
        dest="sr_fast",
        action="store_true",
        default=False,
        help=f"use {FAST_CONFIG} (smoke-sized)",
    )
    group.addoption(
        "--model",
        dest="sr_model",
        metavar="NAME",
        default=None,
        help="override model.name of the config",
    )
    group.addoption(
        "--dtype",
        dest="sr_dtype",
        choices=DTYPES,
        default=None,
        help="override model.dtype of the config (auto: bfloat16 only where the hardware has it "
        "and the project's agreement report allows it)",
    )
    group.addoption(
        "--run-id",
        dest="sr_run_id",
        metavar="ID",
        default=None,
        help="record into artifacts/runs/ID (default: a new id, or see --resume)",
    )
    group.addoption(
        "--resume",
        dest="sr_resume",
        choices=RESUME_MODES,
        default="auto",
        help="auto: continue the latest run of the same config; never: new run; "
        "must: fail unless there is an earlier run (default: auto)",
    )
    group.addoption(
        "--report",
        dest="sr_report",
        action="store_true",
        default=True,
        help="render the report after the session (default)",
    )
    group.addoption(
        "--no-report",
        dest="sr_report",
        action="store_false",
        help="do not render the report after the session",
    )
    parser.addini(
        "sr_code_paths",
        "files or folders (relative to the rootdir) whose .py files, with the "
        "steering_reliability package, make the code fingerprint a run resumes only with "
        f"(default: {' '.join(DEFAULT_CODE_PATHS)})",
        type="linelist",
        default=list(DEFAULT_CODE_PATHS),
    )
    group.addoption(
        "--runs-dir",
        dest="sr_runs_dir",
        metavar="DIR",
        default=DEFAULT_RUNS_DIR,
        help=f"where run directories live, relative to the rootdir (default {DEFAULT_RUNS_DIR})",
    )


@dataclass(frozen=True)
class Options:
    """The recorder's options, as plain values."""

    config_path: str | None
    overrides: dict[str, Any]
    run_id: str | None
    resume: str
    report: bool
    runs_dir: str
    explicit: bool  # the user asked for recording explicitly: plan eagerly, fail early

    @classmethod
    def from_config(cls, config: pytest.Config) -> Options:
        """Read (and check) the options of one pytest session."""
        get = config.getoption
        path: str | None = get("sr_config")
        if get("sr_fast"):
            if path is not None:
                raise pytest.UsageError(
                    f"--fast and --config are exclusive (--fast means --config {FAST_CONFIG})"
                )
            path = str(config.rootpath / FAST_CONFIG)
        model: str | None = get("sr_model")
        dtype: str | None = get("sr_dtype")
        runs_dir = Path(get("sr_runs_dir"))
        if not runs_dir.is_absolute():
            runs_dir = config.rootpath / runs_dir
        explicit = (
            path is not None
            or model is not None
            or dtype is not None
            or get("sr_run_id") is not None
            or get("sr_resume") != "auto"
        )
        return cls(
            config_path=path,
            overrides={
                **({"model.name": model} if model is not None else {}),
                **({"model.dtype": dtype} if dtype is not None else {}),
            },
            run_id=get("sr_run_id"),
            resume=get("sr_resume"),
            report=bool(get("sr_report")),
            runs_dir=str(runs_dir),
            explicit=explicit,
        )


def resolve_for(config: pytest.Config, options: Options) -> Resolved:
    """Load the config through the `pytest_sr_load_config` hook and resolve it."""
    obj = config.hook.pytest_sr_load_config(
        config=config, path=options.config_path, overrides=dict(options.overrides)
    )

    def input_files(data: dict[str, Any]) -> list[str] | None:
        files: list[str] | None = config.hook.pytest_sr_input_files(config=config, resolved=data)
        return files

    return resolve(obj, config.rootpath, options.config_path, input_files)


def session_info(config: pytest.Config) -> dict[str, Any]:
    """One session's identity in run.json (plain values)."""
    workers = (
        config.getoption("numprocesses", None) if config.pluginmanager.hasplugin("xdist") else None
    )
    return {
        "id": uuid.uuid4().hex,
        "started": now_iso(),
        "argv": [str(a) for a in sys.argv],
        "args": [str(a) for a in config.invocation_params.args],
        "workers": int(workers) if isinstance(workers, int) else 0,
        "pid": os.getpid(),
    }


def plan_for(config: pytest.Config, options: Options, resolved: Resolved) -> RunPlan:
    """The controller's plan for this session (reads the disk, creates nothing)."""
    return plan_run(
        options.runs_dir,
        config=resolved.data,
        inputs=resolved.inputs,
        run_id=options.run_id,
        resume=options.resume,
        config_source=resolved.source,
        session=session_info(config),
        code=code_fingerprint(config.rootpath, config.getini("sr_code_paths")),
    )
