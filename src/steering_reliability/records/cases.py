"""The side that runs cases (an xdist worker, or the only process with -n 0 / -p no:xdist).

After collection it registers the run (run.json with the expected cases) and cleans stale
temps; before each case it skips one whose part already exists and validates (at run time,
so every worker collects the same tests); after a case passes, it writes the case's part
itself and attaches only the part's path, a plain str, to the report.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from . import manifest
from .identity import SPEC, CaseSpec, spec_of, uses_record
from .keys import failed_part_path, part_path, parts_dir
from .resolve import Resolved
from .runs import RunPlan, update_latest

PART_PROPERTY = "sr_part"  # user_property: path of the part this case wrote or reused
CASE_PROPERTY = "sr_case"  # user_property: key of a recording case (evidence for the controller)
PASSED = pytest.StashKey[bool]()  # whether the case's call phase passed


class CaseRecorder:
    """What the `record` fixture gives a case: hand it rows, they become the case's part.

    Rows are checked (schema columns, plain values, unique row keys) when handed over; the
    part is written atomically by this process only if the case passes.
    """

    def __init__(self, spec: CaseSpec, plan: RunPlan) -> None:
        self.spec = spec
        self.plan = plan
        self._rows: list[dict[str, Any]] = []

    @property
    def part(self) -> Path:
        """Where this case's part lives once written."""
        return part_path(parts_dir(self.plan.run_dir, self.plan.config_hash), self.spec.key)

    @property
    def done(self) -> bool:
        """Whether a valid part for this case is already on disk."""
        from .parts import part_exists_and_valid

        directory = parts_dir(self.plan.run_dir, self.plan.config_hash)
        return part_exists_and_valid(directory, self.spec.key) is not None

    @property
    def case_id(self) -> str:
        """The case id filled into rows that do not set one."""
        return self.spec.case_id

    @property
    def run_id(self) -> str:
        """The run's id, identical in every process of the session."""
        return self.plan.run_id

    @property
    def n_rows(self) -> int:
        """Rows handed over so far."""
        return len(self._rows)

    def rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add rows (schema columns only; numpy/torch scalars become plain Python values).

        run_id and config_hash are always filled in; case_id and experiment default to the
        case's id and the test module's name without `test_`.
        """
        from .parts import check_unique_keys
        from .schema import normalize_row

        fixed = {"run_id": self.plan.run_id, "config_hash": self.plan.config_hash}
        defaults = {"case_id": self.spec.case_id, "experiment": self.spec.experiment}
        new = []
        for row in rows:
            for name, value in fixed.items():
                if row.get(name) not in (None, value):
                    raise ValueError(f"row sets {name}={row[name]!r}; this run's is {value!r}")
            merged = {**row, **fixed}
            for name, value in defaults.items():
                if merged.get(name) is None:
                    merged[name] = value
            new.append(normalize_row(merged))
        check_unique_keys(self._rows + new, f"case {self.spec.nodeid}")
        self._rows.extend(new)

    def row(self, **fields: Any) -> None:
        """Add one row given as keyword arguments."""
        self.rows([fields])

    def buffered(self) -> list[dict[str, Any]]:
        """A copy of the rows handed over so far."""
        return [dict(r) for r in self._rows]


@dataclass(frozen=True)
class RunHandle:
    """The run as seen by session fixtures (`sr_run`): ids, folders, provenance notes."""

    run_id: str
    run_dir: Path
    config_hash: str

    def annotate(self, key: str, value: Any) -> None:
        """Record a provenance fact in run.json (e.g. model_weights_hash); a change is refused."""
        manifest.annotate(self.run_dir, key, value)


class CaseRunner:
    """Plugin object on every process that runs tests; see the module docstring."""

    def __init__(
        self,
        config: pytest.Config,
        get_plan: Callable[[], RunPlan],
        get_resolved: Callable[[], Resolved],
    ) -> None:
        self.config = config
        self._get_plan = get_plan
        self._get_resolved = get_resolved
        self._plan: RunPlan | None = None
        self._resolved: Resolved | None = None
        self.error: str | None = None
        self.started = False
        self._beats: dict[str, Any] = {}  # nodeid -> records.progress.Heartbeat of a running case

    def plan(self) -> RunPlan:
        """The session's plan (from the controller); raises UsageError-worthy errors."""
        if self._plan is None:
            self._plan = self._get_plan()
        return self._plan

    def resolved(self) -> Resolved:
        """The config as loaded in this process (once), without any run planning."""
        if self._resolved is None:
            self._resolved = self._get_resolved()
        return self._resolved

    def config_object(self) -> Any:
        """The loaded config object, checked against the hash the controller planned with."""
        resolved = self.resolved()
        if resolved.hash != self.plan().config_hash:
            pytest.fail(
                f"the config resolved here has hash {resolved.hash}, the run was planned with "
                f"{self.plan().config_hash}: did a config file change during the session?",
                pytrace=False,
            )
        return resolved.obj

    def handle(self) -> RunHandle:
        """The RunHandle of this session's run."""
        plan = self.plan()
        return RunHandle(plan.run_id, Path(plan.run_dir), plan.config_hash)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Emitted after collection: register the run and its expected cases before any runs."""
        items = [i for i in session.items if uses_record(i)]
        if not items or self.config.option.collectonly:
            return
        try:
            plan = self.plan()
            specs = [spec_of(i, self.config.rootpath, plan.config_hash) for i in items]
            for item, spec in zip(items, specs, strict=True):
                item.stash[SPEC] = spec
            self._start(plan, specs)
        except Exception as exc:  # reported on each recording case, not as an INTERNALERROR
            self.error = f"steering_reliability: cannot record this session: {exc}"

    def _start(self, plan: RunPlan, specs: list[CaseSpec]) -> None:
        from .parts import clean_stale_temps

        directory = parts_dir(plan.run_dir, plan.config_hash)
        directory.mkdir(parents=True, exist_ok=True)
        clean_stale_temps(directory)
        cases = {s.key: {"nodeid": s.nodeid, "case_id": s.case_id} for s in specs}
        manifest.start_run(
            plan.run_dir,
            run_id=plan.run_id,
            config=plan.config,
            inputs=plan.inputs,
            session=plan.session,
            cases=cases,
            rootdir=self.config.rootpath,
            extra={"config_source": plan.config_source},
            code=plan.code,
        )
        update_latest(plan.runs_dir, plan.run_dir)
        self.started = True

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Emitted before a case's fixtures: skip it if its part exists and validates."""
        spec = item.stash.get(SPEC, None)
        if spec is None:
            if self.error is not None and uses_record(item):
                pytest.fail(self.error, pytrace=False)
            return
        from .parts import part_exists_and_valid

        item.user_properties.append((CASE_PROPERTY, spec.key))
        plan = self.plan()
        done = part_exists_and_valid(parts_dir(plan.run_dir, plan.config_hash), spec.key)
        if done is not None:
            item.user_properties.append((PART_PROPERTY, str(done)))
            pytest.skip(f"already recorded in {done}")
        # The case will run: a heartbeat file says so while it does (it also covers the session
        # fixtures its setup builds, e.g. the shared baseline); see records.progress.
        from ..listeners import GENERATION_PROGRESS
        from .progress import Heartbeat

        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        beat = Heartbeat(plan.run_dir, worker, spec.case_id, spec.nodeid)
        self._beats[item.nodeid] = beat
        GENERATION_PROGRESS.append(beat.generation)

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(
        self, item: pytest.Item, call: pytest.CallInfo[None]
    ) -> Generator[None, pytest.TestReport, pytest.TestReport]:
        """Emitted for each phase's report: remember whether the case's call passed."""
        report = yield
        if report.when == "call" and SPEC in item.stash:
            item.stash[PASSED] = report.passed
        return report

    def open_case(self, item: pytest.Item) -> CaseRecorder:
        """The CaseRecorder for the `record` fixture (also for getfixturevalue use)."""
        if self.error is not None:
            pytest.fail(self.error, pytrace=False)
        plan = self.plan()
        spec = item.stash.get(SPEC, None)
        if spec is None:  # requested dynamically (getfixturevalue): unknown at collection
            spec = spec_of(item, self.config.rootpath, plan.config_hash)
            item.stash[SPEC] = spec
            self._start(plan, [spec])
            item.user_properties.append((CASE_PROPERTY, spec.key))
            rec = CaseRecorder(spec, plan)
            if rec.done:
                item.user_properties.append((PART_PROPERTY, str(rec.part)))
                pytest.skip(f"already recorded in {rec.part}")
            return rec
        return CaseRecorder(spec, plan)

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        """Emitted when a test is done (all phases): its heartbeat file goes."""
        beat = self._beats.pop(nodeid, None)
        if beat is not None:
            from ..listeners import GENERATION_PROGRESS

            if beat.generation in GENERATION_PROGRESS:
                GENERATION_PROGRESS.remove(beat.generation)
            beat.close()

    def close_case(self, item: pytest.Item, rec: CaseRecorder) -> None:
        """After the case: write its part if it passed, and attach the part's path."""
        from .parts import write_part

        passed = item.stash.get(PASSED, False)
        rows = rec.buffered()
        if not passed and not rows:
            return
        plan = self.plan()
        torch = sys.modules.get("torch")
        meta = {
            "cell": rec.spec.cell,
            "case_id": rec.spec.case_id,
            "nodeid": rec.spec.nodeid,
            "run_id": plan.run_id,
            "config_hash": plan.config_hash,
            "pid": os.getpid(),
            "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"),
            "written": manifest.now_iso(),
            "seconds": _case_seconds(self._beats.get(item.nodeid)),
            "torch_num_threads": torch.get_num_threads() if torch is not None else None,
        }
        directory = parts_dir(plan.run_dir, plan.config_hash)
        from .progress import SUMMARY_PROPERTY, case_summary

        item.user_properties.append((SUMMARY_PROPERTY, json.dumps(case_summary(rows))))
        if not passed:
            # A failed case keeps its rows aside: its verdict rows (e.g. a sanity check's
            # passed=False) reach results.parquet, but the case is not done and reruns.
            failed = failed_part_path(directory, rec.spec.key)
            write_part(failed.parent, rec.spec.key, rows, {**meta, "failed": True})
            return
        path = write_part(directory, rec.spec.key, rows, meta)
        failed_part_path(directory, rec.spec.key).unlink(missing_ok=True)
        item.user_properties.append((PART_PROPERTY, str(path)))


def _case_seconds(beat: Any) -> float | None:
    """Wall seconds since the case's setup began (its heartbeat's start), if known."""
    import time

    started = getattr(beat, "state", {}).get("started")
    return None if started is None else round(time.time() - float(started), 3)
