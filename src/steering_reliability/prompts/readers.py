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
from typing import Any, NamedTuple

from steering_reliability.errors import PromptFileError

SUFFIXES = (".jsonl", ".json", ".csv")
Row = tuple[int, Any]  # (1-based line of the record's start, parsed value)


class Rows(NamedTuple):
    """A parsed prompt file: display name, unit ("line" or "row"), rows, and CSV header."""

    file: str
    unit: str
    rows: list[Row]
    header: tuple[int, list[str]] | None = None  # (line, column names) of a CSV file


class _DuplicateKeyError(ValueError):
    pass


class _ConstantError(ValueError):
    pass


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


def read_rows(path: str | Path) -> Rows:
    """Read and parse a prompt file by suffix; refuses unknown suffixes, bad bytes, empty files."""
    path = Path(path)
    name, suffix = str(path), path.suffix.lower()
    if suffix not in SUFFIXES:
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
        raise PromptFileError(
            f"not valid UTF-8 at byte offset {exc.start}",
            file=name,
            line=raw.count(b"\n", 0, exc.start) + 1,
            value=raw[exc.start : exc.start + 8],
            expected="UTF-8 text",
            hint="re-save the file as UTF-8 (e.g. iconv -t UTF-8)",
        ) from None
    if not text.strip():
        raise _empty(name)
    if suffix == ".csv":
        return _csv(text, file=name)
    if suffix == ".json":
        return Rows(name, "line", _json_list(text, file=name))
    # split on "\n" only: str.splitlines would also break inside strings holding U+2028 etc.
    lines = enumerate(text.split("\n"), start=1)
    return Rows(
        name, "line", [(n, _decode(s, file=name, line=n)[0]) for n, s in lines if s.strip()]
    )


def _empty(file: str) -> PromptFileError:
    return PromptFileError(
        "file is empty",
        file=file,
        expected="at least one prompt record",
        hint="write records into it, or point at the right file",
    )


def _decode(text: str, *, file: str, line: int = 1, start: int | None = None) -> tuple[Any, int]:
    """(value, end) of the JSON value at `start`, or of all of `text` (a line of a JSONL file)
    without it; errors name their line, counted from `line`."""
    try:
        if start is None:
            return _DECODER.decode(text), len(text)
        return _DECODER.raw_decode(text, start)
    except _DuplicateKeyError as exc:
        line += text.count("\n", 0, start or 0)
        raise PromptFileError(
            f"duplicate key {exc.args[0]!r} in one object",
            file=file,
            line=line,
            field=exc.args[0],
            expected="each key once per object",
            hint="delete or rename one of the two keys",
        ) from None
    except _ConstantError as exc:
        found = _CONSTANT_KEY.search(text, start or 0)
        line += text.count("\n", 0, found.start(2) if found else start or 0)
        raise PromptFileError(
            f"{exc.args[0]} is not valid JSON",
            file=file,
            line=line,
            field=found.group(1) if found else None,
            value=exc.args[0],
            expected="strings, objects and finite numbers only",
            hint='quote it ("NaN") or remove it; strict JSON has no NaN/Infinity',
        ) from None
    except json.JSONDecodeError as exc:
        raise PromptFileError(
            f"malformed JSON: {exc.msg} (column {exc.colno})",
            file=file,
            line=line + exc.lineno - 1,
            value=(text if start is None else text[exc.pos : exc.pos + 80]).strip()[:80],
            expected="one complete JSON value",
            hint="check quotes, commas and braces; a JSONL record must fit on one line",
        ) from None


def _json_list(text: str, *, file: str) -> list[Row]:
    """A JSON list, decoded item by item so every item knows the line it starts on."""

    def skip_ws(pos: int) -> int:
        while pos < len(text) and text[pos] in " \t\r\n":
            pos += 1
        return pos

    def refuse(problem: str, pos: int, expected: str, hint: str) -> PromptFileError:
        line = text.count("\n", 0, min(pos, len(text) - 1)) + 1
        value = text[pos : pos + 40]
        return PromptFileError(
            problem, file=file, line=line, value=value, expected=expected, hint=hint
        )

    pos = skip_ws(0)
    if not text.startswith("[", pos):
        raise refuse(
            "a .json prompt file must hold a list",
            pos,
            "[ {record}, {record}, ... ]",
            "wrap the records in [...], or use .jsonl for one record per line",
        )
    rows: list[Row] = []
    pos = skip_ws(pos + 1)
    while rows or not text.startswith("]", pos):
        value, end = _decode(text, file=file, start=pos)
        rows.append((text.count("\n", 0, pos) + 1, value))
        pos = skip_ws(end)
        if not text.startswith(",", pos):
            break
        pos = skip_ws(pos + 1)
    if not text.startswith("]", pos):
        raise refuse(
            "malformed JSON: expected ',' or ']' after a list item",
            pos,
            "items separated by commas, the list closed by ]",
            "check for a missing comma or an unclosed list",
        )
    pos = skip_ws(pos + 1)
    if pos < len(text):
        raise refuse(
            "extra data after the closing ]",
            pos,
            "nothing after the list",
            "merge the values into the one list",
        )
    return rows


def _csv(text: str, *, file: str) -> Rows:
    """Data rows as {column: cell} dicts, every cell a string; ragged rows are refused."""
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: tuple[int, list[str]] | None = None
    rows: list[Row] = []
    start = 1
    try:
        for cells in reader:
            line, start = start, reader.line_num + 1  # a quoted cell may span lines
            if not any(cell.strip() for cell in cells):
                continue
            if header is None:
                end = reader.line_num  # the header is named by the line it ends on
                header = (end, _column_names(cells, file=file, line=end))
            elif len(cells) != len(header[1]):
                raise PromptFileError(
                    f"CSV row has {len(cells)} cells but the header has {len(header[1])}",
                    file=file,
                    line=line,
                    value=cells,
                    expected=f"{len(header[1])} cells: " + ",".join(header[1]),
                    hint='quote cells that contain commas, e.g. "a, b"',
                )
            else:
                rows.append((line, dict(zip(header[1], cells, strict=True))))
    except csv.Error as exc:
        raise PromptFileError(
            f"malformed CSV: {exc}",
            file=file,
            line=reader.line_num,
            expected="RFC 4180 CSV",
            hint="check for an unclosed quote" + ("" if header else " or a stray NUL byte"),
        ) from None
    if header is None:
        raise _empty(file)
    return Rows(file, "row", rows, header)


def _column_names(cells: list[str], *, file: str, line: int) -> list[str]:
    names = [cell.strip() for cell in cells]
    for index, name in enumerate(names):
        if not name:
            raise PromptFileError(
                "CSV header has an empty column name",
                file=file,
                line=line,
                field=f"column {index + 1}",
                expected="a name for every column",
                hint="the first row is read as the header: name every column",
            )
        if names.index(name) != index:
            raise PromptFileError(
                f"CSV header repeats column {name!r}",
                file=file,
                line=line,
                field=name,
                expected="distinct column names",
                hint="rename or drop one of the two columns",
            )
    return names
