"""What the controller prints while a run goes: one line per finished case, with an ETA.

The worker that ran a case attaches a few plain numbers from its rows (`case_summary`) to the
report; the controller (this plugin, registered only there) prints
`[ 5/28] layer12-add-a1  harm_train 0.67  harm_test 0.42  benign helpful 0.33  collapse 0.00  (41 s) | 3m12s elapsed, ETA 9m`.
The ETA is the remaining case count at the throughput so far (done / elapsed), which already
accounts for the number of workers. Quiet under -q.
"""

from __future__ import annotations

import contextlib
import json
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pytest

SUMMARY_PROPERTY = "sr_summary"  # user_property: JSON of a case's key numbers (plain str)


def _rate(rows: Sequence[Mapping[str, Any]], column: str, split: str | None = None) -> float | None:
    vals = [bool(r[column]) for r in rows
            if r.get(column) is not None and (split is None or r.get("split") == split)]  # fmt: skip
    return sum(vals) / len(vals) if vals else None


def case_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Key rates of one case's prompt rows, and any sanity verdict: plain values only."""
    prompts = [r for r in rows if r.get("prompt_id")]
    other = {r.get("behaviour") for r in prompts} - {None, "refusal"}
    if other:  # another behaviour's case: its flag rate per set, in the order they ran
        splits = list(dict.fromkeys(str(r["split"]) for r in prompts))
        found: dict[str, Any] = {f"{next(iter(other))} {s}": _rate(prompts, "behaviour_flag", s)
                                 for s in splits}  # fmt: skip
        return found | {"collapse": _rate(prompts, "collapsed")}
    out: dict[str, Any] = {
        "harm_train": _rate(prompts, "is_refusal", "harm_train"),
        "harm_test": _rate(prompts, "is_refusal", "harm_test"),
        "benign helpful": _rate(prompts, "is_helpful", "benign"),
        "collapse": _rate(prompts, "collapsed"),
    }
    verdicts = sorted({str(r["verdict"]) for r in rows if r.get("verdict")})
    if verdicts:
        out["verdict"] = "/".join(verdicts)
    return out


def _clock(seconds: float) -> str:
    seconds = max(0, int(round(seconds)))
    if seconds < 60:
        return f"{seconds}s"
    minutes, s = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{s:02d}s"
    hours, m = divmod(minutes, 60)
    return f"{hours}h{m:02d}m"


def eta(done: int, total: int | None, elapsed: float) -> float | None:
    """Seconds left at the throughput so far (None until a case finished or without a total)."""
    if not total or done <= 0 or elapsed <= 0:
        return None
    return (total - done) * elapsed / done


WATCH_SECONDS = 30.0  # how often the controller reports cases that are still running


