"""The recorder's pytest side in every process: options and hooks, one memo of the run (the
loaded config and the plan), which tests are cases, and the runner (an xdist worker, or the
only process) that skips done cases and writes parts. The controller's side is controller.py.

Workers write their own parts and attach only a note of plain values (the part's path, the
case's time and rates) to the report; the controller derives results.parquet from what is on
disk. So a lost worker or controller loses at most the running case. Nothing here imports
pyarrow, pydantic or torch at module level: the plugin is loaded in every pytest session of the
environment and stays inert without a `record` fixture; the records modules load once a
session records.
"""

from __future__ import annotations

import functools
import json
import math
import os
import sys
import time
import uuid
from collections.abc import Callable, Generator, Iterable, Mapping
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from steering_reliability import timing
from steering_reliability.errors import SteeringReliabilityError
from steering_reliability.listeners import GENERATION_PROGRESS
from steering_reliability.records import DEFAULT_CODE_PATHS, RESUME_MODES

if TYPE_CHECKING:
    from steering_reliability.records.progress import Heartbeat
    from steering_reliability.records.run import RunPlan

FAST_CONFIG = "configs/fast.yaml"
DEFAULT_CONFIG = "configs/default.yaml"
DEFAULT_RUNS_DIR = "artifacts/runs"
FIXTURE = "record"
FIXTURE_MODULE = "steering_reliability.pytest_plugin"  # where the `record` fixture is defined
NOTE = "sr_case"  # user_property: JSON of a recording case's note, the one the controller reads
PASSED = pytest.StashKey[bool]()  # whether the case's call phase passed
NOTES = pytest.StashKey[dict[str, Any]]()
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

    @pytest.hookspec(firstresult=True)
    def pytest_sr_case_work(self, config: pytest.Config, item: pytest.Item) -> float | None:
        """A recording case's expected work, roughly (e.g. prompts x new tokens), known at
        collection: the ETA weighs a case whose kind has not run yet by it (progress.eta)."""


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
    group.addoption("--resume", dest="sr_resume", choices=RESUME_MODES, default="auto",
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
                  type="linelist", default=list(DEFAULT_CODE_PATHS))  # fmt: skip


def worker() -> str:
    return os.environ.get("PYTEST_XDIST_WORKER", "main")


class RunState:
    """This process's one memo of the run: the recorder's options, the config object the
    `pytest_sr_load_config` hook loads, and the plan, made here on the controller or received
    as plain values (`wire`) on an xdist worker. A planning error is remembered."""

    def __init__(
        self,
        config: pytest.Config,
        wire: Mapping[str, Any] | None,
        *,
        parse_override: Callable[[str], tuple[str, Any]],
        fast_overrides: Callable[[Path, str], dict[str, Any]],
    ) -> None:
        """`parse_override` reads one --set KEY=VALUE (raising an error with the reason) and
        `fast_overrides` gives --fast's settings for a config given with --config."""
        self.config, self.wire, get = config, wire, config.getoption
        self.config_path: str | None = get("sr_config")
        self.overrides: dict[str, Any] = {}
        if get("sr_fast"):
            if self.config_path is None:
                self.config_path = str(config.rootpath / FAST_CONFIG)
            else:
                self.overrides = fast_overrides(config.rootpath, self.config_path)
        named = {"model.name": "sr_model", "model.dtype": "sr_dtype", "model.device": "sr_device"}
        self.overrides |= {k: get(v) for k, v in named.items() if get(v) is not None}
        try:
            self.overrides |= dict(parse_override(item) for item in get("sr_set"))
        except SteeringReliabilityError as exc:
            raise pytest.UsageError(f"--set: {exc}") from None
        self.report: bool = bool(get("sr_report"))
        # the user asked for recording explicitly: plan eagerly, fail early
        self.explicit = bool(self.config_path or self.overrides or get("sr_run_id")
                             or get("sr_resume") != "auto")  # fmt: skip
        self.current: RunPlan | None = None
        self.error: str | None = None

    @functools.cached_property
    def config_object(self) -> Any:
        """The loaded config, once per process (collection-time code may need it early)."""
        return self.config.hook.pytest_sr_load_config(
            config=self.config, path=self.config_path, overrides=self.overrides
        )

    def plan(self) -> RunPlan:
        """The run this session records into; decided once, on the controller, for every worker."""
        if self.current is None and self.error is None:
            try:
                self.current = self._make_plan()
            except USER_ERRORS as exc:
                self.error = str(exc)
        if self.current is None:
            raise pytest.UsageError(self.error)
        return self.current

    def _make_plan(self) -> RunPlan:
        from steering_reliability.records import run as runs

        if self.wire is not None:  # an xdist worker: the controller's plan, or why there is none
            if "plan" not in self.wire:
                raise SteeringReliabilityError(str(self.wire.get("error")))
            return runs.RunPlan.model_validate(self.wire["plan"])
        config, obj, root = self.config, self.config_object, self.config.rootpath
        data = runs.to_plain(obj)
        source = str(data.pop("source", None) or self.config_path or "")  # not hashed
        inputs = runs.input_files(data, root)
        for more in config.hook.pytest_sr_input_files(config=config, obj=obj, root=root):
            inputs |= dict(more or {})
        get = config.getoption
        workers = get("numprocesses", None) if config.pluginmanager.hasplugin("xdist") else None
        session = {"id": uuid.uuid4().hex, "started": runs.now_iso(), "pid": os.getpid(),
                   "argv": [str(a) for a in sys.argv],
                   "args": [str(a) for a in config.invocation_params.args],
                   "workers": workers if isinstance(workers, int) else 0}  # fmt: skip
        code = runs.code_fingerprint(root, config.getini("sr_code_paths"))
        return runs.plan_run(root / get("sr_runs_dir"), config=data, inputs=inputs,
                             run_id=get("sr_run_id"), resume=get("sr_resume"),
                             config_source=source, session=session, code=code)  # fmt: skip

    def to_wire(self) -> dict[str, Any]:
        """The plan for an xdist worker, as plain values (or the reason there is none)."""
        try:
            return {"plan": self.plan().model_dump(mode="json")}
        except Exception as exc:  # a session without recording cases must still run
            return {"error": str(exc) or type(exc).__name__}

    def checked_config(self) -> Any:
        """The config object, checked on a worker against the one the run was planned with."""
        plan = self.plan()
        if self.wire is not None:
            from steering_reliability.records.run import differences, to_plain

            data = to_plain(self.config_object)
            data.pop("source", None)
            if data != plan.config:
                lines = "; ".join(differences(plan.config, data))
                pytest.fail(f"the config loaded here differs from the one the run was planned "
                            f"with ({lines}): did a config file change during the session?",
                            pytrace=False)  # fmt: skip
        return self.config_object


