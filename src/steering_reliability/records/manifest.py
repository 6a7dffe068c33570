"""run.json: the provenance of a run, written before any case runs and checked on resume.

It holds the resolved config and its hash, the sha256 of every input file, seeds, package
versions, git commit + dirty flag, thread counts, start/end times, one entry per pytest
session that worked on the run, and the expected cases (so `status` works from disk alone).
Every write is read-modify-write under a file lock, then temp file + `os.replace`.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import platform
import subprocess
import sys
from collections.abc import Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ..atomic import atomic_write_bytes
from ..errors import ResumeError
from .keys import digest

MANIFEST_NAME = "run.json"
FORMAT_VERSION = 1
PACKAGES = (
    "steering-reliability",
    "torch",
    "transformer-lens",
    "transformers",
    "numpy",
    "pandas",
    "pyarrow",
    "pytest",
    "pytest-xdist",
    "gguf",
    "safetensors",
)
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")


def now_iso() -> str:
    """The current UTC time, ISO 8601 with seconds (sortable as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def config_hash(resolved: Mapping[str, Any]) -> str:
    """blake2b (8 bytes) of the canonical JSON of a resolved config dict."""
    return digest(dict(resolved), size=8)


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'model': {'name': 'x'}} -> {'model.name': 'x'} (lists stay whole values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


class _Absent:
    def __repr__(self) -> str:
        return "<absent>"


_ABSENT = _Absent()


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def differences(
    old_config: Mapping[str, Any],
    new_config: Mapping[str, Any],
    old_inputs: Mapping[str, str] | None = None,
    new_inputs: Mapping[str, str] | None = None,
) -> list[str]:
    """Lines `key: earlier != now` for every config key and input file that differs."""
    a, b = flatten(old_config), flatten(new_config)
    lines = [
        f"{k}: {_short(a.get(k, _ABSENT))} != {_short(b.get(k, _ABSENT))}"
        for k in sorted(set(a) | set(b))
        if a.get(k, _ABSENT) != b.get(k, _ABSENT)
    ]
    ia, ib = dict(old_inputs or {}), dict(new_inputs or {})
    for path in sorted(set(ia) | set(ib)):
        if ia.get(path) != ib.get(path):
            was, now = ia.get(path, "<absent>")[:12], ib.get(path, "<absent>")[:12]
            lines.append(f"file {path}: sha256 {was} != {now}")
    return lines


def _git(rootdir: Path, *args: str) -> str | None:
    try:
        out = subprocess.run(
            ["git", "--no-optional-locks", *args],
            cwd=rootdir,
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout.strip() if out.returncode == 0 else None


def environment(rootdir: str | Path) -> dict[str, Any]:
    """Versions, git state and thread counts of this process (plain values only)."""
    packages: dict[str, str | None] = {}
    for name in PACKAGES:
        try:
            packages[name] = importlib.metadata.version(name)
        except importlib.metadata.PackageNotFoundError:
            packages[name] = None
    sha = _git(Path(rootdir), "rev-parse", "HEAD")
    status = _git(Path(rootdir), "status", "--porcelain")
    torch = sys.modules.get("torch")  # never imported just to ask
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": packages,
        "git": {"sha": sha, "dirty": None if status is None else bool(status)},
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads() if torch is not None else None,
        "thread_env": {k: os.environ.get(k) for k in THREAD_ENV},
    }


def read_manifest(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's manifest, None when there is none; ResumeError when it is unreadable."""
    path = Path(run_dir) / MANIFEST_NAME
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ResumeError(f"{path}: not valid JSON ({exc}); cannot tell what this run was") from exc
    if not isinstance(data, dict) or "config_hash" not in data:
        raise ResumeError(f"{path}: not a run manifest (no config_hash)")
    return data


def write_json_atomic(path: str | Path, obj: Any) -> None:
    """Write JSON through a hidden temp file in the same folder, fsync, os.replace."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    atomic_write_bytes(path, text.encode("utf-8"))


def _lock(run_dir: Path) -> Any:
    from filelock import FileLock

    return FileLock(str(run_dir / f".{MANIFEST_NAME}.lock"), timeout=120)


def check_resumable(
    manifest: Mapping[str, Any], config: Mapping[str, Any], inputs: Mapping[str, str], where: str
) -> None:
    """Refuse to add to a run recorded with another configuration; name what differs."""
    lines = differences(manifest.get("config", {}), config, manifest.get("inputs", {}), inputs)
    if manifest.get("config_hash") != config_hash(config) or lines:
        shown = "\n".join(f"  {line}" for line in lines) or "  (config hash differs)"
        raise ResumeError(
            f"run {manifest.get('run_id')!r} ({where}) was recorded with a different "
            f"configuration (earlier != now):\n{shown}\n"
            "hint: pass --resume never (or another --run-id) to start a new run, "
            "or restore the earlier configuration to finish this one"
        )


def start_run(
    run_dir: str | Path,
    *,
    run_id: str,
    config: Mapping[str, Any],
    inputs: Mapping[str, str],
    session: Mapping[str, Any],
    cases: Mapping[str, Mapping[str, Any]],
    rootdir: str | Path,
    extra: Mapping[str, Any] | None = None,
    code: Mapping[str, Any] | None = None,
) -> dict[str, Any]:
    """Create or extend run.json before any case runs (idempotent across xdist workers).

    `code` (records.code.code_fingerprint) becomes the run's current code; each session
    entry keeps the digest it ran with, so a run continued after an edit says so.
    """
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    with _lock(run_dir):
        data = read_manifest(run_dir)
        if data is None:
            flat = flatten(config)
            data = {
                "format": FORMAT_VERSION,
                "run_id": run_id,
                "config_hash": config_hash(config),
                "config": dict(config),
                "inputs": dict(inputs),
                "seeds": {k: v for k, v in flat.items() if "seed" in k.rsplit(".", 1)[-1]},
                "provenance": {},
                "environment": environment(rootdir),
                "started": session.get("started") or now_iso(),
                "ended": None,
                "sessions": [],
                "cases": {},
                **dict(extra or {}),
            }
        else:
            check_resumable(data, config, inputs, str(run_dir / MANIFEST_NAME))
        if not any(s.get("id") == session.get("id") for s in data["sessions"]):
            env = environment(rootdir)
            data["sessions"].append(
                {
                    **dict(session),
                    "ended": None,
                    "git": env["git"],
                    "torch_num_threads": env["torch_num_threads"],
                    "code": (code or {}).get("digest"),
                }
            )
            data["ended"] = None
            if code:
                data["code"] = dict(code)
        for key, case in cases.items():
            data["cases"][key] = dict(case)
        write_json_atomic(run_dir / MANIFEST_NAME, data)
    return data


def annotate(run_dir: str | Path, key: str, value: Any) -> None:
    """Record one provenance fact (e.g. the model weights hash); a changed value is refused."""
    run_dir = Path(run_dir)
    json.dumps(value, allow_nan=False)  # plain JSON values only
    with _lock(run_dir):
        data = read_manifest(run_dir)
        if data is None:
            raise ResumeError(
                f"{run_dir}: no {MANIFEST_NAME} to annotate (the run has not started)"
            )
        old = data["provenance"].get(key)
        if old is not None and old != value:
            raise ResumeError(
                f"{run_dir / MANIFEST_NAME}: provenance.{key}: {_short(old)} != {_short(value)}; "
                "the run was recorded with a different input; start a new run (--resume never)"
            )
        if old != value:
            data["provenance"][key] = value
            write_json_atomic(run_dir / MANIFEST_NAME, data)


def finish_run(run_dir: str | Path, session_id: str, summary: Mapping[str, Any]) -> None:
    """Write the session's end time and summary (the controller calls this at session end)."""
    run_dir = Path(run_dir)
    with _lock(run_dir):
        data = read_manifest(run_dir)
        if data is None:
            return
        end = now_iso()
        for entry in data["sessions"]:
            if entry.get("id") == session_id:
                entry.update(dict(summary), ended=end)
        data["ended"] = end
        write_json_atomic(run_dir / MANIFEST_NAME, data)
