"""The prompt record of DESIGN.md as a frozen value, and the check that turns a parsed object
into one (so every reader, the loader and ingest alike, refuses the same bad records)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from steering_reliability.errors import PromptFileError, suggest

REQUIRED_META = ("family", "style")
RECORD_KEYS = ("id", "prompt", "meta")
SCHEMA_HINT = (
    'each record is {"id": "...", "prompt": "...", "meta": {"family": "...", "style": "..."}}'
)


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


@dataclass(frozen=True)
class Prompt:
    """One prompt: a stable id, the request text, and string metadata (family, style, ...).

    `line` is where the record came from (1-based), kept only so later checks can point at it.
    """

    id: str
    prompt: str
    meta: Mapping[str, str]
    line: int | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        if not isinstance(self.meta, FrozenMeta):
            object.__setattr__(self, "meta", FrozenMeta(self.meta))

    def __hash__(self) -> int:
        return hash((self.id, self.prompt, self.meta))

    @property
    def family(self) -> str:
        return self.meta.get("family", "unknown")

    @property
    def style(self) -> str:
        return self.meta.get("style", "unknown")

    @property
    def template(self) -> str:
        return self.meta.get("template", "unknown")

    def to_record(self) -> dict[str, Any]:
        """The JSON-ready record, keys in schema order."""
        return {"id": self.id, "prompt": self.prompt, "meta": dict(self.meta)}


def prompt_from_record(obj: Any, *, file: str, line: int, what: str = "line") -> Prompt:
    """Validate one parsed record against the schema; `line` is 1-based, `what` names the unit."""
    if not isinstance(obj, dict):
        raise PromptFileError(
            f"{what} {line} is not a JSON object",
            file=file,
            line=line,
            value=obj,
            expected="a JSON object with id, prompt and meta",
            hint="write one JSON object per line (a JSON list of records belongs in a .json file)",
        )
    unknown = [k for k in obj if k not in RECORD_KEYS]
    if unknown:
        raise PromptFileError(
            f"unknown key {unknown[0]!r}",
            file=file,
            line=line,
            field=unknown[0],
            value=obj[unknown[0]],
            expected="only the keys id, prompt, meta",
            hint=f"{suggest(unknown[0], RECORD_KEYS)} (extra fields go inside meta)",
        )
    for key in RECORD_KEYS:
        if key not in obj:
            raise PromptFileError(
                f"missing key {key!r}",
                file=file,
                line=line,
                field=key,
                expected=SCHEMA_HINT,
                hint=f"add {key!r} to this record",
            )
    pid, text, meta = obj["id"], obj["prompt"], obj["meta"]
    if not isinstance(pid, str) or not pid.strip():
        raise PromptFileError(
            "id must be a non-empty string",
            file=file,
            line=line,
            field="id",
            value=pid,
            expected='a non-empty string such as "harm_train_0001"',
            hint='quote ids in JSON ("007", not 7) so leading zeros and types survive',
        )
    if not isinstance(text, str) or not text.strip():
        raise PromptFileError(
            "empty prompt" if isinstance(text, str) else "prompt must be a string",
            file=file,
            line=line,
            field="prompt",
            value=text,
            expected="a string with at least one non-space character",
            hint=f"fill in the prompt or delete record {pid!r}",
        )
    for key, value in (("id", pid), ("prompt", text)):
        if not value.isprintable() and _has_surrogate(value):
            raise PromptFileError(
                "unpaired surrogate escape (not encodable as UTF-8)",
                file=file,
                line=line,
                field=key,
                value=value,
                expected="valid Unicode text",
                hint="escape pairs like \\ud83d\\ude00 must come in pairs; fix the source text",
            )
    return Prompt(id=pid, prompt=text, meta=_check_meta(meta, file=file, line=line), line=line)


def _has_surrogate(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _check_meta(meta: Any, *, file: str, line: int) -> dict[str, str]:
    if not isinstance(meta, dict):
        raise PromptFileError(
            "meta must be an object",
            file=file,
            line=line,
            field="meta",
            value=meta,
            expected='an object such as {"family": "weapons", "style": "direct"}',
            hint="put family and style (and any other labels) inside meta",
        )
    for key, value in meta.items():
        if not isinstance(value, str):
            raise PromptFileError(
                "meta values must be strings",
                file=file,
                line=line,
                field=f"meta.{key}",
                value=value,
                expected="a string",
                hint=f'write it as a string: "{value}"',
            )
        if _has_surrogate(value) or _has_surrogate(key):
            raise PromptFileError(
                "unpaired surrogate escape (not encodable as UTF-8)",
                file=file,
                line=line,
                field=f"meta.{key}",
                value=value,
                expected="valid Unicode text",
                hint="fix the escape sequence in the source text",
            )
    for key in REQUIRED_META:
        if not meta.get(key, "").strip():
            problem = f"missing meta.{key}" if key not in meta else f"empty meta.{key}"
            raise PromptFileError(
                problem,
                file=file,
                line=line,
                field=f"meta.{key}",
                value=meta.get(key),
                expected="a non-empty string",
                hint=f'label every record\'s {key} (use "unknown" if you have no label)',
            )
    return dict(meta)
