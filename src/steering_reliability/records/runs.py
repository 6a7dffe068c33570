"""Which run directory a session records into: new, resumed, or refused.

The controller plans once (`plan_run`) and hands the plan to every xdist worker as plain
values (`RunPlan.to_wire`), so all processes agree on one run id. Planning only reads the
disk; the run directory is created later, by the first process that has a case to record.
"""

from __future__ import annotations

import os
import re
import secrets
import uuid
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..errors import ResumeError
from .code import changed_files, code_digest, describe_changes
from .keys import canonical_json
from .manifest import MANIFEST_NAME, check_resumable, config_hash, differences, read_manifest

RESUME_MODES = ("auto", "never", "must")
LATEST_LINK = "latest"
LATEST_FILE = "LATEST"
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


@dataclass(frozen=True)
class RunPlan:
    """Everything a process needs to record into a run; plain values only (it crosses xdist)."""

    run_id: str
    run_dir: str
    runs_dir: str
    config_hash: str
    config: dict[str, Any]
    inputs: dict[str, str]
    config_source: str = ""
    resumed: bool = False
    session: dict[str, Any] = field(default_factory=dict)
    code: dict[str, Any] = field(default_factory=dict)  # records.code.code_fingerprint
    note: str = ""  # said to the user: why a new run, or that a run continues with other code

    def to_wire(self) -> dict[str, Any]:
        """A dict of str/int/float/bool/None/list/dict only (checked by a JSON round trip)."""
        import json

        wire: dict[str, Any] = json.loads(canonical_json(asdict(self)))
        return wire

    @classmethod
    def from_wire(cls, wire: Mapping[str, Any]) -> RunPlan:
        """The inverse of `to_wire`."""
        return cls(**dict(wire))


def new_run_id(cfg_hash: str) -> str:
    """A fresh, sortable, collision-safe run id: `<UTC time>-<config hash>-<random>`."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{cfg_hash[:8]}-{secrets.token_hex(2)}"


def check_run_id(run_id: str) -> str:
    """Refuse run ids that are not one safe path component."""
    if not _RUN_ID.match(run_id):
        raise ValueError(
            f"--run-id {run_id!r}: expected letters, digits, '.', '_' or '-' "
            "(at most 128, not starting with '.' or '-')"
        )
    return run_id


def scan_runs(runs_dir: str | Path) -> list[tuple[Path, dict[str, Any]]]:
    """Runs with a readable manifest, oldest first (by start time, then id)."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    found = []
    for d in runs_dir.iterdir():
        if d.is_symlink() or not d.is_dir() or d.name.startswith("."):
            continue
        try:
            manifest = read_manifest(d)
        except ResumeError:
            continue
        if manifest is not None:
            found.append((d, manifest))
    return sorted(found, key=lambda dm: (str(dm[1].get("started") or ""), dm[0].name))


def _same_identity(manifest: Mapping[str, Any], cfg_hash: str, inputs: Mapping[str, str]) -> bool:
    return manifest.get("config_hash") == cfg_hash and manifest.get("inputs", {}) == dict(inputs)


