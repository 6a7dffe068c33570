"""Which cases of a run are done and which are missing, worked out from disk alone.

run.json lists the expected cases (key -> node id, case id, kind, expected work); a case is done
when its part exists and validates (from its footer, which also holds the seconds it took).
Nothing here needs pytest, the model or the controller's memory.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq

from steering_reliability.atomic import pid_alive, stale_temps
from steering_reliability.records.progress import clock, eta, running_cases, running_line
from steering_reliability.records.run import (
    MANIFEST_NAME,
    read_manifest,
    resolve_run_dir,
    session_code_versions,
)
from steering_reliability.records.store import (
    RESULTS_NAME,
    PartError,
    check_part,
    list_parts,
    part_path,
    parts_dir,
)


@dataclass(frozen=True)
class RunStatus:
    """The state of one run directory."""

    run_dir: str
    run_id: str
    config_hash: str
    expected: dict[str, dict[str, Any]]  # key -> {"nodeid", "case_id", "kind", "work"}
    done: tuple[str, ...]
    missing: tuple[str, ...]
    invalid: tuple[tuple[str, str], ...]  # (part path, why)
    unexpected: tuple[str, ...]  # parts whose key run.json does not list
    stale_temps: tuple[str, ...]
    results_rows: int | None  # rows in results.parquet, None when absent
    ended: str | None
    code_versions: tuple[str, ...] = ()  # code digests of the sessions, in order
    running: tuple[dict[str, Any], ...] = ()  # heartbeat files of cases running now
    not_passed: tuple[str, ...] = ()  # missing cases that ran and failed or were inconclusive
    finished: tuple[dict[str, Any], ...] = ()  # {"kind", "work", "seconds"} of the done cases

    def eta_seconds(self) -> float | None:
        """Seconds left for the missing cases (`progress.eta`), run by as many workers as are
        running now (None before any case recorded its duration)."""
        if not self.missing:
            return None
        pending = [self.expected[k] for k in self.missing]
        return eta(pending, self.finished, max(1, len(self.running)))

    @property
    def complete(self) -> bool:
        """Every expected case has a valid part."""
        return not self.missing


def run_status(run_dir: str | Path) -> RunStatus:
    """Read a run directory (or `runs/latest`) and classify its cases."""
    run_dir = resolve_run_dir(run_dir)
    data = read_manifest(run_dir)
    if data is None:
        raise FileNotFoundError(f"{run_dir / MANIFEST_NAME}: no run manifest (is this a run dir?)")
    expected: dict[str, dict[str, Any]] = dict(data.get("cases", {}))
    directory = parts_dir(run_dir, data["config_hash"])
    valid: set[str] = set()
    invalid: list[tuple[str, str]] = []
    finished: list[dict[str, Any]] = []
    for path in list_parts(directory):
        try:
            info = check_part(path)
        except PartError as exc:
            invalid.append((str(path), str(exc)))
            continue
        valid.add(info.key)
        finished.append({k: info.meta.get(k) for k in ("kind", "work", "seconds")})
    results = run_dir / RESULTS_NAME
    missing = tuple(sorted(k for k in expected if k not in valid))
    return RunStatus(
        run_dir=str(run_dir),
        run_id=str(data.get("run_id")),
        config_hash=str(data["config_hash"]),
        expected=expected,
        done=tuple(sorted(k for k in expected if k in valid)),
        missing=missing,
        invalid=tuple(invalid),
        unexpected=tuple(sorted(valid - set(expected))),
        stale_temps=tuple(str(p) for p in stale_temps(directory)),
        results_rows=pq.read_metadata(results).num_rows if results.exists() else None,
        ended=data.get("ended"),
        code_versions=tuple(session_code_versions(data)),
        running=tuple(running_cases(run_dir)),
        not_passed=tuple(k for k in missing if part_path(directory, k, failed=True).exists()),
        finished=tuple(finished),
    )


def format_status(status: RunStatus, *, show_done: bool = False) -> str:
    """A human summary: counts, then the missing cases by node id."""

    def name(key: str) -> str:
        case = status.expected.get(key, {})
        return str(case.get("nodeid") or case.get("case_id") or key)

    n = len(status.expected)
    lines = [
        f"run {status.run_id} ({status.run_dir}), config {status.config_hash}",
        f"  {len(status.done)}/{n} cases done, {len(status.missing)} missing"
        + (f", {len(status.invalid)} invalid parts" if status.invalid else "")
        + (f", {len(status.unexpected)} parts of unlisted cases" if status.unexpected else ""),
        "  results.parquet: "
        + (f"{status.results_rows} rows" if status.results_rows is not None else "not written yet")
        + (f" (last session ended {status.ended})" if status.ended else " (no session ended yet)"),
    ]
    if len(status.code_versions) > 1:
        lines.append(
            f"  code: {len(status.code_versions)} versions across sessions "
            f"({', '.join(status.code_versions)}): cases recorded by earlier sessions keep the "
            "earlier code's rows (run.json sessions[].code)"
        )
    elif status.code_versions:
        lines.append(f"  code: {status.code_versions[0]}")
    now = time.time()
    for r in status.running:
        pid, age = r.get("pid"), now - float(r.get("updated", r.get("started", 0.0)))
        gone = isinstance(pid, int) and not pid_alive(pid)
        gone_note = "; its process is gone: the case reruns next time" if gone else ""
        lines.append(f"  {running_line(r, now)} (heartbeat {clock(age)} ago{gone_note})")
    left = status.eta_seconds() if status.running else None  # no ETA for a run nobody runs
    if left is not None:
        lines.append(f"  ETA {clock(left)} ({len(status.missing)} cases left, each at the mean "
                     f"time of the done cases of its kind; {len(status.finished)} done, "
                     f"{max(1, len(status.running))} worker(s))")  # fmt: skip
    if status.missing:
        lines.append("missing:")
        lines += [f"  {name(k)}" + ("  (ran: failed or inconclusive; reruns on resume)"
                                    if k in status.not_passed else "")
                  for k in sorted(status.missing, key=name)]  # fmt: skip
    if show_done and status.done:
        lines.append("done:")
        lines += [f"  {name(k)}" for k in sorted(status.done, key=name)]
    for path, why in status.invalid:
        lines.append(f"invalid part (will be recomputed): {path}: {why}")
    for path in status.stale_temps:
        lines.append(f"stale temp (removed at the next start): {path}")
    return "\n".join(lines)
