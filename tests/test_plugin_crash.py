"""Kills and interrupts lose nothing finished and count nothing twice (RELIABILITY.md 1-3).

Real processes, real signals: the inner sessions run in subprocesses (a SIGKILL must hit an
xdist worker, a SIGINT the whole session as Ctrl-C does), on the fake project of
test_plugin_modes.py.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pyarrow.dataset as ds
import pytest

from steering_reliability.records.schema import ROW_SCHEMA
from steering_reliability.records.status import run_status
from steering_reliability.records.store import check_part
from test_plugin_modes import BASE_ARGS, make_project, results, row_keys, run_inner

pytest_plugins = ["pytester"]

N_PROMPTS = 3


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """Inner sessions must not think they are workers of the outer session."""
    for name in list(os.environ):
        if name.startswith(("PYTEST_XDIST_", "SR_")):
            monkeypatch.delenv(name)


def part_dir(pytester: pytest.Pytester) -> Path:
    dirs = list((pytester.path / "artifacts" / "runs").glob("2*/parts/*"))  # not via latest
    assert len(dirs) == 1, dirs
    return dirs[0]


def check_parts(directory: Path) -> int:
    """Every visible file is a valid part; temps are hidden; a dataset reads the folder."""
    names = [p.name for p in directory.iterdir() if not p.name.startswith(".")]
    assert all(n.endswith(".parquet") for n in names), names
    for name in names:
        check_part(directory / name)
    assert ds.dataset(directory, schema=ROW_SCHEMA).to_table().num_rows == len(names) * N_PROMPTS
    return len(names)


def executed(log: Path) -> list[str]:
    return log.read_text().split() if log.exists() else []


@pytest.mark.slow
def test_worker_killed_mid_case_and_mid_write_loses_only_that_case(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    n_cases = make_project(pytester, n_prompts=N_PROMPTS)
    monkeypatch.setenv("SR_KILL_CASE", "layer4-add-a1")  # SIGKILL while computing
    monkeypatch.setenv("SR_KILL_IN_WRITE", "layer2-ablate-a0.5")  # SIGKILL inside write_part
    first = pytester.runpytest_subprocess(*BASE_ARGS, "-n", "2")
    # Two crashed cases; the one killed mid-write had passed its call phase already.
    first.assert_outcomes(passed=n_cases, failed=2)
    first.stdout.fnmatch_lines(["*crashed*"])
    directory = part_dir(pytester)
    assert check_parts(directory) == n_cases - 2
    stale = list(directory.glob(".*.tmp"))
    assert len(stale) == 1  # the half-written part, hidden
    assert len(results(pytester)) == (n_cases - 2) * N_PROMPTS
    status = run_status(pytester.path / "artifacts" / "runs" / "latest")  # from disk alone
    assert sorted(status.expected[k]["case_id"] for k in status.missing) == [
        "layer2-ablate-a0.5",
        "layer4-add-a1",
    ]

    monkeypatch.delenv("SR_KILL_CASE")
    monkeypatch.delenv("SR_KILL_IN_WRITE")
    log = pytester.path / "rerun.log"
    monkeypatch.setenv("SR_LOG", str(log))
    second = pytester.runpytest_subprocess(*BASE_ARGS, "-n", "2")
    second.assert_outcomes(passed=3, skipped=n_cases - 2)
    assert sorted(executed(log)) == ["layer2-ablate-a0.5", "layer4-add-a1"]
    assert not list(directory.glob(".*.tmp"))  # the stale temp was cleaned at start
    assert check_parts(directory) == n_cases
    rows = results(pytester)
    assert len(rows) == n_cases * N_PROMPTS == len(set(row_keys(rows)))
    assert len({r["case_id"] for r in rows}) == n_cases


def _popen(pytester: pytest.Pytester, *args: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "pytest", *BASE_ARGS, *args],
        cwd=pytester.path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        start_new_session=True,  # its own process group: Ctrl-C reaches it and its workers only
        # A session started in the background (`make test &`, a CI runner) inherits SIGINT
        # ignored, and Python then never raises KeyboardInterrupt: give the child the default.
        preexec_fn=_default_sigint,
    )


def _default_sigint() -> None:
    signal.signal(signal.SIGINT, signal.SIG_DFL)


def test_ctrl_c_after_some_parts_keeps_them_and_the_rerun_completes(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch
) -> None:
    n_cases = make_project(pytester, n_prompts=N_PROMPTS)
    monkeypatch.setenv("SR_SLOW", "0.3")
    proc = _popen(pytester, "-n", "2")
    runs = pytester.path / "artifacts" / "runs"
    deadline = time.monotonic() + 60
    while len(list(runs.glob("2*/parts/*/*.parquet"))) < 3:
        assert proc.poll() is None and time.monotonic() < deadline, "no parts appeared"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGINT)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == pytest.ExitCode.INTERRUPTED, out.decode()[-2000:]
    kept = check_parts(part_dir(pytester))
    assert 3 <= kept < n_cases

    monkeypatch.setenv("SR_SLOW", "0")
    log = pytester.path / "rerun.log"
    monkeypatch.setenv("SR_LOG", str(log))
    rerun = run_inner(pytester, "-n", "0")
    rerun.assert_outcomes(passed=n_cases - kept + 1, skipped=kept)
    assert len(executed(log)) == n_cases - kept
    rows = results(pytester)
    assert len(rows) == n_cases * N_PROMPTS == len(set(row_keys(rows)))
