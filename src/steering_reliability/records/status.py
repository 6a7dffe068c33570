"""Which cases of a run are done and which are missing, worked out from disk alone.

run.json lists the expected cases (key -> node id, case id); a case is done when its part
exists and validates. Nothing here needs pytest, the model or the controller's memory.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steering_reliability.atomic import pid_alive
from steering_reliability.records.progress import running_cases
from steering_reliability.records.run import (
    MANIFEST_NAME,
    read_manifest,
    resolve_run_dir,
    session_code_versions,
)
from steering_reliability.records.store import part_path, parts_dir


@dataclass(frozen=True)
class RunStatus:
    """The state of one run directory."""

    run_dir: str
    run_id: str
    config_hash: str
    expected: dict[str, dict[str, Any]]  # key -> {"nodeid", "case_id"}
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
    case_seconds: tuple[float, ...] = ()  # wall seconds of the done cases that recorded it

    def eta_seconds(self) -> float | None:
        """Seconds left if the missing cases take as long as the done ones did, run by as many
        workers as are running now (None before any case recorded its duration)."""
        if not self.missing or not self.case_seconds:
            return None
        mean = sum(self.case_seconds) / len(self.case_seconds)
        return len(self.missing) * mean / max(1, len(self.running))

    @property
    def complete(self) -> bool:
        """Every expected case has a valid part."""
        return not self.missing


def run_status(run_dir: str | Path) -> RunStatus:
    """Read a run directory (or `runs/latest`) and classify its cases."""
    from steering_reliability.atomic import stale_temps
    from steering_reliability.records.store import PartError, list_parts, read_part

    run_dir = resolve_run_dir(run_dir)
    data = read_manifest(run_dir)
    if data is None:
        raise FileNotFoundError(f"{run_dir / MANIFEST_NAME}: no run manifest (is this a run dir?)")
    expected: dict[str, dict[str, Any]] = dict(data.get("cases", {}))
    directory = parts_dir(run_dir, data["config_hash"])
    valid: set[str] = set()
    invalid: list[tuple[str, str]] = []
    seconds: list[float] = []
    for path in list_parts(directory):
        try:
            _, info = read_part(path)
        except PartError as exc:
            invalid.append((str(path), str(exc)))
            continue
        valid.add(info.key)
        if isinstance(info.meta.get("seconds"), (int, float)):
            seconds.append(float(info.meta["seconds"]))
    results_rows = None
    results = run_dir / "results.parquet"
    if results.exists():
        import pyarrow.parquet as pq

        results_rows = pq.read_metadata(results).num_rows
    return RunStatus(
        run_dir=str(run_dir),
        run_id=str(data.get("run_id")),
        config_hash=str(data["config_hash"]),
        expected=expected,
        done=tuple(sorted(k for k in expected if k in valid)),
        missing=tuple(sorted(k for k in expected if k not in valid)),
        invalid=tuple(invalid),
        unexpected=tuple(sorted(valid - set(expected))),
        stale_temps=tuple(str(p) for p in stale_temps(directory)),
        results_rows=results_rows,
        ended=data.get("ended"),
        code_versions=tuple(session_code_versions(data)),
        running=tuple(running_cases(run_dir)),
        not_passed=tuple(
            sorted(
                k
                for k in expected
                if k not in valid and part_path(directory, k, failed=True).exists()
            )
        ),  # fmt: skip
        case_seconds=tuple(seconds),
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
    import time

    from steering_reliability.records.progress import _clock

    for r in status.running:
        gen = r.get("generation")
        where = f", generating {gen[0]}/{gen[1]} prompts" if isinstance(gen, list) else ""
        age = time.time() - float(r.get("updated", r.get("started", 0.0)))
        pid = r.get("pid")
        gone = (
            ""
            if not isinstance(pid, int) or pid_alive(pid)
            else "; its process is gone: the case reruns next time"
        )
        lines.append(f"  running on {r.get('worker')}: {r.get('case_id')} for "
                     f"{_clock(time.time() - float(r.get('started', 0.0)))}{where} "
                     f"(heartbeat {_clock(age)} ago{gone})")  # fmt: skip
    left = status.eta_seconds() if status.running else None  # no ETA for a run nobody runs
    if left is not None:
        lines.append(f"  ETA {_clock(left)} ({len(status.missing)} cases left at the mean "
                     f"{_clock(sum(status.case_seconds) / len(status.case_seconds))} of the "
                     f"{len(status.case_seconds)} done, {max(1, len(status.running))} worker(s))")  # fmt: skip
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
