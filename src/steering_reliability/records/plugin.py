"""The recorder's pytest side: options, the controller that plans and compacts, and the
runner (an xdist worker, or the only process) that skips done cases and writes parts.

Workers write their own parts and attach only the part's path (a plain str) to the report; the
controller derives results.parquet from what is on disk. So a lost worker or controller loses
at most the running case. Nothing here imports pyarrow or torch at module level: the plugin is
loaded in every pytest session of the environment and stays inert without a `record` fixture.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from steering_reliability import timing
from steering_reliability.errors import SteeringReliabilityError
from steering_reliability.records import run as runs
from steering_reliability.records.run import RunPlan

FAST_CONFIG = "configs/fast.yaml"
DEFAULT_CONFIG = "configs/default.yaml"
DEFAULT_RUNS_DIR = "artifacts/runs"
FIXTURE = "record"
FIXTURE_MODULE = "steering_reliability.pytest_plugin"  # where the `record` fixture is defined
PART_PROPERTY = "sr_part"  # user_property: path of the part this case wrote or reused
CASE_PROPERTY = "sr_case"  # user_property: key of a recording case (evidence for the controller)
TIME_PROPERTY = "sr_time"  # user_property: JSON of the case's time by phase (timing.take())
PASSED = pytest.StashKey[bool]()  # whether the case's call phase passed
# Errors that are the user's to fix (bad config, refused resume...), shown without traceback.
USER_ERRORS = (SteeringReliabilityError, ValueError, OSError)


class Hookspecs:
    """Hooks a conftest.py can implement."""

    @pytest.hookspec(firstresult=True)
    def pytest_sr_load_config(
        self, config: pytest.Config, path: str | None, overrides: Mapping[str, Any]
    ) -> Any:
        """Load the run's configuration (once per process that needs it): a Config with
        `to_dict()` or a mapping; `path` from --config (configs/fast.yaml with --fast, None:
        the default), `overrides` dotted keys (e.g. {"model.name": ...} from --model)."""

    def pytest_sr_input_files(self, config: pytest.Config, obj: Any, root: Path) -> Any:
        """Files the run reads beyond those its config names ({portable path: sha256}); every
        implementation's answer is merged (a behaviour's data is an input with no config line)."""

    @pytest.hookspec(firstresult=True)
    def pytest_sr_render_report(self, config: pytest.Config, run_dir: Path) -> Any:
        """Render the report of a finished run directory; the result's `failed` checks,
        `headline` lines, `figures` and `run_dir` are shown at the session's end."""


def add_options(parser: pytest.Parser) -> None:
    """Register the recorder's command-line options (values are checked with the config they
    override, so that loading pytest never imports the config's validation)."""
    group = parser.getgroup("steering_reliability", "steering-reliability recording")
    group.addoption("--config", dest="sr_config", metavar="PATH",
                    help="experiment config YAML (default: configs/default.yaml)")  # fmt: skip
    group.addoption("--fast", dest="sr_fast", action="store_true",
                    help=f"smoke-sized: {FAST_CONFIG}; with --config, that config with the "
                    f"settings where {FAST_CONFIG} differs from {DEFAULT_CONFIG}")  # fmt: skip
    group.addoption("--model", dest="sr_model", metavar="NAME", help="override model.name")
    group.addoption("--dtype", dest="sr_dtype", metavar="auto|float32|bfloat16",
                    help="override model.dtype (auto: bfloat16 only where the hardware has it "
                    "and the project's agreement report allows it)")  # fmt: skip
    group.addoption("--device", dest="sr_device", metavar="auto|cpu|cuda",
                    help="override model.device (auto, the default: cuda when torch sees a GPU)")  # fmt: skip
    group.addoption("--set", dest="sr_set", action="append", default=[], metavar="KEY=VALUE",
                    help="override one config setting by its dotted key, the value read as YAML "
                    "(e.g. --set refusal_direction.kl_max=0.5); repeatable, applied last")  # fmt: skip
    group.addoption("--run-id", dest="sr_run_id", metavar="ID",
                    help="record into artifacts/runs/ID (default: a new id, or see --resume)")  # fmt: skip
    group.addoption("--resume", dest="sr_resume", choices=runs.RESUME_MODES, default="auto",
                    help="auto: continue the latest run of the same config and code; never: a "
                    "new run; must: fail unless there is an earlier run (default: auto)")  # fmt: skip
    group.addoption("--report", dest="sr_report", action="store_true", default=True,
                    help="render the report after the session (default)")  # fmt: skip
    group.addoption("--no-report", dest="sr_report", action="store_false",
                    help="do not render the report after the session")  # fmt: skip
    group.addoption("--runs-dir", dest="sr_runs_dir", metavar="DIR", default=DEFAULT_RUNS_DIR,
                    help=f"where runs live, relative to the rootdir (default {DEFAULT_RUNS_DIR})")  # fmt: skip
    parser.addini("sr_code_paths", "files or folders (relative to the rootdir) whose .py files, "
                  "with the package's, make the code fingerprint a run resumes only with",
                  type="linelist", default=list(runs.DEFAULT_CODE_PATHS))  # fmt: skip


