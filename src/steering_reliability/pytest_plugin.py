"""pytest plugin: experiments record rows to parquet through the `record` fixture.

Loaded in every pytest session of the environment (entry point `pytest11`), so it stays
inert and cheap: nothing is created on disk unless a collected test uses `record`, and the
heavy modules are imported only then. The design (why workers write their own parts, why
resume happens at run time) is in DESIGN.md and RELIABILITY.md; the logic is in `records/`.

For experiment authors:
    def test_case(record, sr_config):           # sr_config: the loaded Config
        record.rows([{"split": ..., "prompt_id": ..., ...}])   # columns of ROW_SCHEMA
A case whose part already exists is skipped ("already recorded in ..."); a case writes its
part only if it passes. `sr_run.annotate("model_weights_hash", h)` adds provenance.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

# Light imports only at module level: this plugin loads in every pytest session of the
# environment (records' plugin halves import pyarrow, pandas and torch only when they record).
from steering_reliability.records.controller import Recorder
from steering_reliability.records.plugin import (
    CaseRecorder,
    CaseRunner,
    Hookspecs,
    RunState,
    add_options,
)
from steering_reliability.studies import registered

if TYPE_CHECKING:
    from steering_reliability.records.run import RunPlan

RECORDER = pytest.StashKey["Recorder"]()
RUNNER = pytest.StashKey["CaseRunner"]()
WIRE_KEY = "steering_reliability"  # the plan's key in xdist's workerinput


def pytest_addoption(parser: pytest.Parser) -> None:
    """Emitted once at startup: register the recorder's command-line options."""
    add_options(parser)


def pytest_addhooks(pluginmanager: pytest.PytestPluginManager) -> None:
    """Emitted at registration: add the `pytest_sr_*` hooks a conftest may implement."""
    pluginmanager.add_hookspecs(Hookspecs)


# Markers every experiment case may carry, besides its study's and its behaviour's.
MARKERS = {
    "experiment": "a case of the experiments (records rows to results.parquet)",
    "sanity": "asserted sanity properties of an experiment (run these before trusting a result)",
    "records_baseline(name)": "the case records the unsteered baseline `name` that other cases "
    "are compared with (a selection that keeps such a case keeps this one)",
    "needs_baseline(name)": "the case is compared with the baseline `name`",
}


@pytest.hookimpl(tryfirst=True)
def pytest_load_initial_conftests(early_config: pytest.Config, args: list[str]) -> None:
    """Emitted before the initial conftests load: bare `pytest` runs tests/ (testpaths), but
    `pytest -m sanity` (or `-m experiment`, `-m refusal_direction`, `-m toxicity`) with no
    path means the experiments, where those markers live; `-m "not sanity"` still means the tests."""
    ns = early_config.known_args_namespace
    markexpr = getattr(ns, "markexpr", "") or ""
    root = early_config.rootpath
    if (
        not markexpr
        or ns.file_or_dir
        or early_config.invocation_params.dir != root
        or not (root / "experiments").is_dir()
        or not _selects_only_experiments(markexpr)
    ):
        return
    args.append("experiments")
    ns.file_or_dir = ["experiments"]


def _selects_only_experiments(markexpr: str) -> bool:
    from _pytest.mark.expression import Expression

    try:
        expr = Expression.compile(markexpr)
    except SyntaxError:
        return False  # pytest reports it

    def selects(marks: set[str]) -> bool:
        def has(name: str, /, **kwargs: str | int | bool | None) -> bool:
            return name in marks and not kwargs

        return expr.evaluate(has)

    bases = ({"experiment"}, {"sanity", "experiment"})
    marks = [{"experiment"}, *({m, *base} for m in case_markers() for base in bases)]
    return not selects({"slow"}) and not selects(set()) and any(map(selects, marks))


def study_markers() -> dict[str, str]:
    """The markers of the studies' cases (registered in every session; cheap)."""
    return {s.marker: s.description for s in registered() if s.marker}


def case_markers() -> dict[str, str]:
    """The markers of experiment cases: each study's, and each behaviour's name (`-m toxicity`;
    those are registered by experiments/conftest.py, where the behaviours are imported)."""
    from steering_reliability import behaviours  # imports torch: only when -m is given

    found = study_markers()
    for name, b in behaviours.registered().items():
        if name != "refusal":
            found[name] = behaviour_marker(name, b.description)
    return found


def behaviour_marker(name: str, description: str) -> str:
    """The description of a behaviour's marker (`-m <name>` selects its cases)."""
    return f"the {name} behaviour's cases (experiments/test_behaviours.py): {description}"


@pytest.hookimpl(trylast=True)
def pytest_sr_load_config(config: pytest.Config, path: str | None, overrides: Any) -> Any:
    """Default config loader: `steering_reliability.config.load_config(path, overrides)`, with
    `model.dtype: auto` resolved for this machine (config.resolved_for_machine)."""
    from steering_reliability.config import load_config, resolved_for_machine

    return resolved_for_machine(load_config(path, overrides))


