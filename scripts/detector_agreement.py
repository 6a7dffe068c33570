"""How well does the refusal detector agree with hand labels on real benchmark completions?

    .venv/bin/python scripts/detector_agreement.py                 # generate, score, compare
    .venv/bin/python scripts/detector_agreement.py --rescore       # rescore the stored completions
    .venv/bin/python scripts/detector_agreement.py --benign 30     # also the benign check

Regenerates the embedded model's greedy float32 completions on a fixed, seeded sample of
benchmark prompts (HarmBench standard behaviours, Do-Not-Answer, UncensorBench; read at run
time from the installed packages, never stored in the repository) under a few settings of the
sweep (unsteered; the configured direction added at layer 12, alpha 0.5 and 1, at layer 18,
alpha 0.5; ablated at layer 18, alpha 1), built exactly as experiments/test_sweep.py builds
them. Writes the completions to the git-ignored artifacts/detector/completions.jsonl (with
their sha256 and the detector's score) for a person to read and label.

Given the labels fixture (tests/fixtures/detector_labels.jsonl: benchmark, prompt id, setting,
completion sha256, label), prints the detector's agreement with the labels (label `refusal` is
the positive class; `compliance` and `other` are not refusals): accuracy, precision and recall
of refusal, Cohen's kappa, overall, per benchmark and per setting, then every miss (ids, label
and score, never the text). A label counts only where its sha256 matches the regenerated
completion (another CPU kind may decode differently); the others are reported as unmatched and
left out of every number.

--benign N: the unsteered completions to N seeded benign prompts of data/prompts/benign.jsonl
(artifacts/detector/benign.jsonl) and how many the detector calls a refusal; with --rescore,
how many verdicts changed since the scores stored in that file.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "artifacts" / "detector"
LABELS = ROOT / "tests" / "fixtures" / "detector_labels.jsonl"
BENCHMARKS = ("harmbench", "donotanswer", "uncensorbench")
LABEL_VALUES = ("refusal", "compliance", "other")


@dataclass(frozen=True)
class Setting:
    """One generation setting: no steering (kind None), or one intervention of the sweep."""

    id: str
    kind: str | None = None
    layer: int = 0
    alpha: float = 0.0


SETTINGS: tuple[Setting, ...] = (
    Setting("unsteered"),
    Setting("layer12-add-a0.5", "add", 12, 0.5),
    Setting("layer12-add-a1", "add", 12, 1.0),
    Setting("layer18-add-a0.5", "add", 18, 0.5),
    Setting("layer18-ablate-a1", "ablate", 18, 1.0),
)


# ---------------------------------------------------------------- benchmark prompts


def load_benchmark(name: str) -> Sequence[Any]:
    """The benchmark's prompts (the suite's own reader: prompts.benchmarks), in a stable order."""
    from steering_reliability.prompts.benchmarks import load_benchmark as project_loader

    return list(project_loader(name))


def sample(prompts: Sequence[Any], n: int, seed: int, name: str) -> list[Any]:
    """n prompts drawn with a seed of their own per benchmark, in id order."""
    by_id = {p.id: p for p in prompts}
    chosen = random.Random(f"{seed}:detector:{name}").sample(sorted(by_id), min(n, len(by_id)))
    return [by_id[i] for i in sorted(chosen)]


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


# ---------------------------------------------------------------- generation


def generate_all(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Completions of every sampled prompt under every setting (the sweep's own code path)."""
    import torch

    from steering_reliability.config import load_config
    from steering_reliability.metrics import refusal
    from steering_reliability.models import load
    from steering_reliability.studies.directions import directions_for_layers
    from steering_reliability.studies.shared import (
        direction_prompts,
        generate_for,
        split_files,
        steering_for,
    )

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    model = load(cfg.model.name, device="cpu", dtype="float32")
    layers = sorted({s.layer for s in SETTINGS if s.kind})
    directions = directions_for_layers(
        model,
        cfg,
        direction_prompts(cfg),
        layers,
        prompt_file=split_files(cfg)["harm_train"],
    )
    prompts = [
        (name, p)
        for name in BENCHMARKS
        for p in sample(load_benchmark(name), args.per_benchmark, args.seed, name)
    ]
    rows: list[dict[str, Any]] = []
    for s in SETTINGS:
        steerings = []
        if s.kind is not None:
            vector = directions[s.layer].scaled(cfg.direction.alpha_scale)
            steerings = [steering_for(cfg, s.kind, s.layer, vector, s.alpha)]
        gens = generate_for(
            model, cfg, [p for _, p in prompts], steerings, max_new_tokens=args.max_new_tokens
        )
        for (name, p), g in zip(prompts, gens, strict=True):
            r = refusal(g.text, threshold=cfg.metrics.refusal_threshold)
            rows.append({"benchmark": name, "prompt_id": p.id, "setting": s.id,
                         "max_new_tokens": args.max_new_tokens, "completion": g.text,
                         "sha256": sha256(g.text), "detector_score": round(r.score, 4),
                         "is_refusal": r.is_refusal})  # fmt: skip
        print(f"generated {s.id}: {len(gens)} completions", file=sys.stderr, flush=True)
    return rows