@dataclass(frozen=True)
class Options:
    """The recorder's options, as plain values."""

    config_path: str | None
    overrides: dict[str, Any]
    run_id: str | None
    resume: str
    report: bool
    runs_dir: str
    explicit: bool  # the user asked for recording explicitly: plan eagerly, fail early

    @classmethod
    def from_config(
        cls,
        config: pytest.Config,
        *,
        parse_override: Callable[[str], tuple[str, Any]],
        fast_overrides: Callable[[Path, str], dict[str, Any]],
    ) -> Options:
        """The options; `parse_override` reads one --set KEY=VALUE (raising an error with the
        reason) and `fast_overrides` gives --fast's settings for a config given with --config."""
        get = config.getoption
        path: str | None = get("sr_config")
        overrides: dict[str, Any] = {}
        if get("sr_fast"):
            if path is None:
                path = str(config.rootpath / FAST_CONFIG)
            else:
                overrides = fast_overrides(config.rootpath, path)
        overrides |= {k: v for k, v in (("model.name", get("sr_model")),
                                        ("model.dtype", get("sr_dtype")),
                                        ("model.device", get("sr_device"))) if v is not None}  # fmt: skip
        try:
            overrides |= dict(parse_override(item) for item in get("sr_set"))
        except SteeringReliabilityError as exc:
            raise pytest.UsageError(f"--set: {exc}") from None
        explicit = bool(path or overrides or get("sr_run_id") or get("sr_resume") != "auto")
        return cls(path, overrides, get("sr_run_id"), get("sr_resume"), bool(get("sr_report")),
                   str(config.rootpath / get("sr_runs_dir")), explicit)  # fmt: skip


def _inputs(config: pytest.Config, obj: Any, data: Mapping[str, Any], root: Path) -> dict[str, str]:
    """The files a run reads: those its config names, and those the `pytest_sr_input_files`
    implementations add."""
    found = runs.input_files(data, root)
    for more in config.hook.pytest_sr_input_files(config=config, obj=obj, root=root):
        found |= dict(more or {})
    return found


@dataclass(frozen=True)
class Resolved:
    """A loaded config object with its plain identity dict, hash and input files' sha256."""

    obj: Any
    data: dict[str, Any]
    source: str
    hash: str
    inputs: dict[str, str]


def resolve_for(config: pytest.Config, options: Options) -> Resolved:
    """Load the config through the `pytest_sr_load_config` hook and resolve it (the `source`
    key says where it came from, not what it is: it is not hashed)."""
    obj = config.hook.pytest_sr_load_config(
        config=config, path=options.config_path, overrides=dict(options.overrides)
    )
    data = runs.to_plain(obj)
    source = str(data.pop("source", None) or options.config_path or "")
    return Resolved(
        obj, data, source, runs.config_hash(data), _inputs(config, obj, data, config.rootpath)
    )


