"""Part files: atomic writes, validation, stale temps, plain values (RELIABILITY.md 3, 7)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq
import pytest

from steering_reliability.records import store as parts
from steering_reliability.records.schema import COLUMNS, ROW_SCHEMA, normalize_row
from steering_reliability.records.store import (
    PartError,
    case_key,
    check_part,
    clean_stale_temps,
    done_part,
    list_parts,
    read_parts,
    write_part,
)

PLAIN = (str, int, float, bool, type(None))


def rows(case: str, n: int = 3) -> list[dict[str, Any]]:
    return [
        {
            "run_id": "r",
            "case_id": case,
            "split": "benign",
            "prompt_id": f"p{i}",
            "layer": 2,
            "alpha": 1.0,
            "completion": f"{case} {i}",
            "refusal_score": i / n,
        }
        for i in range(n)
    ]


def visible(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if not p.name.startswith("."))


def test_case_key_is_canonical_and_depends_on_cell_and_config() -> None:
    a = case_key({"test": "t", "params": {"layer": 2, "alpha": 1.0}}, "h1")
    assert a == case_key({"params": {"alpha": 1.0, "layer": 2}, "test": "t"}, "h1")
    assert a != case_key({"test": "t", "params": {"layer": 3, "alpha": 1.0}}, "h1")
    assert a != case_key({"test": "t", "params": {"layer": 2, "alpha": 1.0}}, "h2")
    assert len(a) == 32 and int(a, 16) >= 0


def test_written_part_reads_back_with_the_explicit_schema(tmp_path: Path) -> None:
    path = write_part(tmp_path, "k1", rows("a"), {"case_id": "a"})
    assert path == tmp_path / "k1.parquet"
    table, sources, n_parts = read_parts(tmp_path)
    assert table.schema.equals(ROW_SCHEMA) and sources == [str(path)] * 3 and n_parts == 1
    info = check_part(path)
    assert info.key == "k1" and info.n_rows == 3 and info.meta["case_id"] == "a"
    assert table.column("completion").to_pylist() == ["a 0", "a 1", "a 2"]
    assert visible(tmp_path) == ["k1.parquet"] and list(tmp_path.iterdir()) == [path]


def test_all_null_column_keeps_its_type(tmp_path: Path) -> None:
    path = write_part(tmp_path, "k1", rows("a"))
    assert pq.read_schema(path).field("kl_to_baseline").type == pa.float64()
    assert pq.read_schema(path).field("matched_phrases").type == pa.list_(pa.string())


def test_failure_halfway_through_a_write_leaves_no_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_part(tmp_path, "good", rows("good"))

    def half_then_fail(table: pa.Table, fh: Any) -> None:
        fh.write(b"PAR1" + b"\0" * 64)  # a truncated parquet file
        raise OSError("disk full")

    monkeypatch.setattr(parts, "_write_table", half_then_fail)
    with pytest.raises(OSError, match="disk full"):
        write_part(tmp_path, "bad", rows("bad"))
    assert visible(tmp_path) == ["good.parquet"]
    assert not list(tmp_path.glob(".*.tmp"))  # the writer removed its own temp
    assert done_part(tmp_path, "bad") is None
    # The folder still reads, by us and by a plain pyarrow dataset.
    assert [p.name for p in list_parts(tmp_path)] == ["good.parquet"]
    assert ds.dataset(tmp_path, schema=ROW_SCHEMA).to_table().num_rows == 3


def dead_pid() -> int:
    proc = subprocess.run(
        [sys.executable, "-c", "import os; print(os.getpid())"],
        capture_output=True,
        text=True,
        check=True,
    )
    return int(proc.stdout)


def test_stale_temps_of_dead_writers_are_cleaned(tmp_path: Path) -> None:
    write_part(tmp_path, "good", rows("good"))
    stale = tmp_path / f".bad.{dead_pid()}.0123abcd.tmp"
    stale.write_bytes(b"PAR1 half a file")
    alive = tmp_path / f".busy.{os.getppid()}.0123abcd.tmp"  # a live writer's temp stays
    alive.write_bytes(b"PAR1 in progress")
    assert ds.dataset(tmp_path, schema=ROW_SCHEMA).to_table().num_rows == 3  # hidden: ignored
    assert clean_stale_temps(tmp_path) == [stale]
    assert not stale.exists() and alive.exists()
    assert clean_stale_temps(tmp_path) == []


def test_truncated_or_foreign_visible_part_is_invalid(tmp_path: Path) -> None:
    good = write_part(tmp_path, "k1", rows("a"))
    data = good.read_bytes()
    for cut in (len(data) // 2, len(data) - 1, 8):  # a truncated file has no footer
        (tmp_path / "k2.parquet").write_bytes(data[:cut])
        assert done_part(tmp_path, "k2") is None
        with pytest.raises(PartError, match=r"k2\.parquet: unreadable part"):
            check_part(tmp_path / "k2.parquet")
    (tmp_path / "k3.parquet").write_bytes(data)  # k1's rows under another name
    with pytest.raises(PartError, match="not of its file name"):
        check_part(tmp_path / "k3.parquet")
    pq.write_table(pa.table({"alien": [1]}), tmp_path / "k4.parquet")
    with pytest.raises(PartError, match="alien"):
        check_part(tmp_path / "k4.parquet")
    table = pq.read_table(good)  # a column of another type than ROW_SCHEMA's
    other = table.set_column(table.schema.get_field_index("layer"), "layer",
                             pa.array(["2"] * 3)).replace_schema_metadata(table.schema.metadata)  # fmt: skip
    pq.write_table(other, tmp_path / "k5.parquet")
    with pytest.raises(PartError, match="layer"):
        check_part(tmp_path / "k5.parquet")
    info = done_part(tmp_path, "k1")
    assert info is not None and info.path == str(good) and info.n_rows == 3


def test_the_resume_check_reads_the_footer_alone(tmp_path: Path) -> None:
    """A part's data pages are never read by the resume check (at every case's setup): zeroing
    them leaves a part the check accepts, and that compaction still refuses, naming the file."""
    many = [{**r, "prompt_id": f"p{i}", "completion": os.urandom(500).hex()} for i, r in
            enumerate(rows("a", 1) * 400)]  # fmt: skip
    path = write_part(tmp_path, "k1", many)
    data = bytearray(path.read_bytes())
    footer = int.from_bytes(data[-8:-4], "little") + 8  # the footer and its length, at the end
    assert len(data) > 20 * footer  # the footer is a small part of the file
    data[4 : len(data) - footer] = bytes(len(data) - footer - 4)
    path.write_bytes(bytes(data))
    info = done_part(tmp_path, "k1")
    assert info is not None and info.n_rows == 400  # from the footer: the pages were not read
    with pytest.raises(PartError, match=r"k1\.parquet: unreadable part"):
        read_parts(tmp_path)


def test_two_rows_with_one_key_in_a_part_are_refused(tmp_path: Path) -> None:
    dup = rows("a", 2)
    dup[1]["prompt_id"] = dup[0]["prompt_id"]
    with pytest.raises(ValueError, match="same row key.*prompt_id='p0'"):
        write_part(tmp_path, "k1", dup)
    assert visible(tmp_path) == []


def test_numpy_and_torch_scalars_become_plain_values() -> None:
    torch = pytest.importorskip("torch")
    row = normalize_row(
        {
            "layer": np.int64(3),
            "alpha": np.float32(0.5),
            "is_refusal": np.bool_(True),
            "refusal_score": torch.tensor(0.25),
            "n_tokens": torch.tensor(7),
            "matched_phrases": (np.str_("sorry"),),
        }
    )
    assert set(row) == set(COLUMNS)
    assert all(type(v) in PLAIN or type(v) is list for v in row.values())
    assert (row["layer"], row["alpha"], row["is_refusal"]) == (3, 0.5, True)
    assert (row["refusal_score"], row["n_tokens"], row["matched_phrases"]) == (0.25, 7, ["sorry"])
    with pytest.raises(TypeError, match="refusal_score"):
        normalize_row({"refusal_score": object()})
    with pytest.raises((TypeError, ValueError)):
        normalize_row({"refusal_score": np.array([1.0, 2.0])})


def test_a_folder_published_once_reaps_a_dead_builders_temp_folder(tmp_path: Path) -> None:
    """publish_dir_once (weights, organisms, orthogonalised checkpoints): a temp folder that a
    killed builder left is removed by the next build of that folder; a live one's stays."""
    from steering_reliability.atomic import publish_dir_once

    dead = tmp_path / f".ckpt.{dead_pid()}.0123abcd.tmp"
    (dead / "sub").mkdir(parents=True)
    live = tmp_path / f".ckpt.{os.getppid()}.0123abcd.tmp"
    live.mkdir()
    other = tmp_path / f".other.{dead_pid()}.0123abcd.tmp"  # another folder's: not this build's
    other.mkdir()
    out = publish_dir_once(tmp_path / "ckpt", lambda d: (d / "done").write_text("x"), marker="done")
    assert (out / "done").read_text() == "x"
    assert not dead.exists() and live.exists() and other.exists()