def plan_run(
    runs_dir: str | Path,
    *,
    config: Mapping[str, Any],
    inputs: Mapping[str, str],
    run_id: str | None = None,
    resume: str = "auto",
    config_source: str = "",
    session: Mapping[str, Any] | None = None,
    code: Mapping[str, Any] | None = None,
) -> RunPlan:
    """Pick the run directory for this session, reading the disk only.

    auto: the given --run-id, else the latest run with the same config hash, input files and
    code fingerprint, else a new run. never: always a new run. must: an earlier run, or
    ResumeError. An explicit --run-id continues that run even when the code changed (the
    plan's note says so, and run.json records each session's code).
    """
    if resume not in RESUME_MODES:
        raise ValueError(f"--resume {resume!r}: expected one of {', '.join(RESUME_MODES)}")
    runs_dir = Path(runs_dir)
    cfg = dict(config)
    cfg_hash = config_hash(cfg)
    code = dict(code or {})
    resumed, note = False, ""
    if run_id is not None:
        run_dir = runs_dir / check_run_id(run_id)
        manifest = read_manifest(run_dir)
        if manifest is not None:
            if resume == "never":
                raise ResumeError(
                    f"run {run_id!r} already exists at {run_dir} and --resume never was given; "
                    "hint: drop --run-id for a new run id, or use --resume auto to continue it"
                )
            check_resumable(manifest, cfg, inputs, str(run_dir / MANIFEST_NAME))
            resumed = True
            if code_digest(manifest.get("code")) != code_digest(code):
                changed = describe_changes(changed_files(manifest.get("code"), code))
                note = (
                    f"run {run_dir.name} continues with changed code ({changed}); the cases it "
                    "recorded before keep the rows the earlier code wrote"
                )
        elif resume == "must":
            raise ResumeError(
                f"--resume must: no earlier run {run_id!r} ({run_dir / MANIFEST_NAME} not found); "
                f"hint: runs are in {runs_dir}, or drop --resume must to start it"
            )
    else:
        runs = scan_runs(runs_dir) if resume != "never" else []
        same = [(d, m) for d, m in runs if _same_identity(m, cfg_hash, inputs)]
        matching = [d for d, m in same if code_digest(m.get("code")) == code_digest(code)]
        if matching:
            run_dir, resumed = matching[-1], True
        elif same:
            earlier, old = same[-1]
            changed = describe_changes(changed_files(old.get("code"), code))
            if resume == "must":
                raise ResumeError(
                    f"--resume must: run {earlier.name!r} has this configuration but was "
                    f"recorded by other code (changed: {changed}); hint: --run-id {earlier.name} "
                    "adds to it anyway (run.json records the code of each session), or drop "
                    "--resume must to start a new run"
                )
            run_dir = runs_dir / new_run_id(cfg_hash)
            note = (
                f"new run {run_dir.name}: the code changed since run {earlier.name} ({changed}), "
                f"so its rows are not mixed with the earlier ones; --run-id {earlier.name} "
                "would add to that run anyway"
            )
        elif resume == "must":
            raise ResumeError(_nothing_to_resume(runs_dir, runs, cfg, inputs))
        else:
            run_dir = runs_dir / new_run_id(cfg_hash)
    return RunPlan(
        run_id=run_dir.name,
        run_dir=str(run_dir),
        runs_dir=str(runs_dir),
        config_hash=cfg_hash,
        config=cfg,
        inputs=dict(inputs),
        config_source=config_source,
        resumed=resumed,
        session=dict(session or {}),
        code=code,
        note=note,
    )


def _nothing_to_resume(
    runs_dir: Path,
    runs: list[tuple[Path, dict[str, Any]]],
    config: Mapping[str, Any],
    inputs: Mapping[str, str],
) -> str:
    head = f"--resume must: no earlier run with this configuration in {runs_dir}"
    if not runs:
        return f"{head} (no runs there at all); hint: run once without --resume must"
    latest_dir, latest = runs[-1]
    lines = differences(latest.get("config", {}), config, latest.get("inputs", {}), inputs)
    shown = "\n".join(f"  {line}" for line in lines)
    return (
        f"{head}; the latest run {latest_dir.name!r} differs (earlier != now):\n{shown}\n"
        "hint: restore that configuration, or drop --resume must to start a new run"
    )


def update_latest(runs_dir: str | Path, run_dir: str | Path) -> Path:
    """Point `runs_dir/latest` at the run (relative symlink, replaced atomically).

    A `LATEST` text file with the run id is written too, for file systems without symlinks.
    """
    runs_dir, run_dir = Path(runs_dir), Path(run_dir)
    link = runs_dir / LATEST_LINK
    temp = runs_dir / f".{LATEST_LINK}.{os.getpid()}.{uuid.uuid4().hex}"
    text_temp = runs_dir / f".{LATEST_FILE}.{os.getpid()}.{uuid.uuid4().hex}"
    text_temp.write_text(run_dir.name + "\n", encoding="utf-8")
    os.replace(text_temp, runs_dir / LATEST_FILE)
    if link.exists() and not link.is_symlink():
        return runs_dir / LATEST_FILE  # a real folder/file named latest: leave it alone
    try:
        os.symlink(run_dir.name, temp, target_is_directory=True)
        os.replace(temp, link)
    except OSError:
        temp.unlink(missing_ok=True)
        return runs_dir / LATEST_FILE
    return link


def resolve_run_dir(path: str | Path) -> Path:
    """A run directory from a path that may be `runs/latest` (symlink or LATEST fallback)."""
    path = Path(path)
    if path.is_dir():
        return path
    if path.name == LATEST_LINK and (path.parent / LATEST_FILE).is_file():
        run_id = (path.parent / LATEST_FILE).read_text(encoding="utf-8").strip()
        return path.parent / run_id
    return path
