"""The pytest plugin in every mode, on a fake fast model (RELIABILITY.md 4-8).

Each test builds a small experiment project with `pytester`: a JSON config with an ordered
grid, a prompt file, and a sweep case that "generates" with a deterministic fake model and
hands numpy-typed rows to `record`. `make_project` and `run_inner` are shared with
test_plugin_crash.py.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from steering_reliability.records.schema import ROW_KEY

pytest_plugins = ["pytester"]

# Inner sessions skip plugins they do not need: each xdist worker would import them again
# (hypothesis even imports itself at terminal summary).
BASE_ARGS = ["-p", "no:cacheprovider", "--no-report"] + [
    f"-pno:{name}"
    for name in ("hypothesispytest", "typeguard", "jaxtyping", "anyio", "platformdirs")
]

CONFTEST = """
import json
import os
from pathlib import Path

PLAIN = (str, int, float, bool, type(None))


def _load(path):
    return json.loads(Path(path or "sr.json").read_text())


def pytest_sr_load_config(config, path, overrides):
    data = _load(path)
    for dotted, value in overrides.items():
        node = data
        *head, last = dotted.split(".")
        for key in head:
            node = node.setdefault(key, {})
        node[last] = value
    return data


def pytest_generate_tests(metafunc):
    if "cell" in metafunc.fixturenames:
        sweep = _load(metafunc.config.getoption("sr_config"))["sweep"]
        cells = [(layer, iv, a) for layer in sweep["layers"] for iv in sweep["interventions"]
                 for a in sweep["alphas"]]
        ids = [f"layer{layer}-{iv}-a{a:g}" for layer, iv, a in cells]
        metafunc.parametrize("cell", cells, ids=ids)


def pytest_collection_modifyitems(items):
    if os.environ.get("SR_REVERSE"):
        items.reverse()


def pytest_runtest_logreport(report):
    # On the controller: every value that crossed from a worker is a plain Python type.
    bad = [(n, type(v).__name__) for n, v in report.user_properties if type(v) not in PLAIN]
    if bad:
        raise TypeError(f"non-plain user_properties reached the controller: {bad}")


def pytest_configure(config):
    victim = os.environ.get("SR_KILL_IN_WRITE")
    if victim and hasattr(config, "workerinput"):  # die halfway through writing that part
        import signal
        from steering_reliability.records import store as parts

        write = parts._write_table

        def dying(table, fh):
            if table.column("case_id")[0].as_py() == victim:
                fh.write(b"PAR1" + b"\\0" * 256)
                fh.flush()
                os.kill(os.getpid(), signal.SIGKILL)
            write(table, fh)

        parts._write_table = dying