def generate_benign(args: argparse.Namespace) -> list[dict[str, Any]]:
    import torch

    from steering_reliability.config import load_config
    from steering_reliability.metrics import refusal
    from steering_reliability.models import load
    from steering_reliability.prompts import load_prompts
    from steering_reliability.studies.shared import generate_for, split_files

    torch.set_num_threads(args.threads)
    cfg = load_config(args.config)
    model = load(cfg.model.name, device="cpu", dtype="float32")
    benign = sample(
        load_prompts(split_files(cfg)["benign"], split="benign"), args.benign, args.seed, "benign"
    )
    gens = generate_for(model, cfg, benign, max_new_tokens=args.max_new_tokens)
    out = []
    for p, g in zip(benign, gens, strict=True):
        r = refusal(g.text, threshold=cfg.metrics.refusal_threshold)
        out.append({"prompt_id": p.id, "setting": "unsteered", "completion": g.text,
                    "sha256": sha256(g.text), "detector_score": round(r.score, 4),
                    "is_refusal": r.is_refusal})  # fmt: skip
    return out


# ---------------------------------------------------------------- agreement


def agreement(pairs: Sequence[tuple[bool, bool]]) -> dict[str, float | int | None]:
    """(label is refusal, detector says refusal) pairs -> n, counts, accuracy, precision, recall
    and Cohen's kappa (scikit-learn's; None where undefined)."""
    from sklearn.metrics import cohen_kappa_score

    n = len(pairs)
    tp = sum(a and b for a, b in pairs)
    fp = sum(b and not a for a, b in pairs)
    fn = sum(a and not b for a, b in pairs)
    kappa = None
    if n and len({a for a, _ in pairs} | {b for _, b in pairs}) > 1:
        kappa = float(cohen_kappa_score([a for a, _ in pairs], [b for _, b in pairs]))
    return {
        "n": n, "tp": tp, "fp": fp, "fn": fn, "tn": n - tp - fp - fn,
        "accuracy": (n - fp - fn) / n if n else None,
        "precision": tp / (tp + fp) if tp + fp else None,
        "recall": tp / (tp + fn) if tp + fn else None,
        "kappa": kappa,
    }  # fmt: skip


def _fmt(x: float | int | None) -> str:
    return "  -  " if x is None else f"{x:.3f}" if isinstance(x, float) else str(x)


def _line(name: str, a: dict[str, Any]) -> str:
    return (f"  {name:<20} n {a['n']:>3}  acc {_fmt(a['accuracy'])}  prec {_fmt(a['precision'])}"
            f"  rec {_fmt(a['recall'])}  kappa {_fmt(a['kappa'])}"
            f"  (tp {a['tp']} fp {a['fp']} fn {a['fn']} tn {a['tn']})")  # fmt: skip


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(t) for t in path.read_text(encoding="utf-8").splitlines() if t.strip()]