def plan_for(config: pytest.Config, options: Options, resolved: Resolved) -> RunPlan:
    """The controller's plan for this session (reads the disk, creates nothing)."""
    workers = (
        config.getoption("numprocesses", None) if config.pluginmanager.hasplugin("xdist") else None
    )
    session = {"id": uuid.uuid4().hex, "started": runs.now_iso(), "argv": [str(a) for a in sys.argv],
               "args": [str(a) for a in config.invocation_params.args],
               "workers": workers if isinstance(workers, int) else 0, "pid": os.getpid()}  # fmt: skip
    return runs.plan_run(options.runs_dir, config=resolved.data, inputs=resolved.inputs,
                         run_id=options.run_id, resume=options.resume, config_source=resolved.source,
                         session=session,
                         code=runs.code_fingerprint(config.rootpath, config.getini("sr_code_paths")))  # fmt: skip


# ---------------------------------------------------------------- which tests are cases


@dataclass(frozen=True)
class CaseSpec:
    """Identity of one recording case: its key, its cell and readable ids."""

    key: str
    cell: dict[str, Any]
    case_id: str
    experiment: str
    nodeid: str


SPEC = pytest.StashKey[CaseSpec]()


def uses_record(item: pytest.Item) -> bool:
    """Whether the item gets this plugin's `record` fixture: a test may parametrize an argument
    named `record`, or a conftest define its own; only a chain of overrides ending in ours counts."""
    info = getattr(item, "_fixtureinfo", None)
    for fixturedef in reversed(info.name2fixturedefs.get(FIXTURE, ()) if info else ()):
        if getattr(fixturedef.func, "__module__", "") == FIXTURE_MODULE:
            return True
        if FIXTURE not in fixturedef.argnames:  # an override that does not wrap ours
            return False
    return False


def spec_of(item: pytest.Item, rootpath: Path, config_hash: str) -> CaseSpec:
    """The case's identity, built from the item (test path, class, function, parameters), never
    parsed from the node id: `--dist loadgroup` rewrites node ids, and workers must agree on
    every key. Parameters that are not plain JSON are identified by the parametrize id."""
    from steering_reliability.records.store import case_key

    try:
        path = item.path.relative_to(rootpath).as_posix()
    except ValueError:
        path = item.path.name
    classes = [n.name for n in item.listchain() if isinstance(n, pytest.Class)]
    name = getattr(item, "originalname", item.name)
    cell: dict[str, Any] = {"test": "::".join([path, *classes, name]), "params": {}}
    callspec = getattr(item, "callspec", None)
    if callspec is not None:
        params = dict(sorted(callspec.params.items()))
        cell["params"] = {k: v for k, v in params.items() if _jsonable(v)}
        if len(cell["params"]) < len(params):
            cell["id"] = callspec.id
    stem = item.path.stem.removeprefix("test_")
    case_id = callspec.id if callspec is not None else name
    return CaseSpec(case_key(cell, config_hash), cell, case_id, stem, item.nodeid)


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


# ---------------------------------------------------------------- the runner (every process)


class CaseRecorder:
    """What the `record` fixture gives a case: rows handed to `rows()` become its part, written
    atomically by this process only if the case passes."""

    def __init__(self, spec: CaseSpec, plan: RunPlan) -> None:
        self.spec, self.plan = spec, plan
        self._rows: list[dict[str, Any]] = []

    @property
    def run_id(self) -> str:
        return self.plan.run_id

    def rows(self, rows: Iterable[Mapping[str, Any]]) -> None:
        """Add rows (schema columns only; numpy/torch scalars become plain values). run_id and
        config_hash are filled in; case_id and experiment default to the case's id and the
        test module's name without `test_`."""
        from steering_reliability.records.schema import normalize_row
        from steering_reliability.records.store import check_unique_keys

        fixed = {"run_id": self.plan.run_id, "config_hash": self.plan.config_hash}
        new = []
        for row in rows:
            for name, value in fixed.items():
                if row.get(name) not in (None, value):
                    raise ValueError(f"row sets {name}={row[name]!r}; this run's is {value!r}")
            merged = {"case_id": self.spec.case_id, "experiment": self.spec.experiment}
            merged.update({k: v for k, v in row.items() if v is not None or k not in merged})
            new.append(normalize_row({**merged, **fixed}))
        check_unique_keys(self._rows + new, f"case {self.spec.nodeid}")  # said here, in the case
        self._rows.extend(new)

    def buffered(self) -> list[dict[str, Any]]:
        """A copy of the rows handed over so far."""
        return [dict(r) for r in self._rows]


