"""Which code recorded a run: a digest of the library's and the experiments' Python sources.

Rows depend on code as much as on the config: a fixed metric, a changed prompt filter or an
edited experiment all change what a case records. Resuming a run after such an edit would mix
rows from two versions of the code, silently. So the run plan compares this fingerprint as it
compares the config: `--resume auto` only continues a run recorded by the same code, and says
which files changed when it starts a new one. The git commit alone cannot do this: an edit
need not be committed, and a commit may change nothing that runs.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

# Where the experiments live, relative to the rootdir (ini option `sr_code_paths` overrides).
DEFAULT_CODE_PATHS = ("experiments", "conftest.py")
_SKIP_DIRS = {"__pycache__", ".ipynb_checkpoints"}
# Package code that only reads results.parquet (the report): editing it changes no row, and
# `make report` re-renders, so it does not split a run.
REPORT_ONLY = ("analysis/", "report.py")


def _py_files(root: Path) -> Iterable[Path]:
    if root.is_file():
        if root.suffix == ".py":
            yield root
        return
    if not root.is_dir():
        return
    for path in sorted(root.rglob("*.py")):
        if not _SKIP_DIRS.intersection(path.parts):
            yield path


def _file_digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()[:16]


def code_fingerprint(
    rootdir: str | Path, paths: Iterable[str] = DEFAULT_CODE_PATHS
) -> dict[str, Any]:
    """{"digest", "files": {name: sha256[:16]}} over the package's and the given paths' .py files.

    Package files (but the report's, REPORT_ONLY) are named `steering_reliability/...`
    wherever it is installed; the others by their path relative to the rootdir. Absent
    paths contribute nothing.
    """
    import steering_reliability

    files: dict[str, str] = {}
    package = Path(steering_reliability.__file__).resolve().parent
    for path in _py_files(package):
        rel = path.relative_to(package).as_posix()
        if not rel.startswith(REPORT_ONLY):
            files[f"{package.name}/{rel}"] = _file_digest(path)
    root = Path(rootdir).resolve()
    for entry in paths:
        for path in _py_files(root / entry):
            try:
                name = path.resolve().relative_to(root).as_posix()
            except ValueError:
                name = path.as_posix()
            files.setdefault(name, _file_digest(path))
    h = hashlib.blake2b(digest_size=8)
    for name in sorted(files):
        h.update(f"{name}\x00{files[name]}\n".encode())
    return {"digest": h.hexdigest(), "files": dict(sorted(files.items()))}


def code_digest(code: Mapping[str, Any] | None) -> str | None:
    """The digest of a fingerprint (None for a run recorded before fingerprints existed)."""
    return None if not code else code.get("digest")


def changed_files(old: Mapping[str, Any] | None, new: Mapping[str, Any]) -> list[str]:
    """Files added, removed or edited between two fingerprints, sorted (a placeholder if old has none)."""
    if not old or "files" not in old:
        return ["no fingerprint recorded by the earlier run"]
    a, b = dict(old["files"]), dict(new.get("files", {}))
    return sorted(name for name in set(a) | set(b) if a.get(name) != b.get(name))


def describe_changes(files: list[str], limit: int = 6) -> str:
    """`a.py, b.py and 3 more` for a message."""
    shown = ", ".join(files[:limit])
    return shown + (f" and {len(files) - limit} more" if len(files) > limit else "")


def session_code_versions(manifest: Mapping[str, Any]) -> list[str]:
    """The distinct code digests a run's sessions ran with, in order of first use."""
    seen: list[str] = []
    for session in manifest.get("sessions") or []:
        digest = session.get("code") if isinstance(session, Mapping) else None
        if isinstance(digest, str) and digest not in seen:
            seen.append(digest)
    return seen
