"""The controller side: plans the run, collects part paths from reports, compacts at the end.

Created only on the controller (`not hasattr(config, "workerinput")`) and kept in
`config.stash`. No row depends on it: workers write parts themselves, and the controller
only derives `results.parquet` from what is on disk, so a lost worker or controller loses
at most the running case.
"""

from __future__ import annotations

import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from ..errors import SteeringReliabilityError
from . import manifest
from .cases import CASE_PROPERTY, PART_PROPERTY
from .keys import parts_dir
from .options import Options, plan_for, resolve_for
from .resolve import Resolved
from .runs import RunPlan, update_latest

if TYPE_CHECKING:
    from .compact import CompactResult

# Errors that are the user's to fix (bad config, refused resume...), shown without traceback.
USER_ERRORS = (SteeringReliabilityError, ValueError, OSError)


@dataclass
class SessionTally:
    """What this session's reports said about recording cases."""

    cases: set[str] = field(default_factory=set)
    written: dict[str, str] = field(default_factory=dict)  # nodeid -> part path
    reused: dict[str, str] = field(default_factory=dict)  # nodeid -> part path (skipped)


class Recorder:
    """The controller's recorder; a plugin object registered in pytest_configure."""

    def __init__(self, config: pytest.Config, options: Options) -> None:
        self.config = config
        self.options = options
        self.tally = SessionTally()
        self._resolved: Resolved | None = None
        self._plan: RunPlan | None = None
        self._plan_error: str | None = None
        self.result: CompactResult | None = None  # set at session end
        self.problems: list[str] = []
        self.rendered: Any = None  # the report's paths and headline, when it was rendered
        self._note_pending = False

    def resolved(self) -> Resolved:
        """The resolved config (loaded once per process)."""
        if self._resolved is None:
            self._resolved = resolve_for(self.config, self.options)
        return self._resolved

    @property
    def current_plan(self) -> RunPlan | None:
        """The plan if it was already made (never makes one)."""
        return self._plan

    def plan(self) -> RunPlan:
        """The run this session records into; decided once, here, for every worker."""
        if self._plan_error is not None:
            raise pytest.UsageError(self._plan_error)
        if self._plan is None:
            try:
                self._plan = plan_for(self.config, self.options, self.resolved())
            except USER_ERRORS as exc:
                self._plan_error = str(exc)
                raise pytest.UsageError(self._plan_error) from exc
            self._say_note(self._plan)
        return self._plan

    def _say_note(self, plan: RunPlan) -> None:
        """Say the plan's note (a new run because the code changed...) as soon as it is known:
        now if the terminal is up, else in the session header (a plan made at configure)."""
        if not plan.note:
            return
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if reporter is None:
            self._note_pending = True
        else:
            reporter.write_line(f"steering_reliability: {plan.note}", yellow=True)

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        """Emitted when the session header is written: a note deferred from configure time."""
        if self._note_pending and self._plan is not None:
            self._note_pending = False
            return [f"steering_reliability: {self._plan.note}"]
        return []

    def wire(self) -> dict[str, Any]:
        """The plan for an xdist worker, as plain values (or the reason there is none)."""
        try:
            return {"plan": self.plan().to_wire()}
        except Exception as exc:  # a session without recording cases must still run
            return {"error": str(exc) or type(exc).__name__}

    def pytest_runtest_logreport(self, report: pytest.TestReport) -> None:
        """Emitted for every phase report (from workers too): note written and reused parts."""
        props = dict(report.user_properties)
        if CASE_PROPERTY not in props:
            return
        self.tally.cases.add(report.nodeid)
        part = props.get(PART_PROPERTY)
        if not isinstance(part, str):
            return
        if report.when == "setup" and report.skipped:
            self.tally.reused[report.nodeid] = part
        elif report.when == "teardown" and report.nodeid not in self.tally.reused:
            self.tally.written[report.nodeid] = part

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Emitted at session end: compact parts, stamp run.json, point `latest`, report."""
        if not self.tally.cases or self._plan is None:
            return
        from .compact import RESULTS_NAME, compact

        plan = self._plan
        run_dir = Path(plan.run_dir)
        try:
            self.result = compact(parts_dir(run_dir, plan.config_hash), run_dir / RESULTS_NAME)
        except USER_ERRORS as exc:
            self.problems.append(f"compaction failed, parts are kept: {exc}")
            if session.exitstatus == pytest.ExitCode.OK:
                session.exitstatus = pytest.ExitCode.TESTS_FAILED
        summary = {
            "cases": len(self.tally.cases),
            "parts_written": len(self.tally.written),
            "parts_reused": len(self.tally.reused),
            "results_rows": self.result.n_rows if self.result else None,
            "exitstatus": int(session.exitstatus),
        }
        try:
            manifest.finish_run(run_dir, str(plan.session.get("id")), summary)
            update_latest(plan.runs_dir, run_dir)
        except USER_ERRORS as exc:
            self.problems.append(f"could not finish run.json: {exc}")
        if self.options.report and self.result is not None and self.result.n_rows:
            self._render_report(run_dir, session)

    def _render_report(self, run_dir: Path, session: pytest.Session) -> None:
        import importlib

        try:
            paths = importlib.import_module("steering_reliability.report").render(run_dir)
            self.rendered = paths
            for v in getattr(paths, "failed", ()):
                self.problems.append(f"report-stage sanity check FAILED: {v.name}: {v.reason}")
                if session.exitstatus == pytest.ExitCode.OK:
                    session.exitstatus = pytest.ExitCode.TESTS_FAILED
        except ModuleNotFoundError as exc:
            if exc.name != "steering_reliability.report":  # absent report module: nothing to do
                self.problems.append(f"report failed (results are saved): {exc}")
        except SteeringReliabilityError as exc:  # e.g. rows the report cannot use
            self.problems.append(f"report failed (results are saved): {exc}")
        except Exception:  # a report bug must not hide that the results are safe
            tb = traceback.format_exc(limit=3)
            self.problems.append(f"report failed (results are saved): {tb}")

    def rows_written(self) -> int:
        """Rows in the parts this session wrote (read from the parquet footers)."""
        import pyarrow.parquet as pq

        total = 0
        for path in self.tally.written.values():
            try:
                total += pq.read_metadata(path).num_rows
            except (OSError, ValueError):
                continue
        return total

    def pytest_terminal_summary(self, terminalreporter: Any) -> None:
        """Emitted at the end of the terminal report: one line with rows and the parquet path."""
        if not self.tally.cases or self._plan is None:
            return
        tr = terminalreporter
        for problem in self.problems:
            tr.write_line(f"steering_reliability: {problem}", red=True)
        if self._plan.note:
            tr.write_line(f"steering_reliability: {self._plan.note}", yellow=True)
        if self.result is None:
            return
        tr.write_line(
            f"steering_reliability: {self.rows_written()} rows written "
            f"({len(self.tally.written)} cases, {len(self.tally.reused)} already recorded) "
            f"-> {self.result.path} ({self.result.n_rows} rows, run {self._plan.run_id})"
        )
        paths = self.rendered
        if paths is None or self.config.get_verbosity() < 0:
            return
        run = paths.run_dir
        for line in getattr(paths, "headline", ()):
            tr.write_line(f"steering_reliability: {line}")
        tr.write_line(f"steering_reliability: open first {run / 'findings.md'} and "
                      f"{run / 'figures' / 'tradeoff.png'}")  # fmt: skip
        tr.write_line("steering_reliability: rerun the same command to resume (recorded cases "
                      f"are skipped); re-render with make report RUN={run}")  # fmt: skip
