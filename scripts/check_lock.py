"""Compare what a venv has installed with requirements.lock: `python scripts/check_lock.py LOCK`.

Exits 0 when every locked package is installed at its locked version and nothing else is (the
project itself, installed editable, and pip are left out). Otherwise it lists the differences
and exits 1. `--report` prints, instead, the versions that differ from the lock and exits 0:
the drift view used by `make test-latest`.
"""

from __future__ import annotations

import argparse
import re
import sys
from importlib import metadata
from pathlib import Path

PROJECT = "steering-reliability"
IGNORED = {PROJECT, "pip"}
_PIN = re.compile(r"^([A-Za-z0-9][A-Za-z0-9._-]*)==([^\s;\\]+)")


def normalise(name: str) -> str:
    """PEP 503 name: lower case, runs of -_. as one hyphen."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_lock(path: Path) -> dict[str, str]:
    """name -> version for every `name==version` requirement line of a lock file."""
    pins: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text().splitlines(), 1):
        if not line or line[0].isspace() or line.startswith(("#", "-")):
            continue
        m = _PIN.match(line)
        if m is None:
            raise SystemExit(f"{path}:{lineno}: not a `name==version` pin: {line.strip()!r}")
        pins[normalise(m.group(1))] = m.group(2)
    return pins


def installed() -> dict[str, str]:
    """name -> version of every distribution the running interpreter sees: where two folders on
    sys.path hold one (a venv over another environment), the first, which `import` uses."""
    found: dict[str, str] = {}
    for d in metadata.distributions():  # in sys.path order
        found.setdefault(normalise(d.metadata["Name"]), d.version)
    return found


def differences(lock: dict[str, str], have: dict[str, str]) -> list[str]:
    """Human-readable differences between the lock and the installed set (empty: equal)."""
    out = []
    for name in sorted(set(lock) | set(have)):
        if name in IGNORED:
            continue
        want, got = lock.get(name), have.get(name)
        if want is None:
            out.append(f"{name}=={got} is installed but not in the lock")
        elif got is None:
            out.append(f"{name}=={want} is locked but not installed")
        elif got != want:
            out.append(f"{name}: locked {want}, installed {got}")
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("lock", type=Path)
    ap.add_argument("--report", action="store_true", help="print version drift, exit 0")
    args = ap.parse_args(argv)
    lock = read_lock(args.lock)
    diff = differences(lock, installed())
    if args.report:
        drift = [d for d in diff if "locked" in d and "installed" in d and "not" not in d]
        print(f"versions that differ from {args.lock}: {len(drift)}")
        for d in drift:
            print(f"  {d}")
        return 0
    if diff:
        print(f"{sys.prefix} does not match {args.lock}:", file=sys.stderr)
        for d in diff:
            print(f"  {d}", file=sys.stderr)
        print("rebuild it with: rm -rf .venv && make venv", file=sys.stderr)
        return 1
    print(f"{sys.prefix} matches {args.lock} ({len(lock)} packages)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