# ---------------------------------------------------------------- which tests are cases


@dataclass(frozen=True)
class CaseSpec:
    """Identity of one recording case: its key, its cell and readable ids, its kind (the test
    function: cases of one kind cost alike) and expected work; run.json lists these."""

    key: str
    cell: dict[str, Any]
    case_id: str
    experiment: str
    nodeid: str
    kind: str
    work: float | None = None


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


def spec_of(item: pytest.Item, rootpath: Path, config_hash: str, work: Any = None) -> CaseSpec:
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
    work = None if work is None else float(work)  # a positive number, or nothing known
    return CaseSpec(case_key(cell, config_hash), cell, case_id, stem, item.nodeid, cell["test"],
                    work if work and math.isfinite(work) and work > 0 else None)  # fmt: skip


def _jsonable(value: Any) -> bool:
    try:
        json.dumps(value, allow_nan=False)
    except (TypeError, ValueError):
        return False
    return True


def note(item: pytest.Item, **fields: Any) -> None:
    """Add plain values to the case's note: one user_property (a JSON string, so nothing that
    execnet cannot carry reaches the controller), updated as the case goes."""
    data = item.stash.setdefault(NOTES, {})
    data.update(fields)
    item.user_properties[:] = [p for p in item.user_properties if p[0] != NOTE]
    item.user_properties.append((NOTE, json.dumps(data, allow_nan=False)))


# ---------------------------------------------------------------- the runner (every process)


class CaseRecorder:
    """What the `record` fixture gives a case: rows handed to `rows()` become its part, written
    atomically by this process only if the case passes."""

    def __init__(self, spec: CaseSpec, plan: RunPlan) -> None:
        self.spec, self.plan = spec, plan
        self.buffered: list[dict[str, Any]] = []

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
        check_unique_keys(self.buffered + new, f"case {self.spec.nodeid}")  # said in the case
        self.buffered.extend(new)


