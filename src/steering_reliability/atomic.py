"""Files: published atomically, and named by content hashes. The one home of both.

An atomic write goes to a hidden temp file in the same folder (`.name.<pid>.<uuid>.tmp`), is
fsynced, then `os.replace`d over the target: readers see the old file or the new one, never a
half-written one, and a killed writer leaves at most a hidden temp that no reader picks up.
"""

from __future__ import annotations

import hashlib
import json
import os
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, BinaryIO

TEMP_SUFFIX = ".tmp"


def canonical_json(obj: Any) -> str:
    """The one JSON spelling of a value: sorted keys, no spaces, no NaN (hash input)."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), allow_nan=False)


def digest(obj: Any, size: int = 8) -> str:
    """blake2b hex digest of the canonical JSON of `obj` (never Python's salted `hash()`)."""
    return hashlib.blake2b(canonical_json(obj).encode(), digest_size=size).hexdigest()


def file_sha256(path: str | Path) -> str:
    """sha256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def fsync_dir(directory: str | Path) -> None:
    """Make a rename in `directory` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | Path, write: Callable[[BinaryIO], object]) -> Path:
    """Call `write(handle)` on a hidden temp file, fsync it, then rename it over `path`."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex}{TEMP_SUFFIX}")
    try:
        with open(temp, "wb") as fh:
            write(fh)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(temp, path)
    except BaseException:
        temp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)
    return path


def atomic_write_bytes(path: str | Path, data: bytes) -> Path:
    """atomic_write of a bytes value."""
    return atomic_write(path, lambda fh: fh.write(data))


def atomic_write_json(path: str | Path, obj: Any) -> Path:
    """atomic_write of a JSON document (indented, sorted keys, no NaN)."""
    text = json.dumps(obj, indent=2, sort_keys=True, allow_nan=False) + "\n"
    return atomic_write_bytes(path, text.encode("utf-8"))


def stale_temps(directory: str | Path) -> list[Path]:
    """Hidden temps of `directory` whose writer process is gone (killed mid-write)."""
    out = []
    for p in sorted(Path(directory).glob(f".*{TEMP_SUFFIX}")):
        fields = p.name[1 : -len(TEMP_SUFFIX)].rsplit(".", 2)
        pid = int(fields[1]) if len(fields) == 3 and fields[1].isdigit() else -1
        if pid != os.getpid() and (pid < 0 or not pid_alive(pid)):
            out.append(p)
    return out


def pid_alive(pid: int) -> bool:
    """Whether a process with that pid exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, owned by someone else
        return True
    return True


def publish_dir_once(final: str | Path, fill: Callable[[Path], object], *, marker: str) -> Path:
    """A folder made once across processes: if `final/marker` exists it is returned as is;
    otherwise, under a file lock, `fill(temp)` writes a fresh hidden temp folder beside it,
    which is renamed to `final` whole. A killed builder leaves only a temp folder that no
    reader picks up (the next builder of that folder removes it); waiting processes find the
    finished folder when the lock is theirs."""
    import shutil

    from filelock import FileLock

    final = Path(final)
    if (final / marker).exists():
        return final
    final.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(str(final) + ".lock"):
        if (final / marker).exists():
            return final
        for dead in stale_temps(final.parent):  # a folder left by a builder that died
            if dead.name.startswith(f".{final.name}."):
                shutil.rmtree(dead, ignore_errors=True)
        temp = final.parent / f".{final.name}.{os.getpid()}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
        temp.mkdir()
        try:
            fill(temp)
            if final.exists():  # an unfinished folder (no marker) from an older layout
                shutil.rmtree(final)
            os.replace(temp, final)
        finally:
            shutil.rmtree(temp, ignore_errors=True)
        fsync_dir(final.parent)
    return final


def replace_symlink(link: str | Path, target: str) -> bool:
    """Point `link` at `target` (a relative name), replacing an earlier link atomically; False
    where the file system has no symlinks or `link` is a real file or folder (left alone)."""
    link = Path(link)
    if link.exists() and not link.is_symlink():
        return False
    temp = link.parent / f".{link.name}.{os.getpid()}.{uuid.uuid4().hex}{TEMP_SUFFIX}"
    try:
        os.symlink(target, temp, target_is_directory=True)
        os.replace(temp, link)
    except OSError:
        temp.unlink(missing_ok=True)
        return False
    return True