"""

SWEEP = '''
import hashlib
import json
import os
import signal
import time
from pathlib import Path

import numpy as np


def fake_model(prompt, layer, intervention, alpha):
    """Deterministic 'greedy generation': text and a refusal score from a hash."""
    h = hashlib.blake2b(f"{prompt}|{layer}|{intervention}|{alpha}".encode(), digest_size=8).digest()
    return " ".join(f"t{b}" for b in h), int.from_bytes(h[:4], "big") / 2**32


def test_sweep(cell, record, sr_config):
    layer, intervention, alpha = cell
    case = f"layer{layer}-{intervention}-a{alpha:g}"
    if os.environ.get("SR_LOG"):
        with open(os.environ["SR_LOG"], "a") as log:
            log.write(case + "\\n")
    time.sleep(float(os.environ.get("SR_SLOW", "0")))
    if os.environ.get("SR_KILL_CASE") == case:
        os.kill(os.getpid(), signal.SIGKILL)
    lines = Path(sr_config["prompts"]["benign"]).read_text().splitlines()
    rows = []
    for p in map(json.loads, lines):
        text, score = fake_model(p["prompt"], layer, intervention, alpha)
        rows.append({
            "model": sr_config["model"]["name"], "split": "benign", "prompt_id": p["id"],
            "layer": np.int64(layer), "intervention": intervention, "alpha": np.float64(alpha),
            "completion": text, "n_tokens": np.int64(8), "refusal_score": np.float32(score),
            "is_refusal": np.bool_(score > 0.5), "matched_phrases": ["t1"] if "t1 " in text else [],
        })
    record.rows(rows)


def test_unrecorded_neighbour():
    assert True
'''


def make_project(
    pytester: pytest.Pytester,
    *,
    layers: tuple[int, ...] = (2, 4),
    alphas: tuple[float, ...] = (0.5, 1.0, 2.0),
    n_prompts: int = 3,
    model: str = "fake-a",
) -> int:
    """Write the fake experiment project; return its number of cases."""
    pytester.makeconftest(CONFTEST)
    pytester.makepyfile(test_fake_sweep=SWEEP)
    write_config(pytester, layers=layers, alphas=alphas, model=model)
    prompts = [
        {"id": f"benign_{i:03d}", "prompt": f"how do I bake bread no. {i}?"}
        for i in range(n_prompts)
    ]
    (pytester.path / "prompts.jsonl").write_text("".join(json.dumps(p) + "\n" for p in prompts))
    return len(layers) * 2 * len(alphas)


def write_config(
    pytester: pytest.Pytester,
    *,
    layers: tuple[int, ...] = (2, 4),
    alphas: tuple[float, ...] = (0.5, 1.0, 2.0),
    model: str = "fake-a",
) -> None:
    config = {
        "model": {"name": model},
        "prompts": {"benign": "prompts.jsonl"},
        "sweep": {
            "layers": list(layers),
            "interventions": ["add", "ablate"],
            "alphas": list(alphas),
        },
        "seed": 0,
    }
    (pytester.path / "sr.json").write_text(json.dumps(config))


def run_inner(pytester: pytest.Pytester, *args: str) -> pytest.RunResult:
    return pytester.runpytest_inprocess(*BASE_ARGS, *args)


def results(pytester: pytest.Pytester) -> list[dict[str, Any]]:
    """The latest run's results.parquet rows, without the per-run id."""
    table = pq.read_table(pytester.path / "artifacts" / "runs" / "latest" / "results.parquet")
    return [{k: v for k, v in row.items() if k != "run_id"} for row in table.to_pylist()]


def row_keys(rows: list[dict[str, Any]]) -> list[tuple[Any, ...]]:
    return [tuple(r[k] for k in ROW_KEY if k != "run_id") for r in rows]