@dataclass(frozen=True)
class RunHandle:
    """The run as session fixtures see it (`sr_run`): ids, folder, provenance notes."""

    run_id: str
    run_dir: Path
    config_hash: str

    def annotate(self, key: str, value: Any) -> None:
        """Record a provenance fact in run.json (e.g. model_weights_hash); a change is refused."""
        runs.annotate(self.run_dir, key, value)


class CaseRunner:
    """Plugin object on every process that runs tests: registers the run (run.json with the
    expected cases) after collection, skips a case whose part exists and validates (at run
    time, so every worker collects the same tests), and writes the part of a case that passed."""

    def __init__(self, config: pytest.Config, get_plan: Callable[[], RunPlan],
                 get_resolved: Callable[[], Resolved]) -> None:  # fmt: skip
        self.config = config
        self._get_plan, self._get_resolved = get_plan, get_resolved
        self._plan: RunPlan | None = None
        self._resolved: Resolved | None = None
        self.error: str | None = None
        self._beats: dict[str, Any] = {}  # nodeid -> progress.Heartbeat of a running case

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Emitted at session start: a case's time counts from here, not from earlier work in
        the process (timing.py)."""
        timing.take()

    def plan(self) -> RunPlan:
        if self._plan is None:
            self._plan = self._get_plan()
        return self._plan

    def resolved(self) -> Resolved:
        if self._resolved is None:
            self._resolved = self._get_resolved()
        return self._resolved

    def parts(self) -> Path:
        from steering_reliability.records.store import parts_dir

        return parts_dir(self.plan().run_dir, self.plan().config_hash)

    def config_object(self) -> Any:
        """The loaded config object, checked against the hash the controller planned with."""
        resolved = self.resolved()
        if resolved.hash != self.plan().config_hash:
            pytest.fail(f"the config resolved here has hash {resolved.hash}, the run was planned "
                        f"with {self.plan().config_hash}: did a config file change during the "
                        "session?", pytrace=False)  # fmt: skip
        return resolved.obj

    def handle(self) -> RunHandle:
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
            for item in items:
                item.stash[SPEC] = spec_of(item, self.config.rootpath, plan.config_hash)
            self._start(plan, [i.stash[SPEC] for i in items])
        except Exception as exc:  # reported on each recording case, not as an INTERNALERROR
            self.error = f"steering_reliability: cannot record this session: {exc}"

    def _start(self, plan: RunPlan, specs: list[CaseSpec]) -> None:
        from steering_reliability.records.store import clean_stale_temps

        self.parts().mkdir(parents=True, exist_ok=True)
        clean_stale_temps(self.parts())
        runs.start_run(plan.run_dir, run_id=plan.run_id, config=plan.config, inputs=plan.inputs,
                       session=plan.session, rootdir=self.config.rootpath, code=plan.code,
                       cases={s.key: {"nodeid": s.nodeid, "case_id": s.case_id} for s in specs},
                       extra={"config_source": plan.config_source})  # fmt: skip
        runs.update_latest(plan.runs_dir, plan.run_dir)

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Emitted before a case's fixtures: skip it if its part exists and validates; else a
        heartbeat file says it runs (covering the session fixtures its setup builds)."""
        spec = item.stash.get(SPEC, None)
        if spec is None:
            if self.error is not None and uses_record(item):
                pytest.fail(self.error, pytrace=False)
            return
        from steering_reliability.listeners import GENERATION_PROGRESS
        from steering_reliability.records.progress import Heartbeat
        from steering_reliability.records.store import part_exists_and_valid

        item.user_properties.append((CASE_PROPERTY, spec.key))
        done = part_exists_and_valid(self.parts(), spec.key)
        if done is not None:
            item.user_properties.append((PART_PROPERTY, str(done)))
            pytest.skip(f"already recorded in {done}")
        worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
        beat = Heartbeat(self.plan().run_dir, worker, spec.case_id, spec.nodeid)
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
        """The CaseRecorder for the `record` fixture."""
        if self.error is not None:
            pytest.fail(self.error, pytrace=False)
        if SPEC not in item.stash:  # requested dynamically (getfixturevalue): unknown at collection
            pytest.fail("the record fixture must be a test argument (it was requested "
                        "dynamically, so the case was not registered before the run)", pytrace=False)  # fmt: skip
        return CaseRecorder(item.stash[SPEC], self.plan())

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        """Emitted when a test is done (all phases): its heartbeat file goes."""
        from steering_reliability.listeners import GENERATION_PROGRESS

        beat = self._beats.pop(nodeid, None)
        if beat is not None:
            if beat.generation in GENERATION_PROGRESS:
                GENERATION_PROGRESS.remove(beat.generation)
            beat.close()

    def close_case(self, item: pytest.Item, rec: CaseRecorder) -> None:
        """After the case: write its part if it passed (a case that did not keeps its rows
        aside: its verdict rows reach results.parquet, but it is not done and reruns)."""
        passed = item.stash.get(PASSED, False)
        rows = rec.buffered()
        started = getattr(self._beats.get(item.nodeid), "state", {}).get("started")
        seconds = None if started is None else round(time.time() - float(started), 3)
        try:
            if passed or rows:
                self._write(item, rec, rows, passed, seconds)
        finally:  # every recording case reports its time, passed, failed or skipped
            tally = {**timing.take(), "seconds": seconds,
                     "worker": os.environ.get("PYTEST_XDIST_WORKER", "main")}  # fmt: skip
            item.user_properties.append((TIME_PROPERTY, json.dumps(tally)))

    def _write(
        self, item: pytest.Item, rec: CaseRecorder, rows: list[dict[str, Any]], passed: bool,
        seconds: float | None,
    ) -> None:  # fmt: skip
        from steering_reliability.records.progress import SUMMARY_PROPERTY, case_summary
        from steering_reliability.records.store import part_path, write_part

        torch = sys.modules.get("torch")
        meta = {"cell": rec.spec.cell, "case_id": rec.spec.case_id, "nodeid": rec.spec.nodeid,
                "run_id": rec.plan.run_id, "config_hash": rec.plan.config_hash, "pid": os.getpid(),
                "worker": os.environ.get("PYTEST_XDIST_WORKER", "main"), "written": runs.now_iso(),
                "seconds": seconds,
                "torch_num_threads": torch.get_num_threads() if torch is not None else None}  # fmt: skip
        item.user_properties.append((SUMMARY_PROPERTY, json.dumps(case_summary(rows))))
        if not passed:
            with timing.phase("recording"):
                write_part(self.parts() / "failed", rec.spec.key, rows, {**meta, "failed": True})
            return
        with timing.phase("recording"):
            path = write_part(self.parts(), rec.spec.key, rows, meta)
        part_path(self.parts(), rec.spec.key, failed=True).unlink(missing_ok=True)
        item.user_properties.append((PART_PROPERTY, str(path)))