def write_jsonl(path: Path, rows: Iterable[dict[str, Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")


def report(
    rows: Sequence[dict[str, Any]], labels: Sequence[dict[str, Any]], threshold: float
) -> str:
    """The agreement text: matched labels, the numbers by benchmark and setting, the misses."""
    from steering_reliability.metrics import refusal

    by_key = {(r["benchmark"], r["prompt_id"], r["setting"]): r for r in rows}
    matched, unmatched = [], []
    for lab in labels:
        row = by_key.get((lab["benchmark"], lab["prompt_id"], lab["setting"]))
        if row is None or row["sha256"] != lab["completion_sha256"]:
            unmatched.append((lab, "not regenerated" if row is None else "sha256 differs"))
            continue
        score = refusal(row["completion"], threshold=threshold).score
        matched.append((lab, score, score >= threshold))
    lines = [
        f"labels: {len(labels)}; sha256 matched the regenerated completion: {len(matched)}; "
        f"unmatched (left out of every number): {len(unmatched)}",
        f"label counts (matched): {dict(sorted(Counter(m[0]['label'] for m in matched).items()))}",
        f"positive class: label 'refusal'; detector verdict: score >= {threshold}",
    ]

    def pairs(keep: Any) -> list[tuple[bool, bool]]:
        return [(lab["label"] == "refusal", says) for lab, _, says in matched if keep(lab)]

    lines.append(_line("all", agreement(pairs(lambda lab: True))))
    lines.append("by benchmark:")
    for b in BENCHMARKS:
        lines.append(_line(b, agreement(pairs(lambda lab, b=b: lab["benchmark"] == b))))
    lines.append("by setting:")
    for s in SETTINGS:
        lines.append(_line(s.id, agreement(pairs(lambda lab, s=s: lab["setting"] == s.id))))
    misses = [(lab, score) for lab, score, says in matched if says != (lab["label"] == "refusal")]
    lines.append(f"misses ({len(misses)}):")
    for lab, score in sorted(misses, key=lambda m: (m[0]["benchmark"], m[0]["prompt_id"])):
        kind = "missed refusal" if lab["label"] == "refusal" else "false refusal"
        lines.append(f"  {kind:<15} {lab['benchmark']:<14} {lab['prompt_id']:<52} "
                     f"{lab['setting']:<18} label {lab['label']:<10} score {score:.3f}")  # fmt: skip
    if unmatched:
        lines.append("unmatched labels:")
        for lab, why in unmatched:
            lines.append(
                f"  {lab['benchmark']:<14} {lab['prompt_id']:<52} {lab['setting']:<18} {why}"
            )
    return "\n".join(lines)


def benign_report(rows: Sequence[dict[str, Any]], threshold: float) -> str:
    from steering_reliability.metrics import refusal

    now = [refusal(r["completion"], threshold=threshold).is_refusal for r in rows]
    flips = [r["prompt_id"] for r, n in zip(rows, now, strict=True) if n != r["is_refusal"]]
    return (f"benign (unsteered, {len(rows)} prompts): detector refusals now {sum(now)}, "
            f"when generated {sum(r['is_refusal'] for r in rows)}; verdicts changed: "
            f"{len(flips)} {flips if flips else ''}")  # fmt: skip


def main(argv: Sequence[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--config", default="configs/default.yaml", help="the direction's config")
    ap.add_argument("--per-benchmark", type=int, default=8, help="prompts per benchmark")
    ap.add_argument("--max-new-tokens", type=int, default=48)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--labels", type=Path, default=LABELS)
    ap.add_argument("--out", type=Path, default=OUT)
    ap.add_argument("--rescore", action="store_true",
                    help="score the stored completions again instead of generating")  # fmt: skip
    ap.add_argument("--benign", type=int, default=0, help="benign prompts to check (0: none)")
    args = ap.parse_args(argv)
    completions = args.out / "completions.jsonl"
    benign_file = args.out / "benign.jsonl"
    threshold = 0.5
    if args.rescore:
        if not completions.is_file():
            raise SystemExit(f"{completions} does not exist: run without --rescore first")
        rows = read_jsonl(completions)
    else:
        rows = generate_all(args)
        write_jsonl(completions, rows)
        print(f"wrote {len(rows)} completions to {completions}")
    if args.benign:
        if not args.rescore or not benign_file.is_file():
            write_jsonl(benign_file, generate_benign(args))
        print(benign_report(read_jsonl(benign_file), threshold))
    if args.labels.is_file():
        print(report(rows, read_jsonl(args.labels), threshold))
    else:
        print(f"no labels at {args.labels}: nothing to compare")
    return 0


if __name__ == "__main__":
    sys.exit(main())
