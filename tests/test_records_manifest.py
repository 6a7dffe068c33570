"""run.json, run planning (resume auto/never/must), `latest`, and status from disk alone."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from steering_reliability.errors import ResumeError
from steering_reliability.records import run as manifest
from steering_reliability.records.__main__ import main as records_main
from steering_reliability.records.run import RunPlan, plan_run, update_latest
from steering_reliability.records.status import run_status
from steering_reliability.records.store import parts_dir, write_part

CONFIG: dict[str, Any] = {
    "model": {"name": "a"},
    "sweep": {"layers": [2, 4], "alphas": [0.5, 1.0]},
    "seed": 0,
}
INPUTS = {"data/prompts/benign.jsonl": "0" * 64}
PLAIN = (str, int, float, bool, type(None))


def assert_plain(value: Any, where: str = "wire") -> None:
    """Only what execnet (and JSON) carries without surprises: no numpy, no tuples."""
    if isinstance(value, dict):
        for k, v in value.items():
            assert type(k) is str, where
            assert_plain(v, f"{where}.{k}")
    elif isinstance(value, list):
        for i, v in enumerate(value):
            assert_plain(v, f"{where}[{i}]")
    else:
        assert type(value) in PLAIN, f"{where}: {type(value).__name__}"


def start(plan: RunPlan, cases: dict[str, dict[str, Any]] | None = None) -> dict[str, Any]:
    session = {"id": "s1", "started": manifest.now_iso()}
    plan.model_copy(update={"session": session}).start(cases or {}, ".")
    data = manifest.read_manifest(plan.run_dir)
    assert data is not None
    return data


def with_model(name: str) -> dict[str, Any]:
    return {**CONFIG, "model": {"name": name}}


def test_differences_name_the_keys_that_differ() -> None:
    new = {**CONFIG, "model": {"name": "b"}, "sweep": {"layers": [2, 4], "alphas": [0.5]}}
    lines = manifest.differences(CONFIG, new, INPUTS, {"data/prompts/benign.jsonl": "1" * 64})
    assert lines == [
        "model.name: 'a' != 'b'",
        "sweep.alphas: [0.5, 1.0] != [0.5]",
        "file data/prompts/benign.jsonl: sha256 000000000000 != 111111111111",
    ]
    assert manifest.differences(CONFIG, {**CONFIG, "extra": 1}) == ["extra: <absent> != 1"]


def test_plan_is_plain_and_survives_the_wire(tmp_path: Path) -> None:
    plan = plan_run(tmp_path, config=CONFIG, inputs=INPUTS, session={"id": "s", "workers": 2})
    wire = plan.model_dump(mode="json")
    assert_plain(wire)
    assert RunPlan.model_validate(json.loads(json.dumps(wire))) == plan
    assert not (tmp_path / plan.run_id).exists()  # planning creates nothing
    with pytest.raises(ValueError, match="config_hash"):  # checked on the way in
        RunPlan.model_validate({**wire, "config_hash": None})


def test_resume_auto_reuses_the_latest_run_of_the_same_config(tmp_path: Path) -> None:
    first = plan_run(tmp_path, config=CONFIG, inputs=INPUTS)
    assert not first.resumed
    start(first)
    again = plan_run(tmp_path, config=CONFIG, inputs=INPUTS)
    assert again.resumed and again.run_id == first.run_id
    other = plan_run(tmp_path, config=with_model("b"), inputs=INPUTS)  # another config: new run
    assert not other.resumed and other.run_id != first.run_id
    fresh = plan_run(tmp_path, config=CONFIG, inputs=INPUTS, resume="never")
    assert not fresh.resumed and fresh.run_id != first.run_id


def test_resume_refuses_a_changed_config_naming_the_keys(tmp_path: Path) -> None:
    start(plan_run(tmp_path, config=CONFIG, inputs=INPUTS, run_id="r1"))
    with pytest.raises(ResumeError, match=r"model\.name: 'a' != 'b'") as err:
        plan_run(tmp_path, config=with_model("b"), inputs=INPUTS, run_id="r1")
    assert "--resume never" in str(err.value)
    changed = {"data/prompts/benign.jsonl": "f" * 64}
    with pytest.raises(ResumeError, match=r"file data/prompts/benign\.jsonl: sha256"):
        plan_run(tmp_path, config=CONFIG, inputs=changed, run_id="r1")
    with pytest.raises(ResumeError, match="already exists"):
        plan_run(tmp_path, config=CONFIG, inputs=INPUTS, run_id="r1", resume="never")


def test_resume_must_without_an_earlier_run_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(ResumeError, match="no runs there at all"):
        plan_run(tmp_path, config=CONFIG, inputs=INPUTS, resume="must")
    with pytest.raises(ResumeError, match="no earlier run 'r9'"):
        plan_run(tmp_path, config=CONFIG, inputs=INPUTS, resume="must", run_id="r9")
    start(plan_run(tmp_path, config=CONFIG, inputs=INPUTS))
    with pytest.raises(
        ResumeError, match=r"differs \(earlier != now\):\n  model\.name: 'a' != 'c'"
    ):
        plan_run(tmp_path, config=with_model("c"), inputs=INPUTS, resume="must")
    assert plan_run(tmp_path, config=CONFIG, inputs=INPUTS, resume="must").resumed


def test_bad_run_id_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="--run-id"):
        plan_run(tmp_path, config=CONFIG, inputs=INPUTS, run_id="../escape")


def test_start_run_records_provenance_and_is_idempotent(tmp_path: Path) -> None:
    plan = plan_run(tmp_path, config=CONFIG, inputs=INPUTS, run_id="r1")
    start(plan, {"k1": {"nodeid": "t::a", "case_id": "a"}})
    data = start(plan, {"k2": {"nodeid": "t::b", "case_id": "b"}})  # a second worker
    assert set(data["cases"]) == {"k1", "k2"} and len(data["sessions"]) == 1
    assert data["config_hash"] == manifest.config_hash(CONFIG) and data["inputs"] == INPUTS
    assert data["seeds"] == {"seed": 0} and data["ended"] is None
    env = data["environment"]
    assert env["packages"]["pyarrow"] and env["python"] and "dirty" in env["git"]
    assert "torch_num_threads" in env and data["started"]
    plan.annotate("model_weights_hash", "abc")
    before = (Path(plan.run_dir) / "run.json").stat().st_mtime_ns
    plan.annotate("model_weights_hash", "abc")  # the same fact: nothing written
    assert (Path(plan.run_dir) / "run.json").stat().st_mtime_ns == before
    with pytest.raises(ResumeError, match="model_weights_hash: 'abc' != 'def'"):
        plan.annotate("model_weights_hash", "def")
    with pytest.raises(ResumeError, match="the run has not started"):
        manifest.annotate(tmp_path / "nowhere", "model_weights_hash", "abc")
    manifest.finish_run(plan.run_dir, "s1", {"parts_written": 2})
    done = manifest.read_manifest(plan.run_dir)
    assert done is not None and done["ended"] and done["sessions"][0]["parts_written"] == 2
    assert not list(Path(plan.run_dir).glob(".*.tmp"))


def test_latest_points_at_the_newest_run(tmp_path: Path) -> None:
    for run_id in ("r1", "r2"):
        (tmp_path / run_id).mkdir()
        link = update_latest(tmp_path, tmp_path / run_id)
    assert link.is_symlink() and link.resolve() == (tmp_path / "r2").resolve()
    assert (tmp_path / "LATEST").read_text().strip() == "r2"


def test_status_works_out_done_and_missing_from_disk(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = plan_run(tmp_path, config=CONFIG, inputs=INPUTS, run_id="r1")
    cases = {f"k{i}": {"nodeid": f"test_x.py::test[{i}]", "case_id": str(i)} for i in range(3)}
    start(plan, cases)
    directory = parts_dir(plan.run_dir, plan.config_hash)
    write_part(directory, "k0", [{"case_id": "0", "prompt_id": "p"}])
    (directory / "k2.parquet").write_bytes(b"PAR1 truncated")
    update_latest(tmp_path, plan.run_dir)
    st = run_status(tmp_path / "latest")
    assert st.done == ("k0",) and st.missing == ("k1", "k2") and not st.complete
    assert [Path(p).name for p, _ in st.invalid] == ["k2.parquet"]
    assert records_main(["status", str(tmp_path / "latest"), "--strict"]) == 1
    out = capsys.readouterr().out
    assert "1/3 cases done, 2 missing" in out and "test_x.py::test[1]" in out
    assert "test_x.py::test[0]" not in out
    assert records_main(["status", str(tmp_path / "nowhere")]) == 2


def test_code_fingerprint_names_edited_added_and_removed_files(tmp_path: Path) -> None:
    from steering_reliability.records.run import changed_files, code_fingerprint

    (tmp_path / "experiments" / "__pycache__").mkdir(parents=True)
    (tmp_path / "experiments" / "test_a.py").write_text("A = 1\n")
    (tmp_path / "experiments" / "notes.txt").write_text("not code\n")
    (tmp_path / "experiments" / "__pycache__" / "junk.py").write_text("x\n")
    (tmp_path / "conftest.py").write_text("# conftest\n")
    before = code_fingerprint(tmp_path)
    names = set(before["files"])
    assert {"experiments/test_a.py", "conftest.py"} <= names
    assert "steering_reliability/records/run.py" in names  # the library is always included
    assert "steering_reliability/metrics/refusal.py" in names
    assert not any(n.startswith(("steering_reliability/analysis/", "steering_reliability/report")) for n in names)  # fmt: skip
    assert not any("__pycache__" in n or n.endswith(".txt") for n in names)
    assert code_fingerprint(tmp_path) == before  # deterministic
    (tmp_path / "experiments" / "notes.txt").write_text("edited, still not code\n")
    assert code_fingerprint(tmp_path)["digest"] == before["digest"]
    (tmp_path / "experiments" / "test_a.py").write_text("A = 2\n")
    (tmp_path / "experiments" / "test_b.py").write_text("B = 1\n")
    (tmp_path / "conftest.py").unlink()
    after = code_fingerprint(tmp_path)
    assert after["digest"] != before["digest"]
    assert changed_files(before, after) == [
        "conftest.py",
        "experiments/test_a.py",
        "experiments/test_b.py",
    ]
    assert changed_files(None, after) == ["no fingerprint recorded by the earlier run"]


def test_plan_resumes_only_with_the_same_code_unless_the_run_is_named(tmp_path: Path) -> None:
    code_a = {"digest": "a" * 16, "files": {"experiments/x.py": "1"}}
    code_b = {"digest": "b" * 16, "files": {"experiments/x.py": "2"}}
    first = plan_run(tmp_path, config=CONFIG, inputs=INPUTS, code=code_a)
    assert first.note == ""
    first.model_copy(update={"session": {"id": "s1"}}).start({}, ".")
    assert plan_run(tmp_path, config=CONFIG, inputs=INPUTS, code=code_a).run_id == first.run_id
    other = plan_run(tmp_path, config=CONFIG, inputs=INPUTS, code=code_b)
    assert other.run_id != first.run_id and not other.resumed
    assert "experiments/x.py" in other.note and f"--run-id {first.run_id}" in other.note
    with pytest.raises(ResumeError, match=r"recorded by other code \(changed: experiments/x.py\)"):
        plan_run(tmp_path, config=CONFIG, inputs=INPUTS, code=code_b, resume="must")
    named = plan_run(tmp_path, config=CONFIG, inputs=INPUTS, code=code_b, run_id=first.run_id)
    assert named.resumed and "continues with changed code (experiments/x.py)" in named.note
    assert RunPlan.model_validate(json.loads(json.dumps(named.model_dump(mode="json")))) == named


def test_a_verdict_deciding_edit_splits_the_run_and_a_report_edit_does_not(
    tmp_path: Path,
) -> None:
    """The statistics that decide recorded sanity verdicts (metrics/stats.py: diff_ci decides
    template_agreement) are in the fingerprint, so `--resume auto` never mixes verdicts of two
    versions; report-only code (a study's report module, the report kit) is not."""
    import shutil

    import steering_reliability
    from steering_reliability.records.run import changed_files, code_fingerprint, report_only

    package = tmp_path / "steering_reliability"
    shutil.copytree(Path(steering_reliability.__file__).resolve().parent, package,
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    before = code_fingerprint(tmp_path, (), package=package)
    assert "steering_reliability/metrics/stats.py" in before["files"]
    assert "steering_reliability/studies/checks.py" in before["files"]
    for name in ("report.py", "analysis/markdown.py", "studies/refusal_direction/report.py",
                 "studies/sweep/report/findings.py"):  # fmt: skip
        assert report_only(name)
        assert f"steering_reliability/{name}" not in before["files"]
        (package / name).write_text((package / name).read_text() + "\n# edited\n")
    assert code_fingerprint(tmp_path, (), package=package) == before
    stats = package / "metrics" / "stats.py"
    stats.write_text(stats.read_text().replace("def diff_ci(", "def diff_ci(  # edited\n", 1))
    after = code_fingerprint(tmp_path, (), package=package)
    assert changed_files(before, after) == ["steering_reliability/metrics/stats.py"]
    first = plan_run(tmp_path / "runs", config=CONFIG, inputs=INPUTS, code=before)
    first.model_copy(update={"session": {"id": "s1"}}).start({}, ".")
    again = plan_run(tmp_path / "runs", config=CONFIG, inputs=INPUTS, code=before)
    assert again.run_id == first.run_id
    edited = plan_run(tmp_path / "runs", config=CONFIG, inputs=INPUTS, code=after)
    assert edited.run_id != first.run_id and "metrics/stats.py" in edited.note
