"""Do the conclusions depend on the precision? The fast experiment in float32 and in bfloat16.

    .venv/bin/python scripts/precision_agreement.py            # runs both, then compares
    .venv/bin/python scripts/precision_agreement.py --runs A B # compares two finished runs

Runs `pytest experiments --fast --dtype float32` and `... --dtype bfloat16` (same prompts, same
seeds, each its own run directory), times both, and writes `artifacts/precision/agreement.md`:
greedy completion agreement, per-setting rates with the paired bootstrap interval of the
float32 - bfloat16 difference (report part), the direction cosine per layer, and whether the
operating point and the sanity verdicts change. Prints the same text.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
DTYPES = ("float32", "bfloat16")
OUT = ROOT / "artifacts" / "precision"


def _cold_cache(dtype: str, stamp: str) -> Path:
    """A cache folder whose generations and directions are empty but whose fp32 weight copies
    are the shared ones: both runs start equally cold, and neither pays the GGUF conversion."""
    from steering_reliability.models import default_cache_dir

    shared = default_cache_dir()
    cache = OUT / f"cache-{stamp}-{dtype}"
    cache.mkdir(parents=True, exist_ok=True)
    for name in ("models", "sha256"):
        (shared / name).mkdir(parents=True, exist_ok=True)
        link = cache / name
        if not link.exists():
            link.symlink_to((shared / name).resolve(), target_is_directory=True)
    return cache


def run_experiment(dtype: str, run_id: str, workers: str, cache: Path) -> float:
    """One fast run in `dtype`; returns its wall seconds (the session may fail a check)."""
    cmd = [sys.executable, "-m", "pytest", "experiments", "--fast", "--dtype", dtype,
           "--run-id", run_id, "-n", workers, "-p", "no:cacheprovider", "-q"]  # fmt: skip
    print("+", " ".join(cmd), flush=True)
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "STEERING_RELIABILITY_CACHE": str(cache)}
    t0 = time.perf_counter()
    subprocess.run(cmd, cwd=ROOT, check=False, env=env)
    return time.perf_counter() - t0


def _rows(run_dir: Path) -> Any:
    from steering_reliability.analysis.data import load_results

    return load_results(run_dir / "results.parquet")


def _per_prompt(df: Any, column: str) -> Any:
    return df.groupby(["case_id", "split", "prompt_id"])[column].mean()


def compare(run_a: Path, run_b: Path) -> tuple[str, dict[str, Any]]:
    """Markdown text and the numbers behind it for two runs (a = float32, b = bfloat16)."""
    import pandas as pd

    from steering_reliability.analysis import markdown as md
    from steering_reliability.analysis.data import SPLITS
    from steering_reliability.metrics.stats import diff_ci
    from steering_reliability.studies.sweep.report.sanity import verdict

    a, b = _rows(run_a), _rows(run_b)
    keep = ["baseline", "sweep"]
    a, b = a[a["experiment"].isin(keep)], b[b["experiment"].isin(keep)]
    key = ["case_id", "split", "prompt_id"]
    both = a.merge(b, on=key, suffixes=("_a", "_b"))
    same = (both["completion_a"] == both["completion_b"]).mean()
    base = both[both["case_id"] == "baseline"]
    same_base = (base["completion_a"] == base["completion_b"]).mean()
    lines = [
        "# float32 vs bfloat16 on the fast experiment",
        f"- runs: `{run_a.name}` (float32), `{run_b.name}` (bfloat16); {len(both)} prompt x "
        "setting pairs",
        f"- identical completions: {same:.3f} of all pairs; {same_base:.3f} of the unsteered "
        "baseline's",
    ]
    report_a = a[a["part"] == "report"] if (a["part"] == "report").any() else a
    report_b = b[b["part"] == "report"] if (b["part"] == "report").any() else b
    table, n_diff, n_all = [], 0, 0
    headline_diff = []
    summary_a = pd.read_csv(run_a / "summary.csv")
    op_a = summary_a[summary_a["operating_point"]].iloc[0]["case_id"]
    summary_b = pd.read_csv(run_b / "summary.csv")
    op_b = summary_b[summary_b["operating_point"]].iloc[0]["case_id"]
    for case in sorted(set(report_a["case_id"]) & set(report_b["case_id"])):
        for split in SPLITS:
            for column in ("is_refusal", "is_helpful"):
                sa = _per_prompt(report_a[(report_a["case_id"] == case)
                                          & (report_a["split"] == split)], column)  # fmt: skip
                sb = _per_prompt(report_b[(report_b["case_id"] == case)
                                          & (report_b["split"] == split)], column)  # fmt: skip
                sa = sa.droplevel([0, 1])
                sb = sb.droplevel([0, 1])
                shared = sa.index.intersection(sb.index)
                if not len(shared):
                    continue
                d = diff_ci(sa.loc[shared], sb.loc[shared], paired=True)
                n_all += 1
                differs = d.excludes(0.0)
                n_diff += differs
                if case in ("baseline", op_a):
                    headline_diff.append(differs)
                if differs or case in ("baseline", op_a):
                    table.append([case, split, column, md.num(float(sa.loc[shared].mean())),
                                  md.num(float(sb.loc[shared].mean())), md.ci(d),
                                  "differs" if differs else "-"])  # fmt: skip
    lines.append(
        f"- per-setting rates (report prompts): {n_diff} of {n_all} paired fp32 - bf16 "
        f"differences have a 95% interval excluding 0 ({n_all} comparisons, unadjusted: about "
        f"{0.05 * n_all:.1f} would by chance); at the baseline and the operating point: "
        f"{sum(headline_diff)} of {len(headline_diff)}"
    )
    cosines = direction_cosines(run_a)
    lines.append("- direction cosine float32 vs bfloat16 per layer: "
                 + ", ".join(f"layer {k} {v:.5f}" for k, v in cosines.items()))  # fmt: skip
    lines.append(f"- operating point: `{op_a}` (float32), `{op_b}` (bfloat16): "
                 + ("same" if op_a == op_b else "**changes**"))  # fmt: skip
    va, vb = _verdicts(_rows(run_a), verdict), _verdicts(_rows(run_b), verdict)
    changed = sorted(k for k in set(va) | set(vb) if va.get(k) != vb.get(k))
    lines.append("- sanity verdicts: " + ", ".join(f"{k} {va.get(k)}" for k in sorted(va))
                 + ("; unchanged in bfloat16" if not changed else
                    "; **changed in bfloat16**: " + ", ".join(
                        f"{k} {va.get(k)} -> {vb.get(k)}" for k in changed)))  # fmt: skip
    lines += ["", "Rates at the baseline and the operating point, and every setting whose "
              "difference excludes 0 (report prompts):", "",
              md.table(["setting", "split", "metric", "float32", "bfloat16",
                        "fp32 - bf16 (paired)", ""], table)]  # fmt: skip
    facts = {
        "identical_completions": float(same),
        "differences_excluding_0": int(n_diff),
        "comparisons": int(n_all),
        "headline_differences_excluding_0": int(sum(headline_diff)),
        "min_cosine": min(cosines.values()) if cosines else float("nan"),
        "same_operating_point": op_a == op_b,
        "verdicts_changed": changed,
    }
    return "\n".join(lines) + "\n", facts


def _verdicts(df: Any, verdict: Any) -> dict[str, str]:
    rows = df[df["experiment"].str.startswith("sanity:")]
    return {str(name)[7:]: verdict(part) for name, part in rows.groupby("experiment")}


def direction_cosines(run_dir: Path) -> dict[int, float]:
    """The main direction at every sweep layer, built (or read from the cache) in both dtypes."""
    import json

    import torch

    from steering_reliability.config import load_config
    from steering_reliability.models import load
    from steering_reliability.studies.directions import directions_for_layers
    from steering_reliability.studies.shared import direction_prompts

    info = json.loads((run_dir / "run.json").read_text())
    cfg = load_config(ROOT / "configs" / "fast.yaml")
    layers = list(info["config"]["sweep"]["layers"])
    vecs = {}
    for dtype in DTYPES:
        model = load(cfg.model.name, dtype=dtype)
        vecs[dtype] = directions_for_layers(model, cfg, direction_prompts(cfg), layers)
    return {
        layer: float(torch.nn.functional.cosine_similarity(
            vecs["float32"][layer].vector.double(), vecs["bfloat16"][layer].vector.double(), dim=0))
        for layer in layers
    }  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", nargs=2, metavar=("FP32_RUN", "BF16_RUN"), default=None)
    ap.add_argument("--workers", default="2")
    args = ap.parse_args(argv)
    from steering_reliability.models.precision import native_bf16

    timing = ""
    if args.runs is None:
        stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
        runs, secs = [], {}
        for dtype in DTYPES:
            run_id = f"precision-{stamp}-{dtype}"
            secs[dtype] = run_experiment(dtype, run_id, args.workers, _cold_cache(dtype, stamp))
            runs.append(ROOT / "artifacts" / "runs" / run_id)
        timing = (f"- wall time of the fast experiment ({args.workers} workers, generation and "
                  f"direction caches cold in each dtype): float32 {secs['float32']:.0f} s, bfloat16 "
                  f"{secs['bfloat16']:.0f} s: {secs['float32'] / secs['bfloat16']:.2f}x\n")  # fmt: skip
    else:
        runs = [Path(r) for r in args.runs]
    text, facts = compare(runs[0], runs[1])
    cpu = "native bf16" if native_bf16("cpu") else "no native bf16 (emulated: slow)"
    text += f"\n- this CPU: {cpu}\n" + timing
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "agreement.md").write_text(text, encoding="utf-8")
    print(text)
    print(facts)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
