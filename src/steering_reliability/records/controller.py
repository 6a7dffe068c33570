"""The controller's plugin (registered only there): the one reader of the case reports.

Each recording case's report carries a note of plain values from the worker that ran it (part,
time by phase, rates); the controller turns the notes into a progress line with the ETA, the
session's tally and time by phase, and at session end compacts the parts on disk into
results.parquet, stamps run.json, points `latest` and shows the report. Under xdist a thread
also says which cases are still running, from the workers' heartbeat files. Like plugin.py, this
module is imported in every pytest session: the records modules load once a session records.
"""

from __future__ import annotations

import json
import threading
import time
import traceback
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from steering_reliability import timing
from steering_reliability.records.plugin import NOTE, USER_ERRORS, RunState

if TYPE_CHECKING:
    from steering_reliability.records.store import CompactResult

WATCH_SECONDS = 30.0  # how often the controller reports cases that are still running


class Recorder:
    """Plans the run once for every worker, reads each case's report once, and at session end
    compacts, stamps run.json, points `latest` and reports."""

    def __init__(self, config: pytest.Config, run: RunState) -> None:
        self.config, self.run = config, run
        self.cases: set[str] = set()  # node ids of recording cases that reported
        self.notes: dict[str, dict[str, Any]] = {}  # node id -> the case's note at teardown
        self.ids: list[str] = []  # every test of the session (xdist: as a worker collected them)
        self.expected: dict[str, Mapping[str, Any]] | None = None  # node id -> run.json case
        self.done = 0  # tests whose teardown reported
        self.result: CompactResult | None = None
        self.problems: list[str] = []
        self.rendered: Any = None  # the report's paths and headline, when it was rendered
        self.breakdown: dict[str, Any] | None = None  # time by phase (timing.py), at session end
        self.started = time.perf_counter()
        self._header: list[str] = []
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._watcher: threading.Thread | None = None

    def plan_now(self) -> None:
        """Plan at configure time (the user asked to record): a refused resume stops pytest."""
        self._say(self.run.plan().note, yellow=True)

    def _write(self, lines: Iterable[str], **markup: bool) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:  # a plan made at configure time: said in the header
            self._header += lines
            return
        with self._lock:  # the watcher thread writes too
            tw: Any = getattr(reporter, "_tw", None)  # the progress dots leave the line open
            if tw is not None and int(getattr(tw, "width_of_current_line", 0) or 0):
                reporter.write("\n")
            for line in lines:
                reporter.write_line(line, **markup)

    def _say(self, line: str, **markup: bool) -> None:
        if line:
            self._write([f"steering_reliability: {line}"], **markup)

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        """Emitted when the session header is written: what was said before it."""
        lines, self._header = self._header, []
        return lines

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Emitted at session start: the wall time counts from here; under xdist (the controller
        runs no test itself) a thread watches the workers' heartbeat files."""
        self.started = time.perf_counter()
        if self.config.getoption("numprocesses", default=None) and self.config.get_verbosity() >= 0:
            self._watcher = threading.Thread(target=self._watch, name="sr-progress", daemon=True)
            self._watcher.start()

    def _watch(self) -> None:
        while not self._stop.wait(WATCH_SECONDS):
            plan = self.run.current  # read only: the watcher never plans a run
            if plan is None:
                continue
            try:
                from steering_reliability.records.progress import running_cases, running_line

                now, beats = time.time(), running_cases(plan.run_dir)
            except Exception:  # the watcher must never break the session
                continue
            self._write([f"  ... {running_line(b, now)}" for b in beats
                         if now - float(b.get("started", now)) >= WATCH_SECONDS])  # fmt: skip

    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Emitted after collection, where the controller collects (no xdist): the tests."""
        self.ids[:] = [i.nodeid for i in session.items]

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Emitted for every phase report (from workers too): the one reader of case notes."""
        raw = dict(report.user_properties).get(NOTE)
        if isinstance(raw, str):
            self.cases.add(report.nodeid)
        if report.when != "teardown":
            return
        self.done += 1
        if not isinstance(raw, str):
            return
        self.notes[report.nodeid] = note = json.loads(raw)
        if self.config.get_verbosity() < 0:
            return
        from steering_reliability.records.progress import case_line

        line = case_line(report.nodeid, note, self.done, len(self.ids),
                         time.perf_counter() - self.started, self.eta())  # fmt: skip
        if line is not None:
            self._write([line])

    def eta(self) -> float | None:
        """progress.eta over this session's recording cases (run.json lists their kind and
        expected work; a worker wrote it before any case ran)."""
        from steering_reliability.records.progress import eta
        from steering_reliability.records.run import read_manifest

        plan = self.run.current
        if self.expected is None and plan is not None:
            try:
                cases = (read_manifest(plan.run_dir) or {}).get("cases", {})
            except USER_ERRORS:  # a progress line must never break the session
                cases = {}
            ids = set(self.ids)
            self.expected = {c["nodeid"]: c for c in cases.values() if c.get("nodeid") in ids}
        pending = [c for n, c in (self.expected or {}).items() if n not in self.notes]
        workers = self.config.getoption("numprocesses", default=None) or 1
        return None if self.expected is None else eta(pending, self.notes.values(), workers)

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Emitted at session end: compact parts, stamp run.json, point `latest`, report."""
        self._stop.set()
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        plan = self.run.current
        if not self.cases or plan is None:
            return
        from steering_reliability.records.run import finish_run, update_latest
        from steering_reliability.records.store import RESULTS_NAME, compact, parts_dir

        try:
            with timing.phase("recording"):
                self.result = compact(parts_dir(plan.run_dir, plan.config_hash),
                                      plan.run_dir / RESULTS_NAME)  # fmt: skip
        except USER_ERRORS as exc:
            self._problem(session, f"compaction failed, parts are kept: {exc}")
        if self.run.report and self.result is not None and self.result.n_rows:
            with timing.phase("report"):
                self._render_report(plan.run_dir, session)
        self.breakdown = self._time_by_phase()
        summary = {"cases": len(self.cases), "parts_written": len(self._written()),
                   "parts_reused": len(self._reused()), "exitstatus": int(session.exitstatus),
                   "results_rows": self.result.n_rows if self.result else None,
                   "time_by_phase": self.breakdown}  # fmt: skip
        try:
            finish_run(plan.run_dir, str(plan.session.get("id")), summary)
            update_latest(plan.runs_dir, plan.run_dir)
        except USER_ERRORS as exc:
            self.problems.append(f"could not finish run.json: {exc}")

    def _written(self) -> list[dict[str, Any]]:
        return [n for n in self.notes.values() if n.get("part") and not n.get("reused")]

    def _reused(self) -> list[dict[str, Any]]:
        return [n for n in self.notes.values() if n.get("reused")]

    def _time_by_phase(self) -> dict[str, Any]:
        """This session's time by phase: every recording case's tally (passed, failed or
        skipped, from whichever worker ran it) and the controller's own (compaction, report)."""
        times = [n["time"] for n in self.notes.values() if "time" in n]
        model = (self.run.current.config if self.run.current else {}).get("model", {})
        ceiling = timing.bench_ceiling(self.config.rootpath / "artifacts" / "bench.json", model)
        return {**timing.merge([*times, timing.take()]), "bench_ceiling": ceiling,
                "wall_seconds": round(time.perf_counter() - self.started, 1),
                "workers": max(1, len({t.get("worker") for t in times}))}  # fmt: skip

    def _problem(self, session: pytest.Session, text: str) -> None:
        self.problems.append(text)
        if session.exitstatus == pytest.ExitCode.OK:
            session.exitstatus = pytest.ExitCode.TESTS_FAILED

    def _render_report(self, run_dir: Path, session: pytest.Session) -> None:
        try:
            self.rendered = self.config.hook.pytest_sr_render_report(
                config=self.config, run_dir=run_dir
            )
            for v in getattr(self.rendered, "failed", ()):
                self._problem(session, f"report-stage sanity check FAILED: {v.name}: {v.reason}")
        except Exception:  # a report bug must not hide that the results are safe
            self.problems.append(
                f"report failed (results are saved): {traceback.format_exc(limit=3)}"
            )

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Emitted at the end of the terminal report: rows written, the parquet, what to open."""
        plan = self.run.current
        if not self.cases or plan is None:
            return
        for problem in self.problems:
            self._say(problem, red=True)
        self._say(plan.note, yellow=True)
        if self.result is None:
            return
        written = self._written()
        self._say(f"{sum(n.get('rows', 0) for n in written)} rows written ({len(written)} cases, "
                  f"{len(self._reused())} already recorded) -> {self.result.path} "
                  f"({self.result.n_rows} rows, run {plan.run_id})")  # fmt: skip
        if self.breakdown is not None and self.config.get_verbosity() >= 0:
            b = self.breakdown
            for line in timing.render(b, b["wall_seconds"], b["workers"], b.get("bench_ceiling")):
                self._say(line)
        if self.rendered is None or self.config.get_verbosity() < 0:
            return
        run = self.rendered.run_dir
        for line in getattr(self.rendered, "headline", ()):
            self._say(line)
        figures = sorted(
            (f for f in getattr(self.rendered, "figures", ()) if f.suffix == ".png"),
            key=lambda f: f.name != "tradeoff.png",
        )  # the one to read first, if drawn
        self._say(f"open first {run / 'findings.md'}" + (f" and {figures[0]}" if figures else ""))
        self._say("rerun the same command to resume (recorded cases are skipped); re-render "
                  f"with make report RUN={run}")  # fmt: skip
