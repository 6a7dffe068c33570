#!/usr/bin/env bash
# The suite on a CUDA machine, in one command, with every output in one folder.
#
#   scripts/gpu_check.sh [--out DIR] [--dry-run] [--torch-from PYTHON] [--wheels DIR] [--workers N]
#                        [--steps install,tests,...] [--deadline SECONDS]
# --steps: which steps (default all, in the order below); --deadline: no step runs past this many
# seconds from the start (each step's own limit is cut to what is left).
#
# Steps (each timed, each logged to DIR/<step>.log; a failed step is recorded and the next runs):
#   env          GPU, driver, Python, CPU count, the lock's torch pin, the git commit
#   install      a venv (.venv-gpu) with the CUDA build of the lock's torch (from GPU_TORCH_INDEX,
#                default the PyTorch cu128 index) and every other package of requirements.lock, by
#                hash; offline: --torch-from PYTHON reuses the CUDA torch of that interpreter, and
#                --wheels DIR (with --torch-from) installs the lock's packages that DIR holds, each
#                checked against the lock's hash, the rest coming from PYTHON's environment.
#                Versions that differ from the lock, and locked packages missing, are listed.
#   tests        the engine-vs-HF equality tests (tests/test_generation.py) with the model on CUDA
#   bench-64     make bench on CUDA: engine vs HF generate, 64 prompts, batch 64, fp32 and bf16
#   bench-256    the same at batch 256 (256 prompts)
#   experiments  make experiments FAST=1 on CUDA (model.device auto), its wall time
# DIR/summary.md gathers the numbers (DIR/summary.json the same as data).
#
# --dry-run checks everything but CUDA, on this machine's CPU, in about 30 s: the install is
# planned and printed, not run (the current .venv is used, or GPU_CHECK_PY), the tests run on the
# CPU, the bench runs on 4 prompts, and the fast experiment is collected, not run.
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
OUT="$ROOT/artifacts/gpu_check"
DRY=0
TORCH_FROM=""
WHEELS=""
WORKERS="${GPU_WORKERS:-8}"
STEPS="env,install,tests,bench-64,bench-256,experiments"
DEADLINE=86400
VENV="${GPU_VENV:-.venv-gpu}"
TORCH_URL="${GPU_TORCH_INDEX:-https://download.pytorch.org/whl/cu128}"
ALL_STEPS="env,install,tests,bench-64,bench-256,experiments"
usage() { echo "gpu_check.sh: $1 (see --help)" >&2; exit 2; }
while [ $# -gt 0 ]; do
  case "$1" in
    --out|--torch-from|--wheels|--workers|--steps|--deadline)
      [ $# -ge 2 ] || usage "$1 needs a value" ;;
  esac
  case "$1" in
    --out) OUT="$2"; shift 2 ;;
    --dry-run) DRY=1; shift ;;
    --torch-from) TORCH_FROM="$2"; shift 2 ;;
    --wheels) WHEELS="$2"; shift 2 ;;
    --workers) WORKERS="$2"; shift 2 ;;
    --steps) STEPS="env,$2"; shift 2 ;;
    --deadline) DEADLINE="$2"; shift 2 ;;
    -h|--help) sed -n '2,24p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) usage "unknown argument '$1'" ;;
  esac
done
for s in ${STEPS//,/ }; do
  case ",$ALL_STEPS," in *",$s,"*) ;; *) usage "unknown step '$s' (steps: $ALL_STEPS)" ;; esac
done
if [ -n "$WHEELS" ]; then
  [ -d "$WHEELS" ] || usage "--wheels $WHEELS is not a folder"
  [ -n "$TORCH_FROM" ] || usage "--wheels needs --torch-from (the packages DIR lacks come from there)"
  WHEELS="$(cd "$WHEELS" && pwd)"
fi
if [ -n "$TORCH_FROM" ] && ! command -v "$TORCH_FROM" >/dev/null; then
  usage "--torch-from $TORCH_FROM is not an interpreter on PATH"
fi
mkdir -p "$OUT"
OUT="$(cd "$OUT" && pwd)"  # relative paths were the caller's; from here on, the repo root
cd "$ROOT"
: >"$OUT/steps.tsv"
export HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 TOKENIZERS_PARALLELISM=false PYTHONUNBUFFERED=1
T0=$(date +%s)

