"""Every relative link in README.md and docs/ resolves: to a file or folder of the repository,
and where it names an `#anchor`, to a heading of that file (GitHub's slugs). No model needed."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from pathlib import Path
from urllib.parse import unquote

import pytest

ROOT = Path(__file__).resolve().parents[1]

# [text](target) or ![alt](target), with an optional "title"; the target has no spaces.
_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_FENCE = re.compile(r"^\s*(```|~~~)")
_HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)(?:\s+#+)?\s*$")  # "## Title ##" too
_INLINE_CODE = re.compile(r"`+[^`]*`+")
_EXTERNAL = re.compile(r"^[a-zA-Z][a-zA-Z0-9+.-]*:")  # http:, https:, mailto:, ...


def _prose_lines(text: str) -> Iterable[tuple[int, str]]:
    """The lines outside fenced code blocks, numbered from 1."""
    fenced = False
    for number, line in enumerate(text.splitlines(), start=1):
        if _FENCE.match(line):
            fenced = not fenced
            continue
        if not fenced:
            yield number, line


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: markup dropped, lowercased, every character but letters,
    marks, digits, '_', '-' and spaces dropped, each space turned into '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link keeps its text
    text = re.sub(r"<[^>]+>", "", text).strip().lower()  # html tags
    kept = (c for c in text if c in " -" or unicodedata.category(c)[0] in "LMN" or c == "_")
    return "".join(kept).replace(" ", "-")


def anchors(path: Path) -> set[str]:
    """The anchors of a markdown file's headings; a repeated heading gets -1, -2, ... as on
    GitHub."""
    seen: dict[str, int] = {}
    found: set[str] = set()
    for _, line in _prose_lines(path.read_text(encoding="utf-8")):
        match = _HEADING.match(line)
        if match is None:
            continue
        base = slug(match.group(2))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def links(path: Path) -> Iterable[tuple[int, str]]:
    """(line, target) of every link in a markdown file, outside code blocks and code spans."""
    for number, line in _prose_lines(path.read_text(encoding="utf-8")):
        for match in _LINK.finditer(_INLINE_CODE.sub("", line)):
            yield number, match.group(1)


def broken_links(path: Path) -> list[str]:
    """'file:line: target (why)' for each relative link of `path` that does not resolve."""
    problems: list[str] = []
    for number, target in links(path):
        if _EXTERNAL.match(target):
            continue
        file_part, _, anchor = target.partition("#")
        dest = (path.parent / unquote(file_part)).resolve() if file_part else path
        where = f"{path.name}:{number}: {target}"
        if not dest.exists():
            problems.append(f"{where} (no such file: {dest})")
        elif (
            anchor
            and dest.is_file()
            and dest.suffix == ".md"
            and unquote(anchor).lower() not in anchors(dest)
        ):
            problems.append(f"{where} (no heading with anchor #{anchor} in {dest.name})")
    return problems


def documentation_files(root: Path = ROOT) -> list[Path]:
    """README.md and every markdown page under docs/."""
    return [root / "README.md", *sorted((root / "docs").rglob("*.md"))]


def test_every_relative_link_in_readme_and_docs_resolves() -> None:
    files = documentation_files()
    assert all(f.is_file() for f in files), files
    assert len(files) > 1, "no pages found under docs/"
    assert any(True for _ in links(ROOT / "README.md")), "README.md has no links to check"
    problems = [p for f in files for p in broken_links(f)]
    assert not problems, "broken links:\n" + "\n".join(problems)


def test_the_checker_reports_a_missing_file_and_a_missing_anchor(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "page.md").write_text(
        "# A page\n\n## Sanity checks (`pytest -m sanity`)\n\n## Sanity checks (`pytest -m sanity`)\n",
        encoding="utf-8",
    )
    readme = tmp_path / "README.md"
    readme.write_text(
        "# Title\n\n"
        "[fine](docs/page.md) and [also fine](docs/page.md#sanity-checks-pytest--m-sanity-1)\n"
        "[here](#title), [a folder](docs/), [web](https://example.org/x.md), [mail](mailto:a@b.c)\n"
        "[gone](docs/missing.md)\n"
        "[bad anchor](docs/page.md#no-such-heading)\n"
        "`[in code](nowhere.md)`\n"
        "```\n[in a block](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    problems = broken_links(readme)
    assert len(problems) == 2, problems
    assert problems[0].startswith("README.md:5: docs/missing.md (no such file")
    assert problems[1].startswith("README.md:6: docs/page.md#no-such-heading (no heading")
    assert documentation_files(tmp_path) == [readme, docs / "page.md"]


@pytest.mark.parametrize(
    ("heading", "expected"),
    [
        ("Your first hour", "your-first-hour"),
        ("Sanity checks (`pytest -m sanity`)", "sanity-checks-pytest--m-sanity"),
        ("Precision: float32 by default, bfloat16", "precision-float32-by-default-bfloat16"),
        (
            "The refusal-direction pipeline (Arditi et al. 2024)",
            "the-refusal-direction-pipeline-arditi-et-al-2024",
        ),
        ("Recipe 4 (the default) and its seeds", "recipe-4-the-default-and-its-seeds"),
        ("A [linked](x.md) run_id", "a-linked-run_id"),
        ("Ablation moves resid·v̂ to 0", "ablation-moves-residv̂-to-0"),
    ],
)
def test_slug_follows_githubs_rules(heading: str, expected: str) -> None:
    assert slug(heading) == expected
