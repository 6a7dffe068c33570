"""A run's identity and provenance: run.json, the code fingerprint, and which run a session
records into (new, resumed, or refused).

run.json holds the resolved config and its hash, the sha256 of every input file, seeds, package
versions, git state, thread counts, one entry per pytest session with the code it ran, and the
expected cases (so `status` works from disk alone). Every write is read-modify-write under a
file lock, published atomically. The controller plans once (`plan_run`, reading the disk only)
and hands the plan to every xdist worker as plain values, so all processes agree on one run.
"""

from __future__ import annotations

import contextlib
import fnmatch
import hashlib
import importlib.metadata
import json
import os
import platform
import re
import secrets
import subprocess
import sys
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pydantic
from filelock import FileLock

from steering_reliability.atomic import (
    atomic_write_bytes,
    atomic_write_json,
    canonical_json,
    digest,
    file_sha256,
    replace_symlink,
)
from steering_reliability.errors import ConfigError, ResumeError
from steering_reliability.records import DEFAULT_CODE_PATHS, RESUME_MODES

MANIFEST_NAME = "run.json"
LATEST_LINK, LATEST_FILE = "latest", "LATEST"
PACKAGES = ("steering-reliability", "torch", "transformer-lens", "transformers", "numpy",
            "pandas", "pyarrow", "pytest", "pytest-xdist", "gguf", "safetensors")  # fmt: skip
THREAD_ENV = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
# Package code that only reads results.parquet: editing it changes no row (`make report`
# re-renders), so it does not split a run. Patterns on the path inside the package: the report
# kit, the report, and each study's report module or folder. Everything else, the statistics
# that decide a recorded verdict included (metrics/stats.py), is in the fingerprint.
REPORT_ONLY = ("analysis/*", "report.py", "studies/*/report.py", "studies/*/report/*")
_RUN_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")


def now_iso() -> str:
    """The current UTC time, ISO 8601 with seconds (sortable as text)."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def config_hash(resolved: Mapping[str, Any]) -> str:
    """blake2b (8 bytes) of the canonical JSON of a resolved config dict: the one config hash."""
    return digest(dict(resolved), size=8)


def to_plain(raw: Any) -> dict[str, Any]:
    """A config's dict as plain JSON values (tuples -> lists); refuse what JSON cannot hold."""
    if hasattr(raw, "to_dict"):
        raw = raw.to_dict()
    if not isinstance(raw, Mapping):
        raise ConfigError("the config loader returned neither a mapping nor an object with "
                          "to_dict()", value=type(raw).__name__)  # fmt: skip
    try:
        plain: dict[str, Any] = json.loads(canonical_json(dict(raw)))
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"resolved config is not plain JSON ({exc})",
                          hint="configs hold str/int/float/bool/None/lists/mappings only") from exc  # fmt: skip
    return plain