class Progress:
    """Controller plugin: a line per finished case with its rates, wall time and the run's ETA;
    under xdist, every WATCH_SECONDS a line per case still running, from the workers' heartbeat
    files (a long case shows its generation progress while it runs)."""

    def __init__(self, config: pytest.Config, run_dir: Callable[[], str | None]) -> None:
        self.config = config
        self.run_dir = run_dir
        self.total: int | None = None
        self.done = 0
        self.started = time.monotonic()
        self.durations: dict[str, float] = {}
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Emitted at the start: under xdist (the controller runs no test itself), watch the
        heartbeat files in a daemon thread."""
        workers = self.config.getoption("numprocesses", default=None)
        if not workers or self.config.get_verbosity() < 0:
            return
        self._watcher = threading.Thread(target=self._watch, name="sr-progress", daemon=True)
        self._watcher.start()

    @pytest.hookimpl(tryfirst=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Emitted at the end: stop the watcher before the summary is written."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_SECONDS):
            try:
                run_dir = self.run_dir()
                beats = running_cases(run_dir) if run_dir else []
            except Exception:  # the watcher must never break the session
                continue
            now = time.time()
            lines = []
            for r in beats:
                ran = now - float(r.get("started", now))
                if ran < WATCH_SECONDS:
                    continue
                gen = r.get("generation")
                doing = f", generating {gen[0]}/{gen[1]} prompts" if isinstance(gen, list) else ""
                lines.append(f"  ... {r.get('case_id')} still running on {r.get('worker')} "
                             f"for {_clock(ran)}{doing}")  # fmt: skip
            if lines:
                self._write(lines)

    def _write(self, lines: Sequence[str]) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            return
        with self._lock:
            tw: Any = getattr(reporter, "_tw", None)  # the progress dots leave the line open
            if tw is not None and int(getattr(tw, "width_of_current_line", 0) or 0):
                reporter.write("\n")
            for line in lines:
                reporter.write_line(line)

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Emitted after collection: the total, where the controller collects (no xdist)."""
        if session.items:
            self.total = len(session.items)

    def node_collection_finished(self, ids: Sequence[str]) -> None:
        """Under xdist: every worker collects the same ids; the total is their number."""
        self.total = len(ids)

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Emitted per phase report (from workers too): a line when a test's teardown arrives."""
        if report.when in ("setup", "call"):
            self.durations[report.nodeid] = self.durations.get(report.nodeid, 0.0) + float(
                report.duration
            )
            return
        if report.when != "teardown":
            return
        self.done += 1
        if self.config.get_verbosity() < 0:
            return
        props = dict(report.user_properties)
        summary = props.get(SUMMARY_PROPERTY)
        if isinstance(summary, str):
            summary = json.loads(summary)
        name = report.nodeid.rsplit("::", 1)[-1]
        if isinstance(summary, dict):
            parts = [f"{k} {v:.2f}" for k, v in summary.items() if isinstance(v, float)]
            if "verdict" in summary:
                parts.append(str(summary["verdict"]))
            detail = "  ".join(parts)
        elif "sr_part" in props:
            detail = "already recorded"
        else:
            return
        elapsed = time.monotonic() - self.started
        left = eta(self.done, self.total, elapsed)
        total = "?" if self.total is None else str(self.total)
        line = (f"[{self.done:>{len(total)}}/{total}] {name}  {detail}  "
                f"({_clock(self.durations.get(report.nodeid, 0.0))}) | {_clock(elapsed)} elapsed"
                + ("" if left is None else f", ETA {_clock(left)}"))  # fmt: skip
        self._write([line])


# ---------------------------------------------------------------- heartbeat files (workers)

RUNNING_DIR = "running"  # <run_dir>/running/<worker>.json while a case runs
HEARTBEAT_SECONDS = 10.0


def heartbeat_path(run_dir: str | Path, worker: str) -> Path:
    return Path(run_dir) / RUNNING_DIR / f"{worker}.json"


class Heartbeat:
    """The running case of one worker, on disk: case id, start time, generation progress.

    Rewritten atomically at the start of a case and at most every HEARTBEAT_SECONDS while the
    engine generates (listeners.GENERATION_PROGRESS), removed when the case ends;
    `make status` reads these files to show what is running and for how long.
    """

    def __init__(self, run_dir: str | Path, worker: str, case_id: str, nodeid: str) -> None:
        self.path = heartbeat_path(run_dir, worker)
        self.state: dict[str, Any] = {"case_id": case_id, "nodeid": nodeid, "worker": worker,
                                      "started": time.time(), "pid": os.getpid()}  # fmt: skip
        self._last = 0.0
        self.write()

    def write(self) -> None:
        from steering_reliability.atomic import atomic_write_bytes

        self.state["updated"] = time.time()
        with contextlib.suppress(OSError):  # a heartbeat is a courtesy: never fail a case for it
            atomic_write_bytes(self.path, json.dumps(self.state).encode("utf-8"))
        self._last = time.monotonic()

    def generation(self, done: int, total: int) -> None:
        """A GENERATION_PROGRESS callback: prompts finished of the current generate() call."""
        self.state["generation"] = [done, total]
        if time.monotonic() - self._last >= HEARTBEAT_SECONDS:
            self.write()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


def running_cases(run_dir: str | Path) -> list[dict[str, Any]]:
    """The heartbeat files of a run directory, oldest start first (unreadable ones skipped)."""
    found = []
    for path in sorted((Path(run_dir) / RUNNING_DIR).glob("*.json")):
        try:
            found.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return sorted(found, key=lambda s: float(s.get("started", 0.0)))
