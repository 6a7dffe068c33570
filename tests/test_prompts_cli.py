"""`python -m steering_reliability.prompts {make,ingest,summary}` from a shell."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from steering_reliability.prompts.cli import main, summary

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "data" / "prompts"


def test_summary_counts_per_split_family_style() -> None:
    text = summary(DATA)
    rows = [line.split() for line in text.splitlines() if len(line.split()) == 4][1:]
    totals: dict[str, int] = {}
    for split, _family, _style, n in rows:
        totals[split] = totals.get(split, 0) + int(n)
    assert totals == {"benign": 200, "harm_test": 150, "harm_train": 150}
    assert ["harm_train", "weapons", "direct", "25"] in rows
    assert "harm_test: 150 prompts" in text


def test_make_then_summary_through_main(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    args = [
        "make",
        "--out_dir",
        str(tmp_path),
        "--n_train",
        "12",
        "--n_test",
        "18",
        "--n_benign",
        "10",
    ]
    assert main([*args, "--seed", "3"]) == 0
    assert main(["summary", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "harm_train: 12 prompts" in out and "benign: 10 prompts" in out


def test_ingest_through_main_and_errors_exit_2(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "s.csv"
    src.write_text("instruction,input,output\nName a colour,,blue\n", encoding="utf-8")
    out = tmp_path / "s.jsonl"
    assert main(["ingest", str(src), "--split", "s", "--out", str(out)]) == 0
    assert "wrote 1 prompts" in capsys.readouterr().out
    assert main(["ingest", str(src), "--split", "s", "--out", str(out), "--text-col", "nope"]) == 2
    assert "error:" in capsys.readouterr().err
    assert main(["summary", str(tmp_path / "missing")]) == 2


def test_module_entry_point_runs() -> None:
    env = {**os.environ, "PYTHONHASHSEED": "12345"}
    result = subprocess.run(
        [sys.executable, "-m", "steering_reliability.prompts", "summary", str(DATA)],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    assert "harm_train: 150 prompts" in result.stdout
