"""What a run shows while it goes: a line per finished case, the one ETA formula (the live lines
and `make status` share it), and the heartbeat files of running cases.

The controller prints, from the note the worker attached to each case's report,
`[ 5/28] layer12-add-a1  harm_train 0.67  harm_test 0.42  benign helpful 0.33  collapse 0.00
(00:41) | 03:12 elapsed, ETA 09:00`. Quiet under -q.
"""

from __future__ import annotations

import contextlib
import json
import os
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from tqdm.std import tqdm

from steering_reliability.atomic import atomic_write_json

RUNNING_DIR = "running"  # <run_dir>/running/<worker>.json while a case runs
HEARTBEAT_SECONDS = 10.0
clock = tqdm.format_interval  # 125 s -> "02:05", 7325 s -> "2:02:05"


def _rate(rows: Sequence[Mapping[str, Any]], column: str, split: str | None = None) -> float | None:
    vals = [bool(r[column]) for r in rows
            if r.get(column) is not None and (split is None or r.get("split") == split)]  # fmt: skip
    return sum(vals) / len(vals) if vals else None


def case_summary(rows: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Key rates of one case's prompt rows, and any sanity verdict: plain values only."""
    prompts = [r for r in rows if r.get("prompt_id")]
    other = {r.get("behaviour") for r in prompts} - {None, "refusal"}
    if other:  # another behaviour's case: its flag rate per set, in the order they ran
        splits = list(dict.fromkeys(str(r["split"]) for r in prompts))
        found: dict[str, Any] = {f"{next(iter(other))} {s}": _rate(prompts, "behaviour_flag", s)
                                 for s in splits}  # fmt: skip
        return found | {"collapse": _rate(prompts, "collapsed")}
    out: dict[str, Any] = {
        "harm_train": _rate(prompts, "is_refusal", "harm_train"),
        "harm_test": _rate(prompts, "is_refusal", "harm_test"),
        "benign helpful": _rate(prompts, "is_helpful", "benign"),
        "collapse": _rate(prompts, "collapsed"),
    }
    verdicts = sorted({str(r["verdict"]) for r in rows if r.get("verdict")})
    if verdicts:
        out["verdict"] = "/".join(verdicts)
    return out


def eta(
    pending: Iterable[Mapping[str, Any]], finished: Iterable[Mapping[str, Any]], workers: int
) -> float | None:
    """Seconds left: the expected seconds of the pending cases, summed and shared by `workers`
    (never less than the longest of them). Cases are {"kind", "work", "seconds"} (finished).

    A case's expected seconds are the mean of the finished cases of its kind (its test
    function); for a kind none has finished yet, its expected work (e.g. prompts x new tokens,
    where a `pytest_sr_case_work` hook says) at the seconds per unit of work measured so far;
    else the mean of all finished cases. Counting cases alone is wrong when they differ: a run
    whose last cases are its longest looks nearly done. None before a case finished.
    """
    done = [(c.get("kind"), c.get("work"), float(c["seconds"]))
            for c in finished if isinstance(c.get("seconds"), (int, float))]  # fmt: skip
    if not done:
        return None
    by_kind: dict[Any, list[float]] = {}
    for kind, _, seconds in done:
        by_kind.setdefault(kind, []).append(seconds)
    worked = [(float(work), seconds) for _, work, seconds in done if work]
    per_unit = sum(s for _, s in worked) / sum(w for w, _ in worked) if worked else None
    mean = sum(s for *_, s in done) / len(done)

    def expected(case: Mapping[str, Any]) -> float:
        same = by_kind.get(case.get("kind"))
        if same:
            return sum(same) / len(same)
        return float(case["work"]) * per_unit if case.get("work") and per_unit else mean

    left = [expected(c) for c in pending]
    return max(sum(left) / max(1, workers), max(left, default=0.0))


def case_line(nodeid: str, note: Mapping[str, Any], done: int, total: int, elapsed: float,
              left: float | None) -> str | None:  # fmt: skip
    """The controller's line for a finished recording case (None: nothing to say of it)."""
    summary = note.get("summary")
    if summary is None and not note.get("reused"):
        return None
    detail = "already recorded"
    if summary is not None:
        rates = [f"{k} {v:.2f}" for k, v in summary.items() if isinstance(v, float)]
        detail = "  ".join(rates + ([str(summary["verdict"])] if "verdict" in summary else []))
    of = str(total or "?")
    return (
        f"[{done:>{len(of)}}/{of}] {nodeid.rsplit('::', 1)[-1]}  {detail}  "
        f"({clock(0 if note.get('reused') else note.get('seconds') or 0)}) | "
        f"{clock(elapsed)} elapsed" + ("" if left is None else f", ETA {clock(left)}")
    )


def running_line(beat: Mapping[str, Any], now: float) -> str:
    """`<case> still running on <worker> for <time>[, generating i/n prompts]`, from a
    heartbeat file."""
    gen = beat.get("generation")
    doing = f", generating {gen[0]}/{gen[1]} prompts" if isinstance(gen, list) else ""
    ran = clock(now - float(beat.get("started", now)))
    return f"{beat.get('case_id')} still running on {beat.get('worker')} for {ran}{doing}"


# ---------------------------------------------------------------- heartbeat files (workers)


class Heartbeat:
    """The running case of one worker, on disk: case id, start time, generation progress.

    Rewritten atomically at the start of a case and at most every HEARTBEAT_SECONDS while the
    engine generates (listeners.GENERATION_PROGRESS), removed when the case ends;
    `make status` reads these files to show what is running and for how long.
    """

    def __init__(self, run_dir: str | Path, worker: str, case_id: str, nodeid: str) -> None:
        self.path = Path(run_dir) / RUNNING_DIR / f"{worker}.json"
        self.state: dict[str, Any] = {"case_id": case_id, "nodeid": nodeid, "worker": worker,
                                      "started": time.time(), "pid": os.getpid()}  # fmt: skip
        self._last = 0.0
        self.write()

    def write(self) -> None:
        self.state["updated"] = time.time()
        with contextlib.suppress(OSError):  # a heartbeat is a courtesy: never fail a case for it
            atomic_write_json(self.path, self.state)
        self._last = time.monotonic()

    def generation(self, done: int, total: int) -> None:
        """A GENERATION_PROGRESS callback: prompts finished of the current generate() call."""
        self.state["generation"] = [done, total]
        if time.monotonic() - self._last >= HEARTBEAT_SECONDS:
            self.write()

    def close(self) -> None:
        with contextlib.suppress(OSError):
            self.path.unlink(missing_ok=True)


def running_cases(run_dir: str | Path) -> list[dict[str, Any]]:
    """The heartbeat files of a run directory, oldest start first (unreadable ones skipped)."""
    found = []
    for path in sorted((Path(run_dir) / RUNNING_DIR).glob("*.json")):
        try:
            found.append(json.loads(path.read_text(encoding="utf-8")))
        except (OSError, ValueError):
            continue
    return sorted(found, key=lambda s: float(s.get("started", 0.0)))
