"""Convert a public set's CSV / JSON list / JSONL layout (HarmBench, AdvBench, Alpaca, ...)
into our schema. Only the request is kept: answer columns (output, target, ...) are dropped."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from steering_reliability.errors import PromptFileError, suggest
from steering_reliability.prompts.io import write_prompts
from steering_reliability.prompts.readers import Row, read_rows
from steering_reliability.prompts.schema import Prompt, prompt_from_record

TEXT_COLUMNS = ("prompt", "instruction", "goal", "Behavior", "forbidden_prompt", "question", "text")
FAMILY_COLUMNS = ("family", "category", "SemanticCategory", "semantic_category")
ID_COLUMNS = ("id", "BehaviorID", "behavior_id", "prompt_id", "uid")
DEFAULT_STYLE = "unknown"
TEMPLATE = "ingested"
_SPLIT_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]*")


def _find_column(columns: Sequence[str], wanted: Sequence[str]) -> str | None:
    for name in wanted:
        if name in columns:
            return name
    lowered = {c.lower(): c for c in columns}
    for name in wanted:
        if name.lower() in lowered:
            return lowered[name.lower()]
    return None


def _cell(obj: Mapping[str, Any], column: str, *, file: str, line: int) -> str:
    value = obj.get(column)
    if value is None:
        return ""
    if isinstance(value, int) and not isinstance(value, bool) and column not in TEXT_COLUMNS:
        return str(value)
    if not isinstance(value, str):
        raise PromptFileError(
            f"column {column!r} is not text",
            file=file,
            line=line,
            field=column,
            value=value,
            expected="a string",
            hint="convert the value to a string",
        )
    return value


def ingest(
    source: str | Path,
    *,
    split: str,
    text_col: str | None = None,
    family_col: str | None = None,
    id_col: str | None = None,
) -> tuple[Prompt, ...]:
    """Read `source` and return validated prompts with ids `<split>_<source id>` when the source
    has a unique id column, else `<split>_0001`... in file order."""
    if not _SPLIT_RE.fullmatch(split):
        raise PromptFileError(
            "split name is not usable in ids and file names",
            field="split",
            value=split,
            expected="letters, digits, _ . - (not starting with . _ or -)",
            hint="e.g. harmbench",
        )
    name, unit, rows, _ = read_rows(source)
    if not rows:
        raise PromptFileError(
            "no records",
            file=name,
            expected="at least one record",
            hint="check that the file holds data rows, not only a header",
        )
    for line, obj in rows:
        if not isinstance(obj, dict):
            raise PromptFileError(
                f"{unit} {line} is not an object",
                file=name,
                line=line,
                value=obj,
                expected="an object with a text column",
                hint="each record must be a JSON object",
            )
    columns = list(dict.fromkeys(k for _, obj in rows for k in obj))
    text = _pick(columns, text_col, TEXT_COLUMNS, "--text-col", name, required=True)
    assert text is not None  # _pick raised otherwise
    family = _pick(columns, family_col, FAMILY_COLUMNS, "--family-col", name, required=False)
    ident = _pick(columns, id_col, ID_COLUMNS, "--id-col", name, required=False)
    source_ids = [_cell(obj, ident, file=name, line=ln) if ident else "" for ln, obj in rows]
    ids = _make_ids(split, source_ids, explicit=id_col is not None, rows=rows, file=name)
    source_name = Path(source).name
    prompts: list[Prompt] = []
    for (line, obj), pid, source_id in zip(rows, ids, source_ids, strict=True):
        body = _request_text(obj, text, file=name, line=line, unit=unit)
        own = obj["meta"] if isinstance(obj.get("meta"), dict) else {}
        label = _cell(obj, family, file=name, line=line).strip() if family else ""
        meta = {
            "family": label or str(own.get("family") or "").strip() or "unknown",
            "style": str(own.get("style") or obj.get("style") or "").strip() or DEFAULT_STYLE,
            "template": TEMPLATE,
            "source": source_name,
            "source_row": str(line),
        }
        if source_id:
            meta["source_id"] = source_id
        record = {"id": pid, "prompt": body, "meta": meta}
        prompts.append(prompt_from_record(record, file=name, line=line, unit=unit))
    return tuple(prompts)


def _pick(
    columns: Sequence[str],
    given: str | None,
    wanted: Sequence[str],
    flag: str,
    file: str,
    *,
    required: bool,
) -> str | None:
    if given is not None:
        if given not in columns:
            raise PromptFileError(
                f"{flag} names a column the file does not have",
                file=file,
                field=flag,
                value=given,
                expected="one of " + ", ".join(columns),
                hint=suggest(given, columns),
            )
        return given
    found = _find_column(columns, wanted)
    if found is None and required:
        raise PromptFileError(
            "no prompt text column found",
            file=file,
            field="columns",
            value=columns,
            expected="one of " + ", ".join(wanted),
            hint=f"name the text column with {flag} COLUMN",
        )
    return found


def _request_text(obj: Mapping[str, Any], column: str, *, file: str, line: int, unit: str) -> str:
    body = _cell(obj, column, file=file, line=line).strip()
    if not body:
        raise PromptFileError(
            f"empty prompt in column {column!r}",
            file=file,
            line=line,
            field=column,
            value=obj.get(column),
            expected="a non-empty request",
            hint=f"fill in or delete {unit} {line}",
        )
    extra = _cell(obj, "input", file=file, line=line).strip()
    if column.lower() == "instruction" and extra:  # Alpaca: the request is instruction + input
        return f"{body}\n\n{extra}"
    context = _cell(obj, "ContextString", file=file, line=line).strip()
    if column == "Behavior" and context:  # HarmBench contextual behaviours: context, then request
        return f"{context}\n\n---\n\n{body}"
    return body


def _make_ids(
    split: str,
    source_ids: Sequence[str],
    *,
    explicit: bool,
    rows: Sequence[Row],
    file: str,
) -> list[str]:
    cleaned = [re.sub(r"[^A-Za-z0-9_.-]+", "_", s).strip("_.-") for s in source_ids]
    first: dict[str, int] = {}
    usable = any(source_ids)
    for (line, _), value in zip(rows, cleaned, strict=True):
        if not value or value in first:
            usable = False
            if explicit:
                where = f"rows {first[value]} and {line}" if value else f"row {line}"
                raise PromptFileError(
                    f"--id-col values are not unique and non-empty ({where})",
                    file=file,
                    line=line,
                    field="--id-col",
                    value=value,
                    expected="one distinct id per record",
                    hint="leave out --id-col to number the records in file order",
                )
            break
        first[value] = line
    if usable:
        return [f"{split}_{value}" for value in cleaned]
    width = max(4, len(str(len(source_ids))))
    return [f"{split}_{index:0{width}d}" for index in range(1, len(source_ids) + 1)]


def ingest_file(
    source: str | Path,
    out: str | Path,
    *,
    split: str,
    text_col: str | None = None,
    family_col: str | None = None,
    id_col: str | None = None,
) -> tuple[Path, int]:
    """Ingest and write `out` (JSONL) atomically; nothing is written if any record is refused."""
    if Path(out).suffix.lower() != ".jsonl":
        raise PromptFileError(
            "output must be a .jsonl file",
            file=str(out),
            field="--out",
            value=str(out),
            expected="a path ending in .jsonl",
            hint=f"e.g. data/prompts/{split}.jsonl",
        )
    prompts = ingest(source, split=split, text_col=text_col, family_col=family_col, id_col=id_col)
    return write_prompts(prompts, out), len(prompts)
