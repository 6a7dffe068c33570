"""Strict readers for JSONL, JSON lists and CSV: raw rows with 1-based line numbers.

Strict on purpose: duplicate keys, NaN/Infinity literals, ragged CSV rows and bad bytes are
refused (never silently repaired), and CSV cells stay strings ("NA" and "007" survive as typed).
"""

from __future__ import annotations

import csv
import io
import json
import re
from pathlib import Path
from typing import Any

from steering_reliability.errors import PromptFileError

SUFFIXES = (".jsonl", ".json", ".csv")
Row = tuple[int, Any]  # (1-based line of the record's start, parsed value)


class _DuplicateKeyError(ValueError):
    def __init__(self, key: str) -> None:
        super().__init__(key)
        self.key = key


class _ConstantError(ValueError):
    def __init__(self, literal: str) -> None:
        super().__init__(literal)
        self.literal = literal


def _pairs_hook(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in pairs:
        if key in out:
            raise _DuplicateKeyError(key)
        out[key] = value
    return out


def _parse_constant(literal: str) -> Any:
    raise _ConstantError(literal)


# Where a NaN/Infinity literal sits, and the key it belongs to (if it is an object value).
_CONSTANT_KEY = re.compile(r'(?:"((?:[^"\\]|\\.)*)"\s*:\s*)?(-?Infinity|NaN)\b')
_DECODER = json.JSONDecoder(object_pairs_hook=_pairs_hook, parse_constant=_parse_constant)


def read_text(path: str | Path) -> tuple[str, str]:
    """(display name, decoded text) of a prompt file; refuses unknown suffixes, bad bytes, empty."""
    path = Path(path)
    name = str(path)
    if path.suffix.lower() not in SUFFIXES:
        raise PromptFileError(
            "unknown file extension",
            file=name,
            field="extension",
            value=path.suffix or "(none)",
            expected="one of " + ", ".join(SUFFIXES),
            hint="rename the file to match its content (.jsonl: one object per line)",
        )
    if not path.is_file():
        raise PromptFileError(
            "file not found",
            file=name,
            expected="an existing prompt file",
            hint="check the path (relative paths start at the current directory)",
        )
    raw = path.read_bytes()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        raise PromptFileError(
            f"not valid UTF-8 at byte offset {exc.start}",
            file=name,
            line=line,
            value=raw[exc.start : exc.start + 8],
            expected="UTF-8 text",
            hint="re-save the file as UTF-8 (e.g. iconv -t UTF-8)",
        ) from None
    if not text.strip():
        raise PromptFileError(
            "file is empty",
            file=name,
            expected="at least one prompt record",
            hint="write records into it, or point at the right file",
        )
    return name, text


def read_rows(path: str | Path) -> tuple[str, list[Row], str]:
    """Parse a file by suffix: (display name, rows, unit name "line" or "row")."""
    name, text = read_text(path)
    suffix = Path(path).suffix.lower()
    if suffix == ".jsonl":
        return name, parse_jsonl(text, file=name), "line"
    if suffix == ".json":
        return name, parse_json_list(text, file=name), "line"
    return name, parse_csv(text, file=name), "row"


def _decode_error(exc: Exception, *, file: str, line: int, text: str) -> PromptFileError:
    if isinstance(exc, _DuplicateKeyError):
        return PromptFileError(
            f"duplicate key {exc.key!r} in one object",
            file=file,
            line=line,
            field=exc.key,
            expected="each key once per object",
            hint="delete or rename one of the two keys",
        )
    if isinstance(exc, _ConstantError):
        key = _CONSTANT_KEY.search(text)
        return PromptFileError(
            f"{exc.literal} is not valid JSON",
            file=file,
            line=line,
            field=key.group(1) if key and key.group(1) is not None else None,
            value=exc.literal,
            expected="strings, objects and finite numbers only",
            hint='quote it ("NaN") or remove it; strict JSON has no NaN/Infinity',
        )
    assert isinstance(exc, json.JSONDecodeError)
    return PromptFileError(
        f"malformed JSON: {exc.msg} (column {exc.colno})",
        file=file,
        line=line,
        value=text.strip()[:80],
        expected="one complete JSON value",
        hint="check quotes, commas and braces; a JSONL record must fit on one line",
    )


def parse_jsonl(text: str, *, file: str) -> list[Row]:
    """One JSON value per non-blank line."""
    rows: list[Row] = []
    # split on "\n" only: str.splitlines would also break inside strings holding U+2028 etc.
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            rows.append((number, _DECODER.decode(line)))
        except (json.JSONDecodeError, _DuplicateKeyError, _ConstantError) as exc:
            raise _decode_error(exc, file=file, line=number, text=line) from None
    return rows


def parse_json_list(text: str, *, file: str) -> list[Row]:
    """A JSON list, decoded item by item so every item knows the line it starts on."""

    def line_at(pos: int) -> int:
        return text.count("\n", 0, pos) + 1

    def skip_ws(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    pos = skip_ws(0)
    if text[pos] != "[":
        raise PromptFileError(
            "a .json prompt file must hold a list",
            file=file,
            line=line_at(pos),
            value=text[pos : pos + 40],
            expected="[ {record}, {record}, ... ]",
            hint="wrap the records in [...], or use .jsonl for one record per line",
        )
    rows: list[Row] = []
    pos = skip_ws(pos + 1)
    while True:
        if pos < len(text) and text[pos] == "]" and not rows:
            pos += 1
            break
        try:
            value, end = _DECODER.raw_decode(text, pos)
        except json.JSONDecodeError as exc:
            where = line_at(exc.pos)
            raise _decode_error(exc, file=file, line=where, text=text[exc.pos :][:80]) from None
        except _DuplicateKeyError as exc:
            raise _decode_error(exc, file=file, line=line_at(pos), text="") from None
        except _ConstantError as exc:
            found = _CONSTANT_KEY.search(text, pos)
            where = line_at(found.start(2)) if found else line_at(pos)
            raise _decode_error(
                exc, file=file, line=where, text=found.group(0) if found else ""
            ) from None
        rows.append((line_at(pos), value))
        pos = skip_ws(end)
        if pos < len(text) and text[pos] == ",":
            pos = skip_ws(pos + 1)
            continue
        if pos < len(text) and text[pos] == "]":
            pos += 1
            break
        raise PromptFileError(
            "malformed JSON: expected ',' or ']' after a list item",
            file=file,
            line=line_at(min(pos, len(text) - 1)),
            value=text[pos : pos + 40],
            expected="items separated by commas, the list closed by ]",
            hint="check for a missing comma or an unclosed list",
        )
    if text[skip_ws(pos) :]:
        raise PromptFileError(
            "extra data after the closing ]",
            file=file,
            line=line_at(skip_ws(pos)),
            value=text[skip_ws(pos) :][:40],
            expected="nothing after the list",
            hint="merge the values into the one list",
        )
    return rows


def parse_csv(text: str, *, file: str) -> list[Row]:
    """Data rows of a CSV as {column: cell} dicts (see parse_csv_table)."""
    return parse_csv_table(text, file=file)[2]


def parse_csv_table(text: str, *, file: str) -> tuple[int, list[str], list[Row]]:
    """(header line, column names, data rows): all cells strings; ragged rows refused."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    try:
        header = next(reader)
        while not any(cell.strip() for cell in header):
            header = next(reader)
    except StopIteration:  # pragma: no cover - read_text already refused blank files
        raise PromptFileError("file is empty", file=file) from None
    except csv.Error as exc:
        raise PromptFileError(
            f"malformed CSV: {exc}",
            file=file,
            line=reader.line_num,
            expected="RFC 4180 CSV",
            hint="check for an unclosed quote or a stray NUL byte",
        ) from None
    header_line = reader.line_num
    names = [cell.strip() for cell in header]
    for index, cell in enumerate(names):
        if not cell:
            raise PromptFileError(
                "CSV header has an empty column name",
                file=file,
                line=header_line,
                field=f"column {index + 1}",
                expected="a name for every column",
                hint="the first row is read as the header: name every column",
            )
        if names.index(cell) != index:
            raise PromptFileError(
                f"CSV header repeats column {cell!r}",
                file=file,
                line=header_line,
                field=cell,
                expected="distinct column names",
                hint="rename or drop one of the two columns",
            )
    rows: list[Row] = []
    previous = reader.line_num
    try:
        for cells in reader:
            start, previous = previous + 1, reader.line_num  # a quoted cell may span lines
            if not any(cell.strip() for cell in cells):
                continue
            if len(cells) != len(names):
                raise PromptFileError(
                    f"CSV row has {len(cells)} cells but the header has {len(names)}",
                    file=file,
                    line=start,
                    value=cells,
                    expected=f"{len(names)} cells: " + ",".join(names),
                    hint='quote cells that contain commas, e.g. "a, b"',
                )
            rows.append((start, dict(zip(names, cells, strict=True))))
    except csv.Error as exc:
        raise PromptFileError(
            f"malformed CSV: {exc}",
            file=file,
            line=reader.line_num,
            expected="RFC 4180 CSV",
            hint="check for an unclosed quote",
        ) from None
    return header_line, names, rows