# step NAME TIMEOUT_S CMD...: run CMD with a time limit, log to $OUT/NAME.log, record rc and seconds.
step() {
  local name="$1" limit="$2"; shift 2
  case ",$STEPS," in *",$name,"*) ;; *) return 0 ;; esac
  local left=$(( DEADLINE - ($(date +%s) - T0) ))
  if [ "$left" -le 5 ]; then
    printf '%s\t%s\t%s\n' "$name" "deadline" 0 >>"$OUT/steps.tsv"
    echo "== $name: not run, the ${DEADLINE}s deadline has passed =="
    return 0
  fi
  [ "$limit" -gt "$left" ] && limit=$left
  local t=$(date +%s) rc
  echo "== $name (limit ${limit}s) =="
  # bash -c: a step may be one of the functions below (exported), which timeout cannot run itself
  timeout --kill-after=10 "$limit" bash -c '"$@"' _ "$@" >"$OUT/$name.log" 2>&1
  rc=$?
  local secs=$(( $(date +%s) - t ))
  printf '%s\t%s\t%s\n' "$name" "$rc" "$secs" >>"$OUT/steps.tsv"
  tail -n 15 "$OUT/$name.log"
  echo "== $name: rc $rc, ${secs}s (total $(( $(date +%s) - T0 ))s) =="
  return 0
}

env_report() {
  echo "date: $(date -u +%FT%TZ)"
  echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)$(git diff --quiet 2>/dev/null || echo ' (+ local changes)')"
  echo "cpus: $(nproc)"
  echo "lock torch pin: $(grep -m1 '^torch==' requirements.lock | sed 's/ .*//')"
  if command -v nvidia-smi >/dev/null; then
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
  else
    echo "nvidia-smi: not found (no NVIDIA driver on this machine)"
  fi
  "$REPORT_PY" -c 'import sys, platform; print("python:", sys.version.split()[0], platform.machine())'
  "$REPORT_PY" -c 'import torch; print("torch:", torch.__version__, "cuda:", torch.version.cuda, "available:", torch.cuda.is_available())' 2>&1 || true
}

# The lock without torch: torch's CUDA build is installed from GPU_TORCH_INDEX instead of the CPU wheel.
lock_without_torch() {
  awk '/^torch==/ {skip=1; next} skip && /^[ \t]/ {next} {skip=0; print}' requirements.lock
}

gpu_install() {
  local py="${TORCH_FROM:-python3}"
  lock_without_torch >"$OUT/requirements-no-torch.lock"
  local torch_pin; torch_pin="$(grep -m1 '^torch==' requirements.lock | sed 's/ .*//; s/+cpu//')"
  rm -rf "$VENV"
  "$py" -m venv "$VENV" || return 1
  local vpy="$VENV/bin/python"
  if [ -n "$TORCH_FROM" ]; then
    # Reuse that interpreter's CUDA torch (and, offline, the packages --wheels lacks): its
    # site-packages come after the venv's own, so every package installed here wins.
    "$py" -c 'import site; print("\n".join(site.getsitepackages()))' \
      >"$("$vpy" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')/_torch_from.pth"
  else
    "$vpy" -m pip install -q "$torch_pin" --index-url "$TORCH_URL" || return 1
  fi
  if [ -n "$WHEELS" ]; then
    # The lock's entries for the packages DIR holds, so each wheel is checked against its hash.
    "$vpy" - "$WHEELS" "$OUT/requirements-no-torch.lock" >"$OUT/requirements-wheels.lock" <<'PYEOF' || return 1
import re, sys
from pathlib import Path
norm = lambda n: re.sub(r"[-_.]+", "-", n).lower()
have = {norm(w.name.split("-")[0]) for w in Path(sys.argv[1]).glob("*.whl")}
keep = False
for line in Path(sys.argv[2]).read_text().splitlines():
    if line and not line[0].isspace() and not line.startswith("#"):
        keep = norm(line.split("==")[0]) in have
    if keep:
        print(line)
PYEOF
    "$vpy" -m pip install -q --no-index --find-links "$WHEELS" --require-hashes --no-deps \
      -r "$OUT/requirements-wheels.lock" || return 1
  else
    "$vpy" -m pip install -q --require-hashes --no-deps -r "$OUT/requirements-no-torch.lock" || return 1
  fi
  "$vpy" -m pip install -q --no-deps --no-build-isolation -e . || return 1
  touch "$VENV/.installed-stamp"  # make's targets then run in this venv as they are
  "$vpy" -c 'import torch; print("torch", torch.__version__, "cuda", torch.version.cuda, "sees a GPU:", torch.cuda.is_available())' || return 1
  "$vpy" scripts/check_lock.py --report requirements.lock
  "$vpy" scripts/check_lock.py requirements.lock 2>&1 | grep 'locked but not installed' || true
}

plan_install() {
  lock_without_torch >"$OUT/requirements-no-torch.lock"
  local n; n=$(grep -c '^[A-Za-z0-9]' "$OUT/requirements-no-torch.lock")
  grep -q '^torch==' "$OUT/requirements-no-torch.lock" && { echo "torch left in the lock"; return 1; }
  echo "would create $VENV and install:"
  echo "  torch: $(grep -m1 '^torch==' requirements.lock | sed 's/ .*//; s/+cpu//') from ${TORCH_FROM:+the torch of $TORCH_FROM, not }$TORCH_URL"
  echo "  the lock's other $n packages: ${WHEELS:-by hash from the package index}"
  echo "dry run: using .venv instead"
}

