"""Load, check, hash and atomically write prompt files in the schema of DESIGN.md."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO

from steering_reliability.atomic import atomic_write
from steering_reliability.errors import PromptFileError
from steering_reliability.prompts.benchmarks import is_benchmark, load_benchmark
from steering_reliability.prompts.readers import Row, read_rows
from steering_reliability.prompts.schema import REQUIRED_META, Prompt, prompt_from_record


def load_prompts(path: str | Path, *, split: str | None = None) -> tuple[Prompt, ...]:
    """Read and validate a .jsonl / .json (list) / .csv prompt file; refuse anything malformed.
    `benchmark:NAME` reads a public benchmark instead (prompts.benchmarks).

    With `split`, records whose meta.split names another split are skipped (one file may hold
    several) and every returned prompt carries meta.split = split.
    """
    if is_benchmark(path):
        return _split_of(list(load_benchmark(str(path))), split, name=str(path))
    name, unit, rows, header = read_rows(path)
    if header is not None:
        rows = _csv_records(rows, header, file=name)
    prompts: list[Prompt] = []
    first_line: dict[str, int] = {}
    for line, obj in rows:
        prompt = prompt_from_record(obj, file=name, line=line, unit=unit)
        if prompt.id in first_line:
            raise PromptFileError(
                f"duplicate id {prompt.id!r} on {unit}s {first_line[prompt.id]} and {line}",
                file=name,
                line=line,
                field="id",
                value=prompt.id,
                expected="ids unique per file",
                hint=f"rename one of the two records ({unit} {first_line[prompt.id]} or {line})",
            )
        first_line[prompt.id] = line
        prompts.append(prompt)
    return _split_of(prompts, split, name=name)


def _split_of(prompts: list[Prompt], split: str | None, *, name: str) -> tuple[Prompt, ...]:
    if split is not None:
        prompts = [_with_split(p, split) for p in prompts if p.meta.get("split", split) == split]
    if not prompts:
        raise PromptFileError(
            "no prompt records" + (f" for split {split!r}" if split is not None else ""),
            file=name,
            expected="at least one record",
            hint="check the file (and meta.split, if the file holds several splits)",
        )
    return tuple(prompts)


def _with_split(prompt: Prompt, split: str) -> Prompt:
    if prompt.meta.get("split") == split:
        return prompt
    return dataclasses.replace(prompt, meta={**prompt.meta, "split": split})


def _csv_records(rows: list[Row], header: tuple[int, list[str]], *, file: str) -> list[Row]:
    """CSV rows in our schema: columns id, prompt, and meta columns (`family` or `meta.family`)."""
    header_line, columns = header
    meta_cols = {c: c.removeprefix("meta.") for c in columns if c not in ("id", "prompt")}
    for needed in ("id", "prompt", *REQUIRED_META):
        if needed not in columns and needed not in meta_cols.values():
            raise PromptFileError(
                f"CSV header lacks the column {needed!r}",
                file=file,
                line=header_line,
                field=needed,
                value=columns,
                expected="a header row with id,prompt,family,style",
                hint="the first row is read as the header; add it, or ingest foreign layouts "
                "with `python -m steering_reliability.prompts ingest`",
            )
    out: list[Row] = []
    for line, cells in rows:
        meta = {key: cells[col] for col, key in meta_cols.items() if cells[col] != ""}
        for key in REQUIRED_META:
            meta.setdefault(key, "")  # present but empty, so the error says "empty meta.x"
        out.append((line, {"id": cells["id"], "prompt": cells["prompt"], "meta": meta}))
    return out


def check_prompt_lengths(
    prompts: Iterable[Prompt],
    count_tokens: Callable[[str], int],
    max_tokens: int,
    *,
    file: str,
) -> None:
    """Refuse a prompt that does not fit the model's context (it would be silently truncated)."""
    if max_tokens <= 0:
        raise PromptFileError(
            "max_tokens must be positive",
            file=file,
            field="max_tokens",
            value=max_tokens,
            expected="an integer > 0",
            hint="pass the context length left for the prompt",
        )
    for prompt in prompts:
        n = count_tokens(prompt.prompt)
        if n > max_tokens:
            raise PromptFileError(
                f"prompt {prompt.id!r} is longer than the context ({n} > {max_tokens} tokens)",
                file=file,
                line=prompt.line,
                field="prompt",
                value=prompt.prompt,
                expected=f"at most {max_tokens} tokens",
                hint="shorten or drop this prompt, or lower max_new_tokens to leave it room",
            )


def dumps_prompts(prompts: Iterable[Prompt]) -> str:
    """The canonical JSONL text: one record per line, schema key order, UTF-8, final newline."""
    return "".join(json.dumps(p.to_record(), ensure_ascii=False) + "\n" for p in prompts)


def write_prompts(prompts: Sequence[Prompt], path: str | Path) -> Path:
    """Write one JSONL file atomically (see steering_reliability.atomic)."""
    return write_many({Path(path): prompts})[0]


def write_many(files: Mapping[Path, Sequence[Prompt]]) -> list[Path]:
    """Write several JSONL files, each with atomic_write, nested so that every temp file is
    written before any is renamed: a failure while writing changes no file."""
    pending = [(Path(path), _unique_jsonl(Path(path), ps)) for path, ps in files.items()]

    def write_from(index: int) -> None:
        if index == len(pending):
            return
        path, data = pending[index]

        def write(handle: BinaryIO) -> None:
            handle.write(data)
            write_from(index + 1)  # the next temp file, before this one is renamed

        atomic_write(path, write)

    write_from(0)
    return [path for path, _ in pending]


def _unique_jsonl(path: Path, prompts: Sequence[Prompt]) -> bytes:
    seen: set[str] = set()
    for index, prompt in enumerate(prompts, start=1):
        if prompt.id in seen:
            raise PromptFileError(
                f"refusing to write duplicate id {prompt.id!r}",
                file=str(path),
                line=index,
                field="id",
                value=prompt.id,
                expected="ids unique per file",
                hint="make ids unique before writing",
            )
        seen.add(prompt.id)
    return dumps_prompts(prompts).encode("utf-8")