def test_rows_are_identical_with_n0_n2_no_xdist_and_reversed_order(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    n_cases = make_project(pytester)
    seen = []
    for args, reverse in [
        (("-n", "0"), False),
        (("-n", "2"), False),
        (("-p", "no:xdist"), False),
        (("-n", "0"), True),
    ]:
        monkeypatch.setenv("SR_REVERSE", "1" if reverse else "")
        result = run_inner(pytester, *args, "--resume", "never")
        result.assert_outcomes(passed=n_cases + 1)
        rows = results(pytester)
        assert len(rows) == n_cases * 3 and len(set(row_keys(rows))) == len(rows)
        seen.append(rows)
    assert all(rows == seen[0] for rows in seen[1:])
    assert len(list((pytester.path / "artifacts" / "runs").glob("2*"))) == 4


@pytest.mark.slow
def test_n4_many_cases_then_a_second_run_skips_everything(pytester: pytest.Pytester) -> None:
    n_cases = make_project(pytester, layers=(1, 2, 3, 4, 5), alphas=(0.5, 1.0, 2.0, 4.0))
    first = run_inner(pytester, "-n", "4")
    first.assert_outcomes(passed=n_cases + 1)
    rows = results(pytester)
    assert len(rows) == n_cases * 3 and len(set(row_keys(rows))) == len(rows)
    assert f"{n_cases * 3} rows written ({n_cases} cases, 0 already recorded)" in first.stdout.str()
    second = run_inner(pytester, "-n", "4")
    second.assert_outcomes(passed=1, skipped=n_cases)
    assert results(pytester) == rows
    assert f"0 rows written (0 cases, {n_cases} already recorded)" in second.stdout.str()
    runs = [p for p in (pytester.path / "artifacts" / "runs").iterdir() if p.name[0].isdigit()]
    assert len(runs) == 1
    manifest = json.loads((runs[0] / "run.json").read_text())
    assert len(manifest["cases"]) == n_cases and len(manifest["sessions"]) == 2
    assert all(s["ended"] for s in manifest["sessions"])


def test_resume_skips_at_run_time_and_plain_values_cross_the_channel(
    pytester: pytest.Pytester,
) -> None:
    n_cases = make_project(pytester, layers=(2,), alphas=(1.0,))
    first = run_inner(pytester, "-n", "2")
    first.assert_outcomes(passed=n_cases + 1)  # the conftest's channel check raised nothing
    assert "INTERNALERROR" not in first.stdout.str() + first.stderr.str()
    rows = results(pytester)
    assert {type(r["layer"]) for r in rows} == {int}
    assert {type(r["refusal_score"]) for r in rows} == {float}
    assert {type(r["is_refusal"]) for r in rows} == {bool}
    second = run_inner(pytester, "-n", "0", "-rs", "-k", "add")
    second.assert_outcomes(passed=0, skipped=1, deselected=n_cases)
    second.stdout.fnmatch_lines(["*already recorded in *.parquet*"])
    assert results(pytester) == rows  # compaction repeats to the same rows


def test_changed_config_refuses_to_resume_naming_keys(pytester: pytest.Pytester) -> None:
    make_project(pytester, layers=(2,), alphas=(1.0,))
    run_inner(pytester, "--run-id", "r1").assert_outcomes(passed=3)
    write_config(pytester, layers=(2,), alphas=(1.0, 2.0), model="fake-a")
    grid = run_inner(pytester, "--run-id", "r1")
    assert grid.ret == pytest.ExitCode.USAGE_ERROR
    assert "sweep.alphas: [1.0] != [1.0, 2.0]" in grid.stderr.str()
    write_config(pytester, layers=(2,), alphas=(1.0,))
    model = run_inner(pytester, "--run-id", "r1", "--model", "fake-b")
    assert model.ret == pytest.ExitCode.USAGE_ERROR
    model.stderr.fnmatch_lines(["*model.name: 'fake-a' != 'fake-b'*"])
    # --set reaches the config and its hash, and is applied after --model
    both = run_inner(pytester, "--run-id", "r1", "--model", "fake-b", "--set", "model.name=fake-c")
    assert both.ret == pytest.ExitCode.USAGE_ERROR
    both.stderr.fnmatch_lines(["*model.name: 'fake-a' != 'fake-c'*"])
    grid = run_inner(pytester, "--run-id", "r1", "--set", "sweep.alphas=[1.0,2.0]")
    assert grid.ret == pytest.ExitCode.USAGE_ERROR
    assert "sweep.alphas: [1.0] != [1.0, 2.0]" in grid.stderr.str()
    (pytester.path / "prompts.jsonl").write_text('{"id": "b", "prompt": "changed"}\n')
    prompts = run_inner(pytester, "--run-id", "r1")
    assert prompts.ret == pytest.ExitCode.USAGE_ERROR
    prompts.stderr.fnmatch_lines(["*file prompts.jsonl: sha256 *", "*--resume never*"])
    auto = run_inner(pytester)  # no --run-id: a changed input starts a new run instead
    auto.assert_outcomes(passed=3)
    assert len(list((pytester.path / "artifacts" / "runs").glob("2*"))) == 1


def test_changed_code_starts_a_new_run_and_says_which_files_changed(
    pytester: pytest.Pytester,
) -> None:
    """Resuming after an edit would mix rows of two code versions: auto starts a new run."""
    make_project(pytester, layers=(2,), alphas=(1.0,))
    pytester.makeini("[pytest]\nsr_code_paths =\n    conftest.py\n    test_fake_sweep.py\n")
    run_inner(pytester).assert_outcomes(passed=3)
    runs_dir = pytester.path / "artifacts" / "runs"
    (first,) = [p.name for p in runs_dir.glob("2*")]
    run_inner(pytester).assert_outcomes(passed=1, skipped=2)  # same code: resumed
    sweep = pytester.path / "test_fake_sweep.py"
    sweep.write_text(sweep.read_text() + "\n# an edit\n")
    edited = run_inner(pytester, "--config", "sr.json")  # planned at configure: said in the header
    edited.assert_outcomes(passed=3)  # recomputed in a new run, nothing mixed
    assert edited.stdout.str().count("the code changed since run") == 2  # at the start and the end
    edited.stdout.fnmatch_lines(
        [f"*new run *the code changed since run {first} (test_fake_sweep.py)*"]
    )
    assert len(list(runs_dir.glob("2*"))) == 2
    must = run_inner(pytester, "--resume", "must")  # the edited code's run exists now: resumes
    must.assert_outcomes(passed=1, skipped=2)
    sweep.write_text(sweep.read_text() + "# another edit\n")
    refused = run_inner(pytester, "--resume", "must")
    assert refused.ret == pytest.ExitCode.USAGE_ERROR
    refused.stderr.fnmatch_lines(
        ["*recorded by other code (changed: test_fake_sweep.py)*--run-id*"]
    )
    anyway = run_inner(pytester, "--run-id", first)  # explicit: continue, and say so
    anyway.assert_outcomes(passed=1, skipped=2)
    anyway.stdout.fnmatch_lines([f"*run {first} continues with changed code (test_fake_sweep.py)*"])
    manifest = json.loads((runs_dir / first / "run.json").read_text())
    codes = [s["code"] for s in manifest["sessions"]]
    assert len(codes) == 3 and codes[0] == codes[1] != codes[2]
    assert manifest["code"]["digest"] == codes[2]
    from steering_reliability.records.status import format_status, run_status

    assert "code: 2 versions across sessions" in format_status(run_status(runs_dir / first))


def test_resume_must_without_an_earlier_run_is_a_clear_usage_error(
    pytester: pytest.Pytester,
) -> None:
    make_project(pytester, layers=(2,), alphas=(1.0,))
    result = run_inner(pytester, "--resume", "must")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--resume must: no earlier run with this configuration*"])
    assert not (pytester.path / "artifacts").exists()


def test_snapshot_update_with_several_workers_is_a_usage_error(pytester: pytest.Pytester) -> None:
    pytest.importorskip("syrupy")
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    result = run_inner(pytester, "--snapshot-update", "-n", "2")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--snapshot-update with -n 2*"])
    run_inner(pytester, "--snapshot-update", "-n", "0").assert_outcomes(passed=1)


def test_plugin_is_inert_without_the_record_fixture(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_ok():\n    assert True\n")
    pytester.makeconftest(
        "import sys\n"
        "def pytest_sessionfinish(session):\n"
        "    print('pyarrow imported:', 'pyarrow' in sys.modules)\n"
        "    heavy = [m for m in ('run', 'store', 'progress', 'schema', 'status')\n"
        "             if f'steering_reliability.records.{m}' in sys.modules]\n"
        "    print('records modules imported:', heavy)\n"
    )
    for args in (("-n", "0"), ("-n", "2"), ("-p", "no:xdist")):
        run_inner(pytester, *args).assert_outcomes(passed=1)
    assert not (pytester.path / "artifacts").exists()
    # Someone else's `record`: a parametrized argument, or a module's own fixture.
    pytester.makepyfile(
        test_other_record=(
            "import pytest\n"
            "@pytest.mark.parametrize('record', [{'id': 1}])\n"
            "def test_param(record):\n"
            "    assert record == {'id': 1}\n"
        ),
        test_own_fixture=(
            "import pytest\n"
            "@pytest.fixture\n"
            "def record():\n"
            "    return 'mine'\n"
            "def test_own(record):\n"
            "    assert record == 'mine'\n"
        ),
    )
    run_inner(pytester, "-n", "0").assert_outcomes(passed=3)
    assert not (pytester.path / "artifacts").exists()
    # In a fresh interpreter the plugin loads (entry point) but imports nothing heavy.
    fresh = pytester.runpytest_subprocess(*BASE_ARGS, "-s", "-p", "no:xdist")
    fresh.assert_outcomes(passed=3)
    fresh.stdout.fnmatch_lines(["*pyarrow imported: False*", "*records modules imported: []*"])
    assert not (pytester.path / "artifacts").exists()


def test_a_broken_config_fails_only_the_recording_cases(pytester: pytest.Pytester) -> None:
    pytester.makeconftest(
        "def pytest_sr_load_config(config, path, overrides):\n"
        "    raise ValueError(f'broken config {path}')\n"
    )
    pytester.makepyfile(
        test_mixed=(
            "def test_records(record):\n    record.rows([])\ndef test_plain():\n    assert True\n"
        )
    )
    for args in (("-n", "0"), ("-n", "2")):
        result = run_inner(pytester, *args)
        result.assert_outcomes(passed=1, errors=1)
        result.stdout.fnmatch_lines(["*cannot record this session: broken config None*"])
        assert "INTERNALERROR" not in result.stdout.str()
    assert not (pytester.path / "artifacts").exists()
    explicit = run_inner(pytester, "--config", "mine.yaml")  # asked for: refused up front
    assert explicit.ret == pytest.ExitCode.USAGE_ERROR
    explicit.stderr.fnmatch_lines(["ERROR: broken config mine.yaml"])


def test_a_conftest_may_wrap_the_record_fixture(pytester: pytest.Pytester) -> None:
    n_cases = make_project(pytester, layers=(2,), alphas=(1.0,))
    pytester.makeconftest(
        "import pytest\n"
        + CONFTEST
        + "\n\n@pytest.fixture\ndef record(record):\n    return record\n"
    )
    run_inner(pytester, "-n", "0").assert_outcomes(passed=n_cases + 1)
    assert len(results(pytester)) == n_cases * 3


def test_the_report_hook_runs_and_its_failure_keeps_results(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    import types

    import steering_reliability

    calls: list[str] = []
    fake = types.ModuleType("steering_reliability.report")

    def render(run_dir: Path) -> None:
        calls.append(str(run_dir))
        raise RuntimeError("plotting exploded")

    fake.render = render  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "steering_reliability.report", fake)
    monkeypatch.setattr(steering_reliability, "report", fake, raising=False)
    make_project(pytester, layers=(2,), alphas=(1.0,))
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider", "-p", "no:hypothesispytest")
    result.assert_outcomes(passed=3)
    assert result.ret == 0 and len(calls) == 1 and os.path.isdir(calls[0])
    result.stdout.fnmatch_lines(
        ["*report failed (results are saved)*", "*plotting exploded*", "*6 rows written*"]
    )
    assert len(results(pytester)) == 6


VERDICT = """
import os


def test_check(record):
    ok = os.environ.get("SR_CHECK_OK") == "1"
    record.rows([
        {"split": "", "prompt_id": "", "experiment": "sanity:check", "value": 0.25, "passed": ok,
         "verdict": "passed" if ok else "failed"},
        {"split": "benign", "prompt_id": "p1", "experiment": "sanity:check", "refusal_score": 0.5},
    ])
    assert ok, "check failed"
"""


def test_a_failed_case_reports_its_verdict_and_reruns(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_project(pytester)
    pytester.makepyfile(test_verdict=VERDICT)
    monkeypatch.setenv("SR_CHECK_OK", "0")
    first = run_inner(pytester, "test_verdict.py", "--config", "sr.json", "-n", "0")
    first.assert_outcomes(failed=1)
    rows = results(pytester)
    # Only the verdict row of the failed case is kept, with its failing verdict.
    assert [(r["experiment"], r["passed"], r["verdict"]) for r in rows] == [
        ("sanity:check", False, "failed")
    ]
    monkeypatch.setenv("SR_CHECK_OK", "1")
    second = run_inner(pytester, "test_verdict.py", "--config", "sr.json", "-n", "0")
    second.assert_outcomes(passed=1)  # not skipped: a failed case is not done
    rows = results(pytester)
    assert sorted((r["prompt_id"], r["passed"]) for r in rows) == [("", True), ("p1", None)]


@pytest.mark.parametrize("workers", ["0", "2"])
def test_the_controller_prints_a_line_per_case_with_rates_and_an_eta(
    pytester: pytest.Pytester, workers: str
) -> None:
    n_cases = make_project(pytester, layers=(2,), alphas=(1.0,))
    run = run_inner(pytester, "-n", workers)
    run.assert_outcomes(passed=n_cases + 1)
    out = run.stdout.str()
    total = n_cases + 1
    lines = [ln for ln in out.splitlines() if ln.startswith("[") and "elapsed" in ln]
    assert len(lines) == n_cases, out  # one per recording case (the channel check records none)
    assert all(f"/{total}]" in ln for ln in lines), lines
    assert any("layer2-add-a1" in ln for ln in lines), lines  # rates: see the next test
    assert "ETA" in lines[0]
    quiet = run_inner(pytester, "-n", workers, "-q", "--resume", "never")
    assert not [ln for ln in quiet.stdout.str().splitlines() if "elapsed" in ln]


WORK_AND_HASH = """

from steering_reliability.records import run

CONFIG_HASH, HASHED = run.config_hash, []


def pytest_sr_case_work(config, item):
    return 3 * 8  # prompts x new tokens


def pytest_sessionstart(session):
    def counted(cfg):
        HASHED.append(1)
        return CONFIG_HASH(cfg)

    def refused(cfg):  # a worker takes the controller's hash
        raise AssertionError("a worker hashed the config")

    run.config_hash = refused if hasattr(session.config, "workerinput") else counted


def pytest_sessionfinish(session):
    run.config_hash = CONFIG_HASH
    if not hasattr(session.config, "workerinput"):
        print(f"config hashed {len(HASHED)} time(s)")
"""


@pytest.mark.parametrize("workers", ["0", "2"])
def test_the_config_is_hashed_once_per_session_and_each_case_s_work_is_recorded(
    pytester: pytest.Pytester, workers: str
) -> None:
    """The controller hashes the config once (the plan carries it to workers and rows); the
    `pytest_sr_case_work` hook's answer reaches run.json and each part, for the ETA."""
    from steering_reliability.records.status import run_status

    n_cases = make_project(pytester, layers=(2,), alphas=(1.0,))
    pytester.makeconftest(CONFTEST + WORK_AND_HASH)
    for outcomes in ({"passed": n_cases + 1}, {"passed": 1, "skipped": n_cases}):  # and resumed
        result = run_inner(pytester, "-n", workers, "-s")
        result.assert_outcomes(**outcomes)
        result.stdout.fnmatch_lines(["*config hashed 1 time(s)*"])
    status = run_status(pytester.path / "artifacts" / "runs" / "latest")
    kinds = {(c["kind"], c["work"]) for c in status.expected.values()}
    assert kinds == {("test_fake_sweep.py::test_sweep", 24.0)}
    assert {(f["kind"], f["work"]) for f in status.finished} == kinds
    assert all(f["seconds"] >= 0 for f in status.finished) and status.complete
    assert {r["config_hash"] for r in results(pytester)} == {status.config_hash}


def test_a_case_summary_has_the_rates_of_its_prompt_rows_and_its_verdict() -> None:
    from steering_reliability.records.progress import case_summary

    rows = [
        {"prompt_id": "a", "split": "harm_test", "is_refusal": True, "collapsed": False},
        {"prompt_id": "b", "split": "harm_test", "is_refusal": False, "collapsed": True},
        {"prompt_id": "", "split": "", "verdict": "inconclusive"},
    ]
    s = case_summary(rows)
    assert s["harm_test"] == 0.5 and s["collapse"] == 0.5 and s["verdict"] == "inconclusive"
    assert s["harm_train"] is None


HEARTBEAT_CASE = """
import glob
import json

from steering_reliability.listeners import GENERATION_PROGRESS


def test_beat(record):
    beats = glob.glob("artifacts/runs/2*/running/*.json")
    assert len(beats) == 1, beats
    state = json.loads(open(beats[0]).read())
    assert state["nodeid"].endswith("test_beat") and state["started"] <= state["updated"]
    assert len(GENERATION_PROGRESS) == 1  # the engine would report into the file
    GENERATION_PROGRESS[0](3, 8)
    record.rows([{"split": "benign", "prompt_id": "p1", "experiment": "beat", "n_tokens": 1}])
"""


def test_a_running_case_has_a_heartbeat_file_and_status_reads_durations(
    pytester: pytest.Pytester,
) -> None:
    from steering_reliability.records.status import run_status

    make_project(pytester, layers=(2,), alphas=(1.0,))
    pytester.makepyfile(test_beat=HEARTBEAT_CASE)
    run = run_inner(pytester, "test_beat.py", "--config", "sr.json", "-n", "0")
    run.assert_outcomes(passed=1)
    run_dir = pytester.path / "artifacts" / "runs" / "latest"
    assert not list(run_dir.glob("running/*.json"))  # gone once the case ended
    status = run_status(run_dir)
    assert len(status.finished) == 1 and status.finished[0]["seconds"] >= 0
    assert status.finished[0]["kind"] == "test_beat.py::test_beat"
    assert status.eta_seconds() is None  # nothing missing


def test_status_shows_running_cases_and_an_eta(tmp_path: Path) -> None:
    import dataclasses
    import json as _json
    import time

    from steering_reliability.records.status import RunStatus, format_status

    running = {"case_id": "layer12-add-a1", "worker": "gw0", "pid": 2**22 + 12345,
               "started": time.time() - 125, "updated": time.time() - 3,
               "generation": [40, 64]}  # fmt: skip
    sweep, scan = "test_sweep.py::test_sweep", "test_scan.py::test_scan"
    status = RunStatus(
        run_dir=str(tmp_path), run_id="r", config_hash="c",
        expected={"a": {"case_id": "a", "kind": sweep}, "b": {"case_id": "b", "kind": sweep},
                  "c": {"case_id": "c", "kind": scan}},
        done=("a",), missing=("b", "c"), invalid=(), unexpected=(), stale_temps=(),
        results_rows=None, ended=None, running=(running,),
        finished=({"kind": sweep, "seconds": 60.0}, {"kind": scan, "seconds": 200.0}),
    )  # fmt: skip
    assert status.eta_seconds() == pytest.approx(260.0)  # each missing case at its kind's time
    text = format_status(status)
    assert "layer12-add-a1 still running on gw0 for 02:05, generating 40/64 prompts" in text
    assert "its process is gone" in text  # no such pid
    assert "ETA 04:20 (2 cases left" in text
    alive = dataclasses.replace(status, running=({**running, "pid": os.getpid()},))
    assert "process is gone" not in format_status(alive)
    _json.dumps(running)


SLOW_CASE = """
import time


def test_slow(record):
    time.sleep(1.5)
    record.rows([{"split": "benign", "prompt_id": "p1", "experiment": "slow", "n_tokens": 1}])
"""


def test_the_controller_reports_a_case_still_running(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    from steering_reliability.records import controller

    monkeypatch.setattr(controller, "WATCH_SECONDS", 0.4)
    make_project(pytester, layers=(2,), alphas=(1.0,))
    pytester.makepyfile(test_slow=SLOW_CASE)
    run = run_inner(pytester, "test_slow.py", "--config", "sr.json", "-n", "1")
    run.assert_outcomes(passed=1)
    run.stdout.fnmatch_lines(["*... test_slow still running on gw0 for *"])


@pytest.mark.parametrize("workers", ["0", "2"])
def test_the_session_ends_with_time_by_phase_in_the_terminal_and_run_json(
    pytester: pytest.Pytester, workers: str
) -> None:
    """Every recording case reports its phases, passed or skipped (an inconclusive check
    records its rows, then skips); the controller adds them up across workers, and counts
    nothing the process did before the session."""
    from steering_reliability import timing

    n_cases = make_project(pytester, layers=(2,), alphas=(0.5, 1.0))
    timed = SWEEP.replace(
        "import numpy as np\n",
        "import numpy as np\nimport pytest\nfrom steering_reliability import timing\n",
    ).replace(
        "    record.rows(rows)",
        "    with timing.phase('scoring'):\n        time.sleep(0.05)\n"
        "        with timing.phase('teacher forcing'):\n            time.sleep(0.05)\n"
        "    timing.add_tokens(8)\n    record.rows(rows)\n"
        "    if alpha == 0.5:\n        pytest.skip('inconclusive')",
    )
    pytester.makepyfile(test_fake_sweep=timed)
    with timing.phase("report"):  # before the session: not its time
        timing.add_tokens(1000)
    run = run_inner(pytester, "-n", workers)
    run.assert_outcomes(passed=n_cases // 2 + 1, skipped=n_cases // 2)
    out = run.stdout.str()
    assert "time by phase, summed over" in out and "scoring" in out, out
    data = json.loads((pytester.path / "artifacts/runs/latest/run.json").read_text())
    t = data["sessions"][-1]["time_by_phase"]
    phases = t["phases"]
    # exclusive: the nested 0.05 s counts under teacher forcing only, not twice under scoring
    assert 0.05 * n_cases * 0.9 <= phases["scoring"] < 0.05 * n_cases * 1.5, phases
    assert 0.05 * n_cases * 0.9 <= phases["teacher forcing"] < 0.05 * n_cases * 1.5, phases
    assert phases["recording"] > 0 and t["tokens"] == 8 * n_cases
    assert t["workers"] == 1 if workers == "0" else t["workers"] in (1, 2)
    assert t["wall_seconds"] > 0