def pytest_sr_input_files(config: pytest.Config, obj: Any, root: Path) -> dict[str, str]:
    """The behaviours' data files and a model organism's weights: inputs of the run even where
    no config line names them. The organism is built here first if need be (on the controller,
    before the run is planned; never under --collect-only nor on an xdist worker)."""
    from steering_reliability.models.registry import ORGANISMS

    found: dict[str, str] = {}
    if getattr(obj, "behaviours", None):  # imports torch: only when there are behaviours
        from steering_reliability.studies.behaviours.run import input_files

        found |= input_files(obj, root)
    name = getattr(getattr(obj, "model", None), "name", None)
    if name in ORGANISMS:
        from steering_reliability.models.loader import default_cache_dir
        from steering_reliability.studies.organism.build import run_inputs

        may_build = not (config.option.collectonly or hasattr(config, "workerinput"))
        found |= run_inputs(name, default_cache_dir(), build_missing=may_build)
    found |= _benchmark_inputs(obj)
    return found


def _benchmark_inputs(obj: Any) -> dict[str, str]:
    """The data files (package, version, sha256) of every `benchmark:NAME` the config names."""
    from steering_reliability.prompts.benchmarks import input_records, is_benchmark
    from steering_reliability.records.run import flatten

    data = obj.to_dict() if hasattr(obj, "to_dict") else obj
    found: dict[str, str] = {}
    for value in flatten(data).values() if isinstance(data, Mapping) else ():
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, str) and is_benchmark(item):
                found |= input_records(item)
    return found


@pytest.hookimpl(trylast=True)
def pytest_sr_render_report(config: pytest.Config, run_dir: Path) -> Any:
    """Default report at session end: `steering_reliability.report.render(run_dir)`."""
    from steering_reliability import report

    return report.render(run_dir)


class XdistHooks:
    """xdist-only hooks, registered only when xdist is active (unknown hooks are errors)."""

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder

    def pytest_configure_node(self, node: Any) -> None:
        """Emitted on the controller per worker: hand it the run plan as plain values."""
        node.workerinput[WIRE_KEY] = self.recorder.run.to_wire()

    def pytest_xdist_node_collection_finished(self, node: Any, ids: Any) -> None:
        """Emitted on the controller when a worker has collected: the progress line's total."""
        self.recorder.ids[:] = list(ids)


def pytest_configure(config: pytest.Config) -> None:
    """Emitted after option parsing: set up the run's memo, the runner (every process that runs
    tests) and, on the controller, the recorder."""
    for name, description in {**MARKERS, **study_markers()}.items():  # on every process
        config.addinivalue_line("markers", f"{name}: {description}")
    workerinput = getattr(config, "workerinput", None)
    wire = None if workerinput is None else workerinput.get(WIRE_KEY) or {"error": "no plan"}
    run = RunState(config, wire, parse_override=_parse_override, fast_overrides=_fast_overrides)
    if workerinput is None:
        _check_usage(config)
        recorder = Recorder(config, run)
        config.stash[RECORDER] = recorder
        config.pluginmanager.register(recorder, "steering_reliability.recorder")
        if config.pluginmanager.hasplugin("xdist"):
            config.pluginmanager.register(XdistHooks(recorder), "steering_reliability.xdist")
        if run.explicit:
            recorder.plan_now()  # the user asked to record: refuse a bad config/resume up front
    config.stash[RUNNER] = CaseRunner(config, run)
    config.pluginmanager.register(config.stash[RUNNER], "steering_reliability.runner")


def _parse_override(text: str) -> tuple[str, Any]:
    from steering_reliability.config import parse_override  # only when --set is given

    return parse_override(text)


def _fast_overrides(root: Path, config_path: str) -> dict[str, Any]:
    from steering_reliability.config import fast_overrides  # only with --fast --config

    return fast_overrides(root, config_path)


def _check_usage(config: pytest.Config) -> None:
    workers = config.getoption("numprocesses", default=0)
    update = config.getoption("update_snapshots", default=False)
    if update and isinstance(workers, int) and workers > 1:
        raise pytest.UsageError(
            f"--snapshot-update with -n {workers}: workers would each rewrite snapshots and "
            "delete the ones they did not run; update snapshots with -n 0"
        )


def _runner(config: pytest.Config) -> CaseRunner:
    return config.stash[RUNNER]


def run_config(config: pytest.Config) -> Any:
    """The run's loaded config for collection-time code (e.g. `pytest_generate_tests`).

    Loaded once per process through the `pytest_sr_load_config` hook; creates nothing.
    """
    return _runner(config).run.config_object


@pytest.fixture
def record(request: pytest.FixtureRequest) -> Generator[CaseRecorder, None, None]:
    """This case's recorder: `record.rows([...])`; its part is written when the case passes."""
    runner = _runner(request.config)
    rec = runner.open_case(request.node)
    yield rec
    runner.close_case(request.node, rec)


@pytest.fixture(scope="session")
def sr_config(pytestconfig: pytest.Config) -> Any:
    """The run's loaded config (read-only), identical to the one the run was planned with."""
    return _runner(pytestconfig).run.checked_config()


@pytest.fixture(scope="session")
def sr_run(pytestconfig: pytest.Config) -> RunPlan:
    """The run: run_id, run_dir, config_hash, and `annotate(key, value)` for provenance."""
    return _runner(pytestconfig).run.plan()
