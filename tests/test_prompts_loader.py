"""The loader refuses every bad prompt file of RELIABILITY.md with file, line, field and a hint."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from steering_reliability.errors import PromptFileError
from steering_reliability.prompts import (
    Prompt,
    check_prompt_lengths,
    file_sha256,
    load_prompts,
    write_prompts,
)

GOOD = '{"id": "a1", "prompt": "How do I bake bread?", "meta": {"family": "cooking", "style": "everyday"}}'


def record(pid: str = "a1", prompt: str = "How do I bake bread?", **meta: str) -> str:
    meta = meta or {"family": "cooking", "style": "everyday"}
    return json.dumps({"id": pid, "prompt": prompt, "meta": meta})


def write(tmp_path: Path, name: str, content: str | bytes) -> Path:
    path = tmp_path / name
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text(content, encoding="utf-8")
    return path


def refused(path: Path) -> PromptFileError:
    with pytest.raises(PromptFileError) as info:
        load_prompts(path)
    err = info.value
    assert err.file == str(path)
    assert err.hint, "every refusal carries a hint"
    return err


def test_a_good_jsonl_file_loads_with_lines_and_meta(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        "p.jsonl",
        "\n".join([GOOD, "", record("a2", family="cooking", style="everyday", template="t1")])
        + "\n",
    )
    prompts = load_prompts(path)
    assert [p.id for p in prompts] == ["a1", "a2"]
    assert [p.line for p in prompts] == [1, 3]
    assert prompts[0].family == "cooking" and prompts[0].style == "everyday"
    assert prompts[0].template == "unknown"


def test_not_utf8_names_the_byte_offset_and_line(tmp_path: Path) -> None:
    data = (GOOD + "\n").encode() + b'{"id": "x\xff"}\n'
    err = refused(write(tmp_path, "p.jsonl", data))
    assert f"byte offset {len(GOOD) + 1 + 9}" in str(err)
    assert err.line == 2


def test_a_utf8_bom_is_accepted(tmp_path: Path) -> None:
    path = write(tmp_path, "p.jsonl", b"\xef\xbb\xbf" + GOOD.encode())
    assert load_prompts(path)[0].id == "a1"


@pytest.mark.parametrize("name", ["p.txt", "p.yaml", "p"])
def test_unknown_extension_is_refused(tmp_path: Path, name: str) -> None:
    err = refused(write(tmp_path, name, GOOD))
    assert "unknown file extension" in str(err)
    assert ".jsonl" in str(err.expected)


@pytest.mark.parametrize("name", ["p.jsonl", "p.json", "p.csv"])
@pytest.mark.parametrize("content", ["", "  \n\n "])
def test_empty_file_is_refused(tmp_path: Path, name: str, content: str) -> None:
    assert "file is empty" in str(refused(write(tmp_path, name, content)))


def test_missing_file_is_refused(tmp_path: Path) -> None:
    assert "file not found" in str(refused(tmp_path / "nope.jsonl"))


def test_malformed_jsonl_names_line_n(tmp_path: Path) -> None:
    path = write(tmp_path, "p.jsonl", "\n".join([GOOD, record("a2"), '{"id": "a3", "prompt": ']))
    err = refused(path)
    assert err.line == 3
    assert f"{path}:3: malformed JSON" in str(err)


@pytest.mark.parametrize("line", ["[1, 2]", '"just text"', "42", "null"])
def test_non_object_line_is_refused(tmp_path: Path, line: str) -> None:
    err = refused(write(tmp_path, "p.jsonl", GOOD + "\n" + line + "\n"))
    assert err.line == 2 and "not a JSON object" in str(err)


@pytest.mark.parametrize(
    ("line", "key"),
    [
        ('{"id": "a", "id": "b", "prompt": "x", "meta": {"family": "f", "style": "s"}}', "id"),
        (
            '{"id": "a", "prompt": "x", "meta": {"family": "f", "family": "g", "style": "s"}}',
            "family",
        ),
    ],
)
def test_duplicate_keys_in_one_object_are_refused(tmp_path: Path, line: str, key: str) -> None:
    err = refused(write(tmp_path, "p.jsonl", line))
    assert f"duplicate key {key!r}" in str(err) and err.line == 1 and err.field == key


@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity"])
def test_nan_and_infinity_literals_are_refused(tmp_path: Path, literal: str) -> None:
    line = f'{{"id": "a", "prompt": "x", "meta": {{"family": "f", "style": "s", "w": {literal}}}}}'
    err = refused(write(tmp_path, "p.jsonl", line))
    assert literal in str(err) and "not valid JSON" in str(err) and err.field == "w"


def test_nan_in_a_json_list_names_its_own_line_and_key(tmp_path: Path) -> None:
    text = (
        '[\n{"id": "a", "prompt": "x",\n "meta": {"family": "f", "style": "s",\n "score": NaN}}\n]'
    )
    err = refused(write(tmp_path, "p.json", text))
    assert (err.line, err.field) == (4, "score")


def test_crlf_line_endings_are_fine(tmp_path: Path) -> None:
    path = write(tmp_path, "p.jsonl", GOOD + "\r\n" + record("a2") + "\r\n")
    assert [p.id for p in load_prompts(path)] == ["a1", "a2"]
    csv_text = "id,prompt,family,style\r\na1,Knit?,crafts,everyday\r\n"
    assert load_prompts(write(tmp_path, "p.csv", csv_text))[0].style == "everyday"


@pytest.mark.parametrize("prompt", ["", "   ", "\n\t"])
def test_empty_or_whitespace_prompt_is_refused(tmp_path: Path, prompt: str) -> None:
    err = refused(write(tmp_path, "p.jsonl", GOOD + "\n" + record("a2", prompt)))
    assert "empty prompt" in str(err) and err.line == 2 and err.field == "prompt"


def test_duplicate_ids_name_both_lines(tmp_path: Path) -> None:
    lines = [record("a1"), record("b"), record("c"), record("b", "Other text?")]
    err = refused(write(tmp_path, "p.jsonl", "\n".join(lines)))
    assert "duplicate id 'b' on lines 2 and 4" in str(err)
    assert err.line == 4


@pytest.mark.parametrize("missing", ["family", "style"])
def test_missing_or_empty_meta_labels_are_refused(tmp_path: Path, missing: str) -> None:
    meta = {"family": "cooking", "style": "everyday"}
    del meta[missing]
    err = refused(write(tmp_path, "p.jsonl", record("a1", **meta)))
    assert f"missing meta.{missing}" in str(err) and err.field == f"meta.{missing}"
    meta[missing] = " "
    assert f"empty meta.{missing}" in str(refused(write(tmp_path, "q.jsonl", record(**meta))))


@pytest.mark.parametrize(
    ("obj", "needle"),
    [
        ({"id": 7, "prompt": "x", "meta": {"family": "f", "style": "s"}}, "id must be"),
        ({"id": "a", "prompt": 3, "meta": {"family": "f", "style": "s"}}, "prompt must be"),
        ({"id": "a", "prompt": "x", "meta": "f"}, "meta must be an object"),
        ({"id": "a", "prompt": "x", "meta": {"family": "f", "style": 1}}, "meta values"),
        ({"id": "a", "promt": "x", "meta": {"family": "f", "style": "s"}}, "did you mean 'prompt'"),
        ({"id": "a", "meta": {"family": "f", "style": "s"}}, "missing key 'prompt'"),
        ({"id": "a", "prompt": "x\ud800", "meta": {"family": "f", "style": "s"}}, "surrogate"),
    ],
)
def test_wrong_types_and_keys_are_refused(tmp_path: Path, obj: object, needle: str) -> None:
    assert needle in str(refused(write(tmp_path, "p.jsonl", json.dumps(obj))))


def test_line_is_where_a_record_was_read_not_a_key_of_it(tmp_path: Path) -> None:
    line = json.dumps({"id": "a", "prompt": "x", "meta": {"family": "f", "style": "s"}, "line": 7})
    err = refused(write(tmp_path, "p.jsonl", GOOD + "\n" + line))
    assert "unknown key 'line'" in str(err) and (err.line, err.field, err.value) == (2, "line", 7)


def test_a_bad_meta_key_is_named_as_written(tmp_path: Path) -> None:
    line = json.dumps(
        {"id": "a", "prompt": "x", "meta": {"family": "f", "style": "s", "k\ud800": "v"}}
    )
    err = refused(write(tmp_path, "p.jsonl", line))
    assert "surrogate" in str(err) and err.field == "meta.k\ud800"


def test_json_list_items_know_their_lines(tmp_path: Path) -> None:
    text = "[\n  " + record("a1") + ",\n\n  " + record("a2") + "\n]\n"
    assert [p.line for p in load_prompts(write(tmp_path, "p.json", text))] == [2, 4]
    bad = "[\n  " + record("a1") + ",\n  " + record("a1") + "\n]"
    assert "lines 2 and 3" in str(refused(write(tmp_path, "q.json", bad)))


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        (GOOD, "must hold a list"),
        ("[" + GOOD + " " + GOOD + "]", "expected ',' or ']'"),
        ("[" + GOOD + "] []", "extra data"),
        ("[" + GOOD + ",]", "malformed JSON"),
        ("[]", "no prompt records"),
    ],
)
def test_malformed_json_lists_are_refused(tmp_path: Path, text: str, needle: str) -> None:
    assert needle in str(refused(write(tmp_path, "p.json", text)))


def test_csv_keeps_na_and_leading_zero_ids_as_strings(tmp_path: Path) -> None:
    text = "id,prompt,family,style,meta.template\n007,How do I knit?,NA,everyday,\n008,Hi?,a,b,t\n"
    prompts = load_prompts(write(tmp_path, "p.csv", text))
    assert [p.id for p in prompts] == ["007", "008"]
    assert prompts[0].family == "NA" and prompts[0].line == 2
    assert "template" not in prompts[0].meta and prompts[1].template == "t"


def test_csv_without_header_is_refused(tmp_path: Path) -> None:
    err = refused(write(tmp_path, "p.csv", "a1,How do I knit?,crafts,everyday\n"))
    assert "lacks the column 'id'" in str(err) and "header" in str(err.hint)


def test_ragged_csv_row_is_refused_with_its_line(tmp_path: Path) -> None:
    text = 'id,prompt,family,style\na1,"Knit, purl?",crafts,everyday\na2,Bake?,cooking\n'
    err = refused(write(tmp_path, "p.csv", text))
    assert "3 cells but the header has 4" in str(err) and err.line == 3


def test_csv_empty_family_is_refused(tmp_path: Path) -> None:
    err = refused(write(tmp_path, "p.csv", "id,prompt,family,style\na1,Knit?,,everyday\n"))
    assert "empty meta.family" in str(err) and err.line == 2


def test_prompt_longer_than_context_names_id_and_line(tmp_path: Path) -> None:
    path = write(tmp_path, "p.jsonl", GOOD + "\n" + record("long", "word " * 50))
    prompts = load_prompts(path)
    check_prompt_lengths(prompts[:1], lambda s: len(s.split()), 10, file=str(path))
    with pytest.raises(PromptFileError) as info:
        check_prompt_lengths(prompts, lambda s: len(s.split()), 10, file=str(path))
    assert "'long' is longer than the context (50 > 10 tokens)" in str(info.value)
    assert info.value.line == 2
    with pytest.raises(PromptFileError, match="max_tokens"):
        check_prompt_lengths(prompts, len, 0, file=str(path))


def test_split_filters_and_labels(tmp_path: Path) -> None:
    lines = [
        record("a"),
        record("b", split="x", family="f", style="s"),
        record("c", split="y", family="f", style="s"),
    ]
    path = write(tmp_path, "p.jsonl", "\n".join(lines))
    assert [(p.id, p.meta["split"]) for p in load_prompts(path, split="x")] == [
        ("a", "x"),
        ("b", "x"),
    ]
    with pytest.raises(PromptFileError, match="no prompt records for split 'z'"):
        load_prompts(write(tmp_path, "q.jsonl", lines[2]), split="z")


def test_file_sha256_is_the_sha256_of_the_bytes(tmp_path: Path) -> None:
    path = write(tmp_path, "p.jsonl", GOOD)
    assert file_sha256(path) == hashlib.sha256(GOOD.encode()).hexdigest()


def test_a_failed_write_leaves_the_old_file_and_no_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = write(tmp_path, "p.jsonl", GOOD + "\n")

    def boom(*args: object) -> None:
        raise OSError("disk full")

    monkeypatch.setattr("steering_reliability.atomic.os.replace", boom)
    with pytest.raises(OSError, match="disk full"):
        write_prompts([Prompt("z", "New?", {"family": "f", "style": "s"})], path)
    assert path.read_text(encoding="utf-8") == GOOD + "\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["p.jsonl"]


def test_writing_duplicate_ids_is_refused_before_anything_is_written(tmp_path: Path) -> None:
    p = Prompt("z", "New?", {"family": "f", "style": "s"})
    with pytest.raises(PromptFileError, match="duplicate id"):
        write_prompts([p, p], tmp_path / "out.jsonl")
    assert not list(tmp_path.iterdir())


texts = st.text(min_size=1, max_size=60).filter(lambda s: s.strip() != "")


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(prompts=st.lists(texts, min_size=1, max_size=5), family=texts)
def test_write_then_load_round_trips_any_text(
    tmp_path: Path, prompts: list[str], family: str
) -> None:
    items = [
        Prompt(f"id_{i:03d}", t, {"family": family, "style": "s"}) for i, t in enumerate(prompts)
    ]
    path = write_prompts(items, tmp_path / "rt.jsonl")
    assert load_prompts(path) == tuple(items)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(data=st.binary(max_size=200), suffix=st.sampled_from([".jsonl", ".json", ".csv"]))
def test_arbitrary_bytes_load_or_raise_prompt_file_error(
    tmp_path: Path, data: bytes, suffix: str
) -> None:
    path = tmp_path / f"fuzz{suffix}"
    path.write_bytes(data)
    with contextlib.suppress(PromptFileError):
        load_prompts(path)  # anything else escaping is a bug