def flatten(tree: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """{'model': {'name': 'x'}} -> {'model.name': 'x'} (lists stay whole values)."""
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping) and value:
            out.update(flatten(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def input_files(data: Mapping[str, Any], rootdir: Path) -> dict[str, str]:
    """{path: sha256} of every config string that names an existing file (relative to rootdir
    or absolute): the inputs a run is identified by, beside its config."""
    found: dict[str, str] = {}
    for value in flatten(data).values():
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str) or not item or len(item) > 1024 or "\n" in item:
                continue
            p = Path(item) if Path(item).is_absolute() else rootdir / item
            if p.is_file():
                found.setdefault(item, file_sha256(p))
    return found


def differences(
    old_config: Mapping[str, Any],
    new_config: Mapping[str, Any],
    old_inputs: Mapping[str, str] | None = None,
    new_inputs: Mapping[str, str] | None = None,
) -> list[str]:
    """Lines `key: earlier != now` for every config key and input file that differs."""

    def shown(tree: dict[str, Any], key: str) -> str:
        text = repr(tree[key]) if key in tree else "<absent>"
        return text if len(text) <= 80 else text[:77] + "..."

    a, b = flatten(old_config), flatten(new_config)
    lines = [f"{k}: {shown(a, k)} != {shown(b, k)}"
             for k in sorted(set(a) | set(b)) if shown(a, k) != shown(b, k) or a.get(k) != b.get(k)]  # fmt: skip
    ia, ib = dict(old_inputs or {}), dict(new_inputs or {})
    lines += [f"file {p}: sha256 {ia.get(p, '<absent>')[:12]} != {ib.get(p, '<absent>')[:12]}"
              for p in sorted(set(ia) | set(ib)) if ia.get(p) != ib.get(p)]  # fmt: skip
    return lines


# ---------------------------------------------------------------- the code fingerprint


def _py_files(root: Path) -> list[Path]:
    if root.is_file():
        return [root] if root.suffix == ".py" else []
    return sorted(p for p in root.rglob("*.py") if "__pycache__" not in p.parts)


def code_fingerprint(
    rootdir: str | Path, paths: Iterable[str] = DEFAULT_CODE_PATHS, package: Path | None = None
) -> dict[str, Any]:
    """{"digest", "files": {name: sha256[:16]}} over the package's .py files (the report's aside)
    and those of the given paths. Rows depend on code as much as on the config, and the git
    commit cannot tell (an edit need not be committed): `--resume auto` continues a run only
    with the same code, and names the files that changed when it starts a new one."""
    sha = lambda p: hashlib.sha256(p.read_bytes()).hexdigest()[:16]  # noqa: E731
    package = package or Path(__file__).resolve().parents[1]  # steering_reliability/
    files = {f"{package.name}/{p.relative_to(package).as_posix()}": sha(p)
             for p in _py_files(package) if not report_only(p.relative_to(package).as_posix())}  # fmt: skip
    root = Path(rootdir).resolve()
    for entry in paths:
        for p in _py_files(root / entry) if (root / entry).exists() else []:
            files.setdefault(p.resolve().relative_to(root).as_posix(), sha(p))
    return {"digest": digest(sorted(files.items())), "files": dict(sorted(files.items()))}


def report_only(name: str) -> bool:
    """Whether a package file (path inside the package) only renders reports."""
    return any(fnmatch.fnmatchcase(name, pattern) for pattern in REPORT_ONLY)


def changed_files(
    old: Mapping[str, Any] | None, new: Mapping[str, Any], limit: int = 0
) -> list[str]:
    """Files added, removed or edited between two fingerprints, sorted (the first `limit` and
    a count of the rest, where `limit` is given)."""
    if not old or "files" not in old:
        return ["no fingerprint recorded by the earlier run"]
    a, b = dict(old["files"]), dict(new.get("files", {}))
    found = sorted(name for name in set(a) | set(b) if a.get(name) != b.get(name))
    if limit and len(found) > limit:
        return [*found[:limit], f"and {len(found) - limit} more"]
    return found


def _changes(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> str:
    return ", ".join(changed_files(old, new, limit=6)).replace(", and ", " and ")


def session_code_versions(manifest: Mapping[str, Any]) -> list[str]:
    """The distinct code digests a run's sessions ran with, in order of first use."""
    codes = [s.get("code") for s in manifest.get("sessions") or [] if isinstance(s, Mapping)]
    return list(dict.fromkeys(c for c in codes if isinstance(c, str)))


# ---------------------------------------------------------------- run.json


def environment(rootdir: str | Path) -> dict[str, Any]:
    """Versions, git state and thread counts of this process (plain values only)."""

    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(["git", "--no-optional-locks", *args], cwd=rootdir,
                                 capture_output=True, text=True, timeout=10, check=False)  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout.strip() if out.returncode == 0 else None

    def version(name: str) -> str | None:
        with contextlib.suppress(importlib.metadata.PackageNotFoundError):
            return importlib.metadata.version(name)
        return None

    status = git("status", "--porcelain")
    torch = sys.modules.get("torch")  # never imported just to ask
    cuda = torch.cuda.get_device_name() if torch and torch.cuda.is_available() else None
    return {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "packages": {name: version(name) for name in PACKAGES},
        "git": {"sha": git("rev-parse", "HEAD"), "dirty": None if status is None else bool(status)},
        "cpu_count": os.cpu_count(),
        "torch_num_threads": torch.get_num_threads() if torch is not None else None,
        # the GPU a run could use (model.device auto picks it); None on a machine without one
        "cuda_device": cuda,
        "thread_env": {k: os.environ.get(k) for k in THREAD_ENV},
    }


def read_manifest(run_dir: str | Path) -> dict[str, Any] | None:
    """The run's manifest, None when there is none; ResumeError when it is unreadable."""
    path = Path(run_dir) / MANIFEST_NAME
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except json.JSONDecodeError as exc:
        raise ResumeError(f"{path}: not valid JSON ({exc}); cannot tell what this run was") from exc
    if not isinstance(data, dict) or "config_hash" not in data:
        raise ResumeError(f"{path}: not a run manifest (no config_hash)")
    return data


def check_resumable(manifest: Mapping[str, Any], config: Mapping[str, Any], cfg_hash: str,
                    inputs: Mapping[str, str], where: str) -> None:  # fmt: skip
    """Refuse to add to a run recorded with another configuration; name what differs."""
    lines = differences(manifest.get("config", {}), config, manifest.get("inputs", {}), inputs)
    if manifest.get("config_hash") != cfg_hash or lines:
        shown = "\n".join(f"  {line}" for line in lines) or "  (config hash differs)"
        raise ResumeError(
            f"run {manifest.get('run_id')!r} ({where}) was recorded with a different "
            f"configuration (earlier != now):\n{shown}\nhint: pass --resume never (or another "
            "--run-id) to start a new run, or restore the earlier configuration to finish this one"
        )


@contextmanager
def _editing(run_dir: Path) -> Iterator[dict[str, Any]]:
    """run.json under its file lock: the block edits its data ({} where there is none yet),
    which is then published atomically if it changed."""
    run_dir.mkdir(parents=True, exist_ok=True)
    with FileLock(str(run_dir / f".{MANIFEST_NAME}.lock"), timeout=120):
        data = read_manifest(run_dir) or {}
        before = canonical_json(data)
        yield data
        if data and canonical_json(data) != before:
            atomic_write_json(run_dir / MANIFEST_NAME, data)


def annotate(run_dir: str | Path, key: str, value: Any) -> None:
    """Record one provenance fact (e.g. the model weights hash); a changed value is refused."""
    where = Path(run_dir) / MANIFEST_NAME
    json.dumps(value, allow_nan=False)  # plain JSON values only
    with _editing(Path(run_dir)) as data:
        if not data:
            raise ResumeError(
                f"{run_dir}: no {MANIFEST_NAME} to annotate (the run has not started)"
            )
        old = data["provenance"].get(key)
        if old is not None and old != value:
            raise ResumeError(
                f"{where}: provenance.{key}: {repr(old)[:80]} != {repr(value)[:80]}; the run was "
                "recorded with a different input; start a new run (--resume never)"
            )
        data["provenance"][key] = value


def finish_run(run_dir: str | Path, session_id: str, summary: Mapping[str, Any]) -> None:
    """Write the session's end time and summary (the controller calls this at session end)."""
    with _editing(Path(run_dir)) as data:
        for entry in data.get("sessions", []):
            if entry.get("id") == session_id:
                data["ended"] = now_iso()
                entry.update(dict(summary), ended=data["ended"])


# ---------------------------------------------------------------- planning: which run


class RunPlan(pydantic.BaseModel, frozen=True):
    """The run a session records into, decided once by the controller. Every process gets it:
    xdist workers as `model_dump(mode="json")` (plain values, checked by pydantic on the way
    back in, `model_validate`). Session fixtures see it as `sr_run`."""

    run_id: str
    run_dir: Path
    runs_dir: Path
    config_hash: str  # computed once, by `plan_run`; everything else takes it from here
    config: dict[str, Any]
    inputs: dict[str, str]
    config_source: str = ""
    resumed: bool = False
    session: dict[str, Any] = {}
    code: dict[str, Any] = {}  # code_fingerprint
    note: str = ""  # said to the user: why a new run, or that a run continues with other code

    def annotate(self, key: str, value: Any) -> None:
        """Record a provenance fact in run.json (e.g. model_weights_hash); a change is refused."""
        annotate(self.run_dir, key, value)

    def start(self, cases: Mapping[str, Mapping[str, Any]], rootdir: str | Path) -> None:
        """Create or extend run.json before any case runs (idempotent across xdist workers);
        each session entry keeps the code digest it ran with, so a run continued after an edit
        says so."""
        env = environment(rootdir)
        session = {**self.session, "ended": None, "code": self.code.get("digest"),
                   "git": env["git"], "torch_num_threads": env["torch_num_threads"]}  # fmt: skip
        with _editing(self.run_dir) as data:
            if not data:
                seeds = {k: v for k, v in flatten(self.config).items()
                         if "seed" in k.rsplit(".", 1)[-1]}  # fmt: skip
                data.update(format=1, run_id=self.run_id, config_hash=self.config_hash,
                            config=self.config, inputs=self.inputs, seeds=seeds, provenance={},
                            environment=env, started=self.session.get("started") or now_iso(),
                            ended=None, sessions=[], cases={},
                            config_source=self.config_source)  # fmt: skip
            else:
                check_resumable(data, self.config, self.config_hash, self.inputs,
                                str(self.run_dir / MANIFEST_NAME))  # fmt: skip
            if not any(s.get("id") == session.get("id") for s in data["sessions"]):
                data["sessions"].append(session)
                data["ended"] = None
                if self.code:
                    data["code"] = self.code
            data["cases"].update({key: dict(case) for key, case in cases.items()})


def new_run_id(cfg_hash: str) -> str:
    """A fresh, sortable, collision-safe run id: `<UTC time>-<config hash>-<random>`."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    return f"{stamp}-{cfg_hash[:8]}-{secrets.token_hex(2)}"


def scan_runs(runs_dir: Path) -> list[tuple[Path, dict[str, Any]]]:
    """Runs with a readable manifest, oldest first (by start time, then id)."""
    found = []
    for d in sorted(runs_dir.iterdir()) if runs_dir.is_dir() else []:
        if d.is_dir() and not d.is_symlink() and not d.name.startswith("."):
            try:
                manifest = read_manifest(d)
            except ResumeError:
                continue
            if manifest is not None:
                found.append((d, manifest))
    return sorted(found, key=lambda dm: (str(dm[1].get("started") or ""), dm[0].name))


def plan_run(runs_dir: str | Path, *, config: Mapping[str, Any], inputs: Mapping[str, str],
             run_id: str | None = None, resume: str = "auto", config_source: str = "",
             session: Mapping[str, Any] | None = None,
             code: Mapping[str, Any] | None = None) -> RunPlan:  # fmt: skip
    """Pick the run directory for this session, reading the disk only.

    auto: the given --run-id, else the latest run with the same config hash, input files and
    code fingerprint, else a new run. never: always a new run. must: an earlier run, or
    ResumeError. An explicit --run-id continues that run even when the code changed (the
    plan's note says so, and run.json records each session's code).
    """
    if resume not in RESUME_MODES:
        raise ValueError(f"--resume {resume!r}: expected one of {', '.join(RESUME_MODES)}")
    runs_dir, cfg, code = Path(runs_dir), dict(config), dict(code or {})
    cfg_hash = config_hash(cfg)  # the one place the recorder hashes the config
    new_run = runs_dir / new_run_id(cfg_hash)
    run_dir, resumed, note = new_run, False, ""
    if run_id is not None:
        if not _RUN_ID.match(run_id):
            raise ValueError(f"--run-id {run_id!r}: expected letters, digits, '.', '_' or '-' "
                             "(at most 128, not starting with '.' or '-')")  # fmt: skip
        run_dir = runs_dir / run_id
        manifest = read_manifest(run_dir)
        if manifest is None and resume == "must":
            raise ResumeError(
                f"--resume must: no earlier run {run_id!r} ({run_dir / MANIFEST_NAME} not found); "
                f"hint: runs are in {runs_dir}, or drop --resume must to start it"
            )
        if manifest is not None and resume == "never":
            raise ResumeError(
                f"run {run_id!r} already exists at {run_dir} and --resume never was given; "
                "hint: drop --run-id for a new run id, or use --resume auto to continue it"
            )
        if manifest is not None:
            check_resumable(manifest, cfg, cfg_hash, inputs, str(run_dir / MANIFEST_NAME))
            resumed = True
            if (manifest.get("code") or {}).get("digest") != code.get("digest"):
                note = (f"run {run_dir.name} continues with changed code "
                        f"({_changes(manifest.get('code'), code)}); the cases it recorded "
                        "before keep the rows the earlier code wrote")  # fmt: skip
    elif resume != "never":
        runs = scan_runs(runs_dir)
        same = [(d, m) for d, m in runs
                if m.get("config_hash") == cfg_hash and m.get("inputs", {}) == dict(inputs)]  # fmt: skip
        matching = [d for d, m in same if (m.get("code") or {}).get("digest") == code.get("digest")]
        if matching:
            run_dir, resumed = matching[-1], True
        elif same:
            earlier, changed = same[-1][0].name, _changes(same[-1][1].get("code"), code)
            if resume == "must":
                raise ResumeError(
                    f"--resume must: run {earlier!r} has this configuration but was recorded by "
                    f"other code (changed: {changed}); hint: --run-id {earlier} adds to it "
                    "anyway (run.json records the code of each session), or drop --resume must "
                    "to start a new run"
                )
            note = (f"new run {new_run.name}: the code changed since run {earlier} ({changed}), "
                    f"so its rows are not mixed with the earlier ones; --run-id {earlier} would "
                    "add to that run anyway")  # fmt: skip
        elif resume == "must":
            head = f"--resume must: no earlier run with this configuration in {runs_dir}"
            if not runs:
                raise ResumeError(
                    f"{head} (no runs there at all); hint: run once without --resume must"
                )
            latest_dir, latest = runs[-1]
            lines = differences(latest.get("config", {}), cfg, latest.get("inputs", {}), inputs)
            shown = "\n".join(f"  {line}" for line in lines)
            raise ResumeError(f"{head}; the latest run {latest_dir.name!r} differs (earlier != now):"
                              f"\n{shown}\nhint: restore that configuration, or drop --resume must "
                              "to start a new run")  # fmt: skip
    return RunPlan(run_id=run_dir.name, run_dir=run_dir, runs_dir=runs_dir, config_hash=cfg_hash,
                   config=cfg, inputs=dict(inputs), config_source=config_source, resumed=resumed,
                   session=dict(session or {}), code=code, note=note)  # fmt: skip


def update_latest(runs_dir: str | Path, run_dir: str | Path) -> Path:
    """Point `runs_dir/latest` at the run (a relative symlink, replaced atomically), and write a
    `LATEST` text file with the run id for file systems without symlinks."""
    runs_dir, run_dir = Path(runs_dir), Path(run_dir)
    atomic_write_bytes(runs_dir / LATEST_FILE, (run_dir.name + "\n").encode())
    link = runs_dir / LATEST_LINK
    return link if replace_symlink(link, run_dir.name) else runs_dir / LATEST_FILE


def resolve_run_dir(path: str | Path) -> Path:
    """A run directory from a path that may be `runs/latest` (symlink or LATEST fallback)."""
    path = Path(path)
    if not path.is_dir() and path.name == LATEST_LINK and (path.parent / LATEST_FILE).is_file():
        return path.parent / (path.parent / LATEST_FILE).read_text(encoding="utf-8").strip()
    return path