write_summary() {
  "$REPORT_PY" - "$OUT" "$DRY" <<'PYEOF'
import json, sys
from pathlib import Path
out, dry = Path(sys.argv[1]), sys.argv[2] == "1"
steps = [l.split("\t") for l in (out / "steps.tsv").read_text().splitlines() if l]
data = {"dry_run": dry, "steps": {n: {"rc": rc, "seconds": int(s)} for n, rc, s in steps}}
lines = ["# GPU check" + (" (dry run on the CPU)" if dry else ""), "",
         (out / "env.log").read_text().strip().replace("\n", "  \n"), "",
         "| step | result | seconds |", "|---|---|---|"]
def result(rc):
    return {"0": "ok", "deadline": "not run (deadline)", "124": "timed out"}.get(rc, f"failed (rc {rc})")
lines += [f"| {n} | {result(rc)} | {s} |" for n, rc, s in steps]
rows = []
for b in ("bench-64", "bench-256"):
    p = out / f"{b}.json"
    if p.exists():
        r = json.loads(p.read_text())
        data[b] = r
        t = r["tok_per_s"]
        bf = r.get("bfloat16") or {}
        rows.append(f"| {r['batch']} | {r['prompts']} | {t['engine steered']:.0f} | "
                    f"{t['engine unsteered']:.0f} | {t['HF generate, plain HF modules']:.0f} | "
                    f"{t['engine steered'] / t['HF generate, plain HF modules']:.2f}x | "
                    f"{r['engine_equals_hf']}/{r['prompts']} | "
                    f"{bf.get('engine_steered_tok_per_s', '-')} | "
                    f"{bf.get('identical_sequences', '-')}/{r['prompts']} |")
if rows:
    lines += ["", f"Engine vs HF `generate` on {data.get('bench-64', data.get('bench-256'))['device']}, "
              "tokens/s, greedy:", "",
              "| batch | prompts | engine steered | engine unsteered | HF generate | engine / HF | "
              "engine == HF | bf16 engine steered | bf16 == fp32 |", "|---|---|---|---|---|---|---|---|---|"]
    lines += rows
if "experiments" in data["steps"]:
    e = data["steps"]["experiments"]
    what = "collected (not run)" if dry else "ran"
    lines += ["", f"make experiments FAST=1: {what} in {e['seconds']} s, rc {e['rc']}"]
(out / "summary.json").write_text(json.dumps(data, indent=2) + "\n")
(out / "summary.md").write_text("\n".join(lines) + "\n")
print("\n".join(lines))
PYEOF
}

REPORT_PY="${TORCH_FROM:-python3}"
[ "$DRY" = 1 ] && REPORT_PY="${GPU_CHECK_PY:-.venv/bin/python}"
export OUT VENV TORCH_FROM WHEELS TORCH_URL REPORT_PY
export -f env_report lock_without_torch gpu_install plan_install
step env 60 env_report
if [ "$DRY" = 1 ]; then
  PY="${GPU_CHECK_PY:-.venv/bin/python}"
  [ -x "$PY" ] || usage "--dry-run needs .venv (make venv) or GPU_CHECK_PY"
  step install 60 plan_install
  step tests 300 env STEERING_TEST_DEVICE=cpu "$PY" -m pytest tests/test_generation.py -q -p no:cacheprovider -x
  step bench-64 300 "$PY" scripts/bench_generation.py --device cpu --n 4 --batch 4 --new-tokens 4 --no-dtypes --json "$OUT/bench-64.json"
  step experiments 300 "$PY" -m pytest experiments --fast --collect-only -q -p no:cacheprovider --no-report
else
  PY="$VENV/bin/python"
  step install 900 gpu_install
  step tests 300 env STEERING_TEST_DEVICE=cuda "$PY" -m pytest tests/test_generation.py -q -p no:cacheprovider
  step bench-64 300 "$PY" scripts/bench_generation.py --device cuda --n 64 --batch 64 --threads 4 --repeats 3 --json "$OUT/bench-64.json"
  step bench-256 300 "$PY" scripts/bench_generation.py --device cuda --n 256 --batch 256 --threads 4 --repeats 3 --json "$OUT/bench-256.json"
  step experiments 1200 make experiments FAST=1 VENV="$VENV" WORKERS="$WORKERS" PYTEST_ARGS="--device cuda --resume never"
  if grep -q $'^experiments\t0\t' "$OUT/steps.tsv"; then  # this run's, not an older one's
    for f in summary.csv findings.md run.json; do
      [ -f "artifacts/runs/latest/$f" ] && cp "artifacts/runs/latest/$f" "$OUT/fast-$f"
    done
  fi
fi
write_summary
failed=$(awk -F'\t' '$2 != "0"' "$OUT/steps.tsv" | wc -l)
echo "gpu_check: $failed failed step(s); outputs in $OUT"
[ "$failed" = 0 ]
