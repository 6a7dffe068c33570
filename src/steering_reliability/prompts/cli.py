"""`python -m steering_reliability.prompts {make,ingest,summary}`: the prompt sets from a
shell."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from steering_reliability.atomic import file_sha256
from steering_reliability.errors import InputError, PromptFileError
from steering_reliability.prompts.generate import DEFAULT_SIZES, make_sets
from steering_reliability.prompts.ingest import ingest_file
from steering_reliability.prompts.io import load_prompts
from steering_reliability.prompts.readers import SUFFIXES


def summary(directory: str | Path) -> str:
    """Counts per split x family x style of every prompt file in `directory` (split = file stem)."""
    folder = Path(directory)
    if not folder.is_dir():
        raise PromptFileError(
            "not a directory",
            file=str(folder),
            expected="a folder of prompt files",
            hint="e.g. data/prompts",
        )
    files = sorted(
        p
        for p in folder.iterdir()
        if p.suffix.lower() in SUFFIXES and not p.name.startswith((".", "_"))
    )
    if not files:
        raise PromptFileError(
            "no prompt files",
            file=str(folder),
            expected="files ending in " + ", ".join(SUFFIXES),
            hint="make them with `python -m steering_reliability.prompts make`",
        )
    counts: Counter[tuple[str, str, str]] = Counter()
    totals: Counter[str] = Counter()
    for path in files:
        for prompt in load_prompts(path):
            counts[(path.stem, prompt.family, prompt.style)] += 1
            totals[path.stem] += 1
    rows = [("split", "family", "style", "n")]
    rows += [(s, f, st, str(n)) for (s, f, st), n in sorted(counts.items())]
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    lines = [
        "  ".join(
            cell.ljust(w) if i < 3 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()
        for row in rows
    ]
    lines.append("")
    lines += [f"{split}: {n} prompts" for split, n in sorted(totals.items())]
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m steering_reliability.prompts",
        description="Generate, ingest and summarise prompt sets.",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    make = sub.add_parser("make", help="generate harm_train, harm_test and benign from templates")
    make.add_argument("--out_dir", "--out-dir", default="data/prompts", type=Path)
    make.add_argument("--n_train", "--n-train", type=int, default=DEFAULT_SIZES["harm_train"])
    make.add_argument("--n_test", "--n-test", type=int, default=DEFAULT_SIZES["harm_test"])
    make.add_argument("--n_benign", "--n-benign", type=int, default=DEFAULT_SIZES["benign"])
    make.add_argument("--seed", type=int, default=0)
    ing = sub.add_parser("ingest", help="convert a CSV / JSON list / JSONL to the prompt schema")
    ing.add_argument("file", type=Path)
    ing.add_argument("--split", required=True, help="split name, used in ids (e.g. harmbench)")
    ing.add_argument("--out", required=True, type=Path, help="output .jsonl path")
    ing.add_argument("--text-col", "--text_col", dest="text_col", default=None)
    ing.add_argument("--family-col", "--family_col", dest="family_col", default=None)
    ing.add_argument("--id-col", "--id_col", dest="id_col", default=None)
    summ = sub.add_parser("summary", help="counts per split x family x style")
    summ.add_argument("directory", type=Path)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one command; bad input prints the error's message and returns 2."""
    args = _parser().parse_args(argv)
    try:
        if args.command == "make":
            paths = make_sets(
                args.out_dir,
                n_train=args.n_train,
                n_test=args.n_test,
                n_benign=args.n_benign,
                seed=args.seed,
            )
            for path in paths:
                print(f"wrote {path}  sha256 {file_sha256(path)[:16]}")
        elif args.command == "ingest":
            path, n = ingest_file(
                args.file,
                args.out,
                split=args.split,
                text_col=args.text_col,
                family_col=args.family_col,
                id_col=args.id_col,
            )
            print(f"wrote {n} prompts to {path}")
        else:
            print(summary(args.directory))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