# ---------------------------------------------------------------- the controller


@dataclass
class Tally:
    """What this session's reports said about recording cases (node id -> part path)."""

    cases: set[str] = field(default_factory=set)
    written: dict[str, str] = field(default_factory=dict)
    reused: dict[str, str] = field(default_factory=dict)
    times: list[dict[str, Any]] = field(default_factory=list)  # each case's time by phase


class Recorder:
    """The controller's plugin: plans the run once for every worker, notes the parts that the
    reports name, and at session end compacts, stamps run.json, points `latest` and reports."""

    def __init__(self, config: pytest.Config, options: Options) -> None:
        self.config, self.options = config, options
        self.tally = Tally()
        self._resolved: Resolved | None = None
        self.current_plan: RunPlan | None = None
        self._plan_error: str | None = None
        self.result: Any = None  # store.CompactResult, at session end
        self.problems: list[str] = []
        self.rendered: Any = None  # the report's paths and headline, when it was rendered
        self._header: list[str] = []
        self.started = time.perf_counter()
        self.breakdown: dict[str, Any] | None = None  # time by phase (timing.py), at session end

    def resolved(self) -> Resolved:
        if self._resolved is None:
            self._resolved = resolve_for(self.config, self.options)
        return self._resolved

    def plan(self) -> RunPlan:
        """The run this session records into; decided once, here, for every worker."""
        if self._plan_error is not None:
            raise pytest.UsageError(self._plan_error)
        if self.current_plan is None:
            try:
                self.current_plan = plan_for(self.config, self.options, self.resolved())
            except USER_ERRORS as exc:
                self._plan_error = str(exc)
                raise pytest.UsageError(self._plan_error) from exc
            if self.options.explicit:  # else said at the end, if the session recorded at all
                self._say(self.current_plan.note, yellow=True)
        return self.current_plan

    def _say(self, line: str, **markup: bool) -> None:
        reporter = self.config.pluginmanager.get_plugin("terminalreporter")
        if not line:
            return
        if reporter is None:  # a plan made at configure time: said in the header
            self._header.append(f"steering_reliability: {line}")
        else:
            reporter.write_line(f"steering_reliability: {line}", **markup)

    def pytest_report_header(self, config: pytest.Config) -> list[str]:
        """Emitted when the session header is written: what was said before it."""
        lines, self._header = self._header, []
        return lines

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
        spent = props.get(TIME_PROPERTY)
        if isinstance(spent, str) and report.when == "teardown":
            self.tally.times.append(json.loads(spent))
        part = props.get(PART_PROPERTY)
        if isinstance(part, str) and report.when == "setup" and report.skipped:
            self.tally.reused[report.nodeid] = part
        elif (
            isinstance(part, str)
            and report.when == "teardown"
            and report.nodeid not in self.tally.reused
        ):
            self.tally.written[report.nodeid] = part

    @pytest.hookimpl(trylast=True)
    def pytest_sessionfinish(self, session: pytest.Session) -> None:
        """Emitted at session end: compact parts, stamp run.json, point `latest`, report."""
        plan = self.current_plan
        if not self.tally.cases or plan is None:
            return
        from steering_reliability.records.store import RESULTS_NAME, compact, parts_dir

        run_dir = Path(plan.run_dir)
        try:
            with timing.phase("recording"):
                self.result = compact(parts_dir(run_dir, plan.config_hash), run_dir / RESULTS_NAME)
        except USER_ERRORS as exc:
            self._problem(session, f"compaction failed, parts are kept: {exc}")
        if self.options.report and self.result is not None and self.result.n_rows:
            with timing.phase("report"):
                self._render_report(run_dir, session)
        self.breakdown = self._time_by_phase()
        summary = {"cases": len(self.tally.cases), "parts_written": len(self.tally.written),
                   "parts_reused": len(self.tally.reused), "exitstatus": int(session.exitstatus),
                   "results_rows": self.result.n_rows if self.result else None,
                   "time_by_phase": self.breakdown}  # fmt: skip
        try:
            runs.finish_run(run_dir, str(plan.session.get("id")), summary)
            runs.update_latest(plan.runs_dir, run_dir)
        except USER_ERRORS as exc:
            self.problems.append(f"could not finish run.json: {exc}")

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Emitted at session start: time counts from here (nothing earlier in the process)."""
        timing.take()
        self.started = time.perf_counter()

    def _time_by_phase(self) -> dict[str, Any]:
        """This session's time by phase: every recording case's tally (passed, failed or
        skipped, from whichever worker ran it) and the controller's own (compaction, report)."""
        tallies = [*self.tally.times, timing.take()]
        workers = {t.get("worker") for t in self.tally.times}
        model = (self.current_plan.config if self.current_plan else {}).get("model", {})
        ceiling = timing.bench_ceiling(self.config.rootpath / "artifacts" / "bench.json", model)
        return {**timing.merge(tallies),
                "wall_seconds": round(time.perf_counter() - self.started, 1),
                "workers": max(1, len(workers)), "bench_ceiling": ceiling}  # fmt: skip

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
        plan = self.current_plan
        if not self.tally.cases or plan is None:
            return
        for problem in self.problems:
            self._say(problem, red=True)
        self._say(plan.note, yellow=True)
        if self.result is None:
            return
        import pyarrow.parquet as pq

        written = sum(
            pq.read_metadata(p).num_rows for p in self.tally.written.values() if Path(p).exists()
        )
        self._say(f"{written} rows written ({len(self.tally.written)} cases, "
                  f"{len(self.tally.reused)} already recorded) -> {self.result.path} "
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
