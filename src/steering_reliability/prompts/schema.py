"""The prompt record of DESIGN.md as a frozen pydantic dataclass, and the check that turns a
parsed object into one (every reader, the loader and ingest alike, refuses the same records)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from typing import Annotated, Any

from pydantic import (
    AfterValidator,
    ConfigDict,
    Strict,
    TypeAdapter,
    ValidationError,
    ValidationInfo,
    field_validator,
)
from pydantic.dataclasses import dataclass
from pydantic_core import ErrorDetails, PydanticCustomError

from steering_reliability.errors import PromptFileError, suggest

REQUIRED_META = ("family", "style")
RECORD_KEYS = ("id", "prompt", "meta")
SCHEMA_HINT = (
    'each record is {"id": "...", "prompt": "...", "meta": {"family": "...", "style": "..."}}'
)
_FROM_FILE = {"from_file": True}  # the validation context of a record read from a file


class FrozenMeta(Mapping[str, str]):
    """A read-only, hashable, picklable str -> str mapping (a Prompt's meta cannot be edited)."""

    __slots__ = ("_items",)
    _items: dict[str, str]

    def __init__(self, items: Mapping[str, str] | None = None) -> None:
        data = dict(items or {})
        for key, value in data.items():
            if not isinstance(key, str) or not isinstance(value, str):
                raise TypeError(f"meta must map str to str, got {key!r}: {value!r}")
        object.__setattr__(self, "_items", data)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("FrozenMeta is read-only")

    def __getitem__(self, key: str) -> str:
        return self._items[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._items)

    def __len__(self) -> int:
        return len(self._items)

    def __hash__(self) -> int:
        return hash(tuple(sorted(self._items.items())))

    def __repr__(self) -> str:
        return f"FrozenMeta({self._items!r})"

    def __reduce__(self) -> tuple[type[FrozenMeta], tuple[dict[str, str]]]:
        return (FrozenMeta, (dict(self._items),))


def _encodable(value: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise PydanticCustomError("surrogate", "unpaired surrogate escape") from None
    return value


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "no non-space character")
    return value


def _labelled(meta: dict[str, str]) -> FrozenMeta:
    for key in REQUIRED_META:
        if not meta.get(key, "").strip():
            raise PydanticCustomError("label", "meta.{key} is missing or empty", {"key": key})
    return FrozenMeta(meta)


Text = Annotated[str, Strict(), AfterValidator(_not_blank), AfterValidator(_encodable)]
Label = Annotated[str, Strict(), AfterValidator(_encodable)]


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class Prompt:
    """One prompt: a stable id, the request text, and string metadata (family, style, ...).

    Validated on construction: strict strings, id and prompt not blank, meta.family and
    meta.style present. `line` is where the record came from (1-based), kept only so later
    checks can point at it.
    """

    id: Text
    prompt: Text
    meta: Annotated[Mapping[Label, Label], AfterValidator(_labelled)]
    line: int | None = dataclasses.field(default=None, compare=False, repr=False)

    @field_validator("meta", mode="before")
    @classmethod
    def _meta_from_python(cls, value: Any, info: ValidationInfo) -> Any:
        # Built in Python, a non-str entry is FrozenMeta's TypeError; read from a file, the
        # schema's error names the key.
        return value if info.context is not None else FrozenMeta(value)

    @field_validator("line", mode="before")
    @classmethod
    def _line_not_from_file(cls, value: Any, info: ValidationInfo) -> Any:
        if info.context is not None:  # where a record was read is not part of the record
            raise PydanticCustomError("extra_forbidden", "Extra inputs are not permitted")
        return value

    @property
    def family(self) -> str:
        return self.meta["family"]

    @property
    def style(self) -> str:
        return self.meta["style"]

    @property
    def template(self) -> str:
        return self.meta.get("template", "unknown")

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready record, keys in schema order."""
        return {"id": self.id, "prompt": self.prompt, "meta": dict(self.meta)}


_RECORD = TypeAdapter(Prompt)
_FIRST = {  # string_unicode: a key pydantic cannot even read (it holds a lone surrogate)
    "dataclass_type": 0,
    "unexpected_keyword_argument": 1,
    "extra_forbidden": 1,
    "string_unicode": 1,
    "missing": 2,
}


def _order(err: ErrorDetails) -> int:
    """Which error a refusal names: a record that is not an object, an unknown key, a missing
    key, then id and prompt (their surrogates last), then meta."""
    if err["type"] in _FIRST:
        return _FIRST[err["type"]]
    return 5 if err["loc"][0] == "meta" else 4 if err["type"] == "surrogate" else 3


def prompt_from_record(obj: Any, *, file: str, line: int, unit: str) -> Prompt:
    """Validate one parsed record against the schema; `line` is 1-based, `unit` names it."""
    try:
        prompt = _RECORD.validate_python(obj, context=_FROM_FILE)
    except ValidationError as exc:
        first = min(exc.errors(), key=_order)
        raise _record_error(first, obj, file=file, line=line, unit=unit) from None
    return dataclasses.replace(prompt, line=line)


def _record_error(
    err: ErrorDetails, obj: Any, *, file: str, line: int, unit: str
) -> PromptFileError:
    """The refusal of one record, from pydantic's first error: its kind, location and input."""
    kind, loc, value = err["type"], err["loc"], err["input"]
    field = ".".join(str(part) for part in loc[:2])  # "id", "meta", "meta.family"
    if loc[-1:] == ("[key]",):  # a bad meta key: loc holds it with its surrogate replaced
        field, value = f"meta.{value}", obj["meta"][value]

    def refuse(
        problem: str, expected: str, hint: str, field: str | None = field, value: Any = value
    ) -> PromptFileError:
        return PromptFileError(
            problem, file=file, line=line, field=field, value=value, expected=expected, hint=hint
        )

    if kind == "dataclass_type":
        return refuse(
            f"{unit} {line} is not a JSON object",
            "a JSON object with id, prompt and meta",
            "write one JSON object per line (a JSON list of records belongs in a .json file)",
            field=None,
        )
    if _FIRST.get(kind) == 1:
        key = next(k for k in obj if k not in RECORD_KEYS)  # the first, spelled as written
        return refuse(
            f"unknown key {key!r}",
            "only the keys id, prompt, meta",
            f"{suggest(key, RECORD_KEYS)} (extra fields go inside meta)",
            field=key,
            value=obj[key],
        )
    if kind == "missing":
        return refuse(
            f"missing key {field!r}", SCHEMA_HINT, f"add {field!r} to this record", value=None
        )
    if kind == "surrogate":
        return refuse(
            "unpaired surrogate escape (not encodable as UTF-8)",
            "valid Unicode text",
            "fix the escape sequence in the source text"
            if loc[0] == "meta"
            else "escape pairs like \\ud83d\\ude00 must come in pairs; fix the source text",
        )
    if field == "id":
        return refuse(
            "id must be a non-empty string",
            'a non-empty string such as "harm_train_0001"',
            'quote ids in JSON ("007", not 7) so leading zeros and types survive',
        )
    if field == "prompt":
        return refuse(
            "empty prompt" if kind == "blank" else "prompt must be a string",
            "a string with at least one non-space character",
            f"fill in the prompt or delete record {obj.get('id')!r}",
        )
    if kind == "label":
        key = err.get("ctx", {})["key"]
        return refuse(
            f"{'empty' if key in value else 'missing'} meta.{key}",
            "a non-empty string",
            f'label every record\'s {key} (use "unknown" if you have no label)',
            field=f"meta.{key}",
            value=value.get(key),
        )
    if field == "meta":
        return refuse(
            "meta must be an object",
            'an object such as {"family": "weapons", "style": "direct"}',
            "put family and style (and any other labels) inside meta",
        )
    return refuse("meta values must be strings", "a string", f'write it as a string: "{value}"')