class CaseRunner:
    """Plugin object on every process that runs tests: registers the run (run.json with the
    expected cases) after collection, skips a case whose part exists and validates (at run
    time, so every worker collects the same tests), and writes the part of a case that passed."""

    def __init__(self, config: pytest.Config, run: RunState) -> None:
        self.config, self.run = config, run
        self.error: str | None = None
        self._beats: dict[str, Heartbeat] = {}  # nodeid -> the heartbeat of a running case

    def pytest_sessionstart(self, session: pytest.Session) -> None:
        """Emitted at session start: a case's time counts from here, not from earlier work in
        the process (timing.py)."""
        timing.take()

    def parts(self) -> Path:
        from steering_reliability.records.store import parts_dir

        return parts_dir(self.run.plan().run_dir, self.run.plan().config_hash)

    @pytest.hookimpl(trylast=True)
    def pytest_collection_finish(self, session: pytest.Session) -> None:
        """Emitted after collection: register the run and its expected cases before any runs."""
        items = [i for i in session.items if uses_record(i)]
        if not items or self.config.option.collectonly:
            return
        from steering_reliability.records.run import update_latest
        from steering_reliability.records.store import clean_stale_temps

        try:
            plan, hook = self.run.plan(), self.config.hook.pytest_sr_case_work
            for item in items:
                work = hook(config=self.config, item=item)
                item.stash[SPEC] = spec_of(item, self.config.rootpath, plan.config_hash, work)
            self.parts().mkdir(parents=True, exist_ok=True)
            clean_stale_temps(self.parts())
            plan.start(
                {i.stash[SPEC].key: asdict(i.stash[SPEC]) for i in items}, self.config.rootpath
            )
            update_latest(plan.runs_dir, plan.run_dir)
        except Exception as exc:  # reported on each recording case, not as an INTERNALERROR
            self.error = f"steering_reliability: cannot record this session: {exc}"

    @pytest.hookimpl(tryfirst=True)
    def pytest_runtest_setup(self, item: pytest.Item) -> None:
        """Emitted before a case's fixtures: skip it if its part exists and validates (from the
        part's footer alone); else a heartbeat file says it runs (covering the session fixtures
        its setup builds)."""
        spec = item.stash.get(SPEC, None)
        if spec is None:
            if self.error is not None and uses_record(item):
                pytest.fail(self.error, pytrace=False)
            return
        from steering_reliability.records.progress import Heartbeat
        from steering_reliability.records.store import done_part

        note(item, key=spec.key, kind=spec.kind, work=spec.work)
        done = done_part(self.parts(), spec.key)
        if done is not None:  # its recorded time still tells the ETA what such a case costs
            note(item, part=done.path, reused=True, seconds=done.meta.get("seconds"))
            pytest.skip(f"already recorded in {done.path}")
        beat = Heartbeat(self.run.plan().run_dir, worker(), spec.case_id, spec.nodeid)
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
        return CaseRecorder(item.stash[SPEC], self.run.plan())

    def pytest_runtest_logfinish(self, nodeid: str, location: Any) -> None:
        """Emitted when a test is done (all phases): its heartbeat file goes."""
        beat = self._beats.pop(nodeid, None)
        if beat is not None:
            if beat.generation in GENERATION_PROGRESS:
                GENERATION_PROGRESS.remove(beat.generation)
            beat.close()

    def close_case(self, item: pytest.Item, rec: CaseRecorder) -> None:
        """After the case: write its part if it passed (a case that did not keeps its rows
        aside: its verdict rows reach results.parquet, but it is not done and reruns)."""
        from steering_reliability.records.progress import case_summary
        from steering_reliability.records.run import now_iso
        from steering_reliability.records.store import part_path, write_part

        passed, rows, spec = item.stash.get(PASSED, False), rec.buffered, rec.spec
        beat = self._beats.get(item.nodeid)
        seconds = None if beat is None else round(time.time() - float(beat.state["started"]), 3)
        try:
            if passed or rows:
                torch = sys.modules.get("torch")  # never imported just to ask
                threads = torch.get_num_threads() if torch else None
                meta = {**asdict(spec), "run_id": rec.plan.run_id, "pid": os.getpid(),
                        "config_hash": rec.plan.config_hash, "worker": worker(),
                        "written": now_iso(), "seconds": seconds, "failed": not passed,
                        "torch_num_threads": threads}  # fmt: skip
                note(item, summary=case_summary(rows))
                with timing.phase("recording"):
                    path = write_part(self.parts() / ("" if passed else "failed"), spec.key,
                                      rows, meta)  # fmt: skip
                if passed:
                    part_path(self.parts(), spec.key, failed=True).unlink(missing_ok=True)
                    note(item, part=str(path), rows=len(rows))
        finally:  # every recording case reports its time, passed, failed or skipped
            spent = {**timing.take(), "seconds": seconds, "worker": worker()}
            note(item, seconds=seconds, time=spent)
