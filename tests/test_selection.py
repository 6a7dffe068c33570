"""What a command line selects: bare `pytest` runs the tests, `-m sanity` the experiments, and a
selection of sweep cases keeps the baseline cases they are compared with."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def collected(*args: str) -> list[str]:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "--collect-only",
            "-q",
            "-p",
            "no:cacheprovider",
            "-p",
            "no:syrupy",
            *args,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return [line for line in out.stdout.splitlines() if "::" in line]


@pytest.mark.slow
def test_bare_pytest_collects_only_the_tests() -> None:
    ids = collected()
    assert ids and all(i.startswith("tests/") for i in ids)


@pytest.mark.slow
def test_marker_selection_without_a_path_means_the_experiments() -> None:
    ids = collected("-m", "sanity")
    assert ids and all(i.startswith(("experiments/test_sanity.py::",
                                     "experiments/test_behaviours.py::")) for i in ids)  # fmt: skip
    assert any("::test_behaviour_random_direction_of_equal_norm[toxicity]" in i for i in ids)


@pytest.mark.slow
def test_a_behaviours_marker_without_a_path_means_the_experiments() -> None:
    ids = collected("-m", "toxicity")
    assert ids and all(i.startswith("experiments/test_behaviours.py::") for i in ids)


@pytest.mark.slow
def test_a_negated_marker_still_means_the_tests() -> None:
    ids = collected("-m", "not sanity and not slow")
    assert ids and all(i.startswith("tests/") for i in ids)


@pytest.mark.slow
def test_a_layer_selection_keeps_the_baseline_it_is_compared_with() -> None:
    ids = collected("experiments", "-k", "layer12")
    baseline = [i for i in ids if "::test_baseline[" in i or "::test_behaviour_baseline[" in i]
    sweep = [i for i in ids if "::test_sweep[" in i or "::test_behaviour_sweep[" in i]
    # one per split (3, and the 3 benchmarks of fast.yaml) and the toxicity behaviour's
    assert len(baseline) == 7 and sweep and all("layer12" in i for i in sweep)
    assert ids[: len(baseline)] == baseline  # first: every case reads them
    # a behaviour's cases keep only that behaviour's baseline
    tox = collected("experiments", "-m", "toxicity", "-k", "layer12")
    assert [i for i in tox if "baseline" in i] == [
        "experiments/test_behaviours.py::test_behaviour_baseline[toxicity]"
    ]
    assert not [i for i in collected("experiments", "-k", "layer12 and ablate and a4")
                if "::test_sweep[" in i and "ablate-a4" not in i]  # fmt: skip


@pytest.mark.slow
def test_a_config_without_behaviours_collects_no_behaviour_case() -> None:
    ids = collected("experiments", "--fast", "--config", "configs/organism.yaml")
    assert ids and not [i for i in ids if "test_behaviours.py" in i]
    assert any("::test_baseline[" in i for i in ids)
    # the same with a selection that reads the baseline (the path that broke on placeholders)
    assert any("::test_sweep[" in i for i in collected(
        "experiments", "--fast", "--config", "configs/organism.yaml", "-k", "layer6"))  # fmt: skip
