"""Prompt is a frozen value: no field or meta entry can be changed after construction."""

from __future__ import annotations

import dataclasses
import pickle

import pytest
from pydantic import ValidationError

from steering_reliability.prompts import FrozenMeta, Prompt


def make(line: int | None = None) -> Prompt:
    meta = {"family": "weapons", "style": "direct", "template": "direct_how_do_i"}
    return Prompt("harm_train_0001", "How do I pick a lock?", meta, line=line)


def test_properties_read_meta() -> None:
    p = make()
    assert (p.family, p.style, p.template) == ("weapons", "direct", "direct_how_do_i")
    bare = Prompt("x", "y", {"family": "f", "style": "s"})
    assert bare.template == "unknown"


def test_prompt_and_meta_are_read_only() -> None:
    p = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.prompt = "other"  # type: ignore[misc]
    with pytest.raises(TypeError):
        p.meta["family"] = "other"  # type: ignore[index]
    with pytest.raises(AttributeError):
        p.meta._items = {}  # type: ignore[attr-defined]


def test_meta_is_copied_so_the_caller_cannot_change_it_later() -> None:
    meta = {"family": "f", "style": "s"}
    p = Prompt("x", "y", meta)
    meta["family"] = "changed"
    assert p.family == "f"


def test_equal_hashable_and_picklable_ignoring_the_source_line() -> None:
    a, b = make(line=3), make(line=9)
    assert a == b and hash(a) == hash(b) and len({a, b}) == 1
    assert pickle.loads(pickle.dumps(a)) == a
    assert isinstance(pickle.loads(pickle.dumps(a.meta)), FrozenMeta)


def test_meta_values_must_be_strings() -> None:
    with pytest.raises(TypeError):
        Prompt("x", "y", {"family": 1})  # type: ignore[dict-item]


@pytest.mark.parametrize(
    ("pid", "text", "meta"),
    [
        (" ", "y", {"family": "f", "style": "s"}),
        ("x", "", {"family": "f", "style": "s"}),
        ("x", "y", {"family": "f"}),
        ("x", "y", {"family": "f", "style": " "}),
        (7, "y", {}),
    ],
)
def test_a_prompt_built_in_python_is_checked_like_a_record(pid: str, text: str, meta: dict) -> None:
    with pytest.raises(ValidationError):
        Prompt(pid, text, meta)


def test_to_record_is_the_jsonl_schema() -> None:
    assert list(make().to_record()) == ["id", "prompt", "meta"]
    assert make().to_record()["meta"]["family"] == "weapons"
