"""Where a run's time goes: wall seconds per phase, and the tokens generated.

Each process keeps its own tally. A phase's time is exclusive: a phase that runs inside another
(a direction build inside a case, teacher forcing inside a sweep case) is counted once, under the
inner name. The recorder takes the tally after every case into the note its report carries, and
the controller adds the notes of a session up (`records.controller`): a breakdown covers every
worker.
"""

from __future__ import annotations

import functools
import json
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

F = TypeVar("F", bound=Callable[..., Any])

# In the order a case meets them; "other" is the rest of a case's wall time (setup, Python,
# statistics), computed by whoever adds the tallies up.
PHASES = (
    "model load",
    "direction builds",
    "generation: prefill",
    "generation: decode",
    "teacher forcing",
    "last-token reads",  # one forward pass per prompt for its next-token logits (scan, map)
    "scoring",
    "recording",
    "report",
)

_totals: dict[str, float] = {}
_tokens = [0]
_stack: list[list[float]] = []  # [start, seconds spent in phases nested inside] per open phase


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Count the wall time of the block under `name` (minus any phase nested inside it)."""
    if name not in PHASES:
        raise ValueError(f"unknown phase {name!r}; one of {PHASES}")
    frame = [time.perf_counter(), 0.0]
    _stack.append(frame)
    try:
        yield
    finally:
        _stack.pop()
        spent = time.perf_counter() - frame[0]
        _totals[name] = _totals.get(name, 0.0) + spent - frame[1]
        if _stack:
            _stack[-1][1] += spent


def timed(name: str) -> Callable[[F], F]:
    """Decorator: every call of the function counts under phase `name`."""

    def wrap(fn: F) -> F:
        @functools.wraps(fn)
        def inner(*args: Any, **kwargs: Any) -> Any:
            with phase(name):
                return fn(*args, **kwargs)

        return inner  # type: ignore[return-value]

    return wrap


def add_tokens(n: int) -> None:
    """Count n generated tokens (up to and including each row's EOS)."""
    _tokens[0] += n


def take() -> dict[str, Any]:
    """This process's tally since the last take (then reset): {"phases": {...}, "tokens": n}."""
    out = {"phases": {k: round(v, 3) for k, v in _totals.items()}, "tokens": _tokens[0]}
    _totals.clear()
    _tokens[0] = 0
    return out


def merge(tallies: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Tallies (each {"phases", "tokens", "seconds"?}) added up; "other" is each tally's
    "seconds" (its wall time) minus its phases, where "seconds" is known."""
    phases = dict.fromkeys(PHASES, 0.0)
    other = tokens = 0.0
    for t in tallies:
        spent = 0.0
        for k, v in (t.get("phases") or {}).items():
            phases[k] = phases.get(k, 0.0) + float(v)
            spent += float(v)
        tokens += int(t.get("tokens") or 0)
        if t.get("seconds") is not None:
            other += max(0.0, float(t["seconds"]) - spent)
    phases["other"] = other
    return {"phases": {k: round(v, 3) for k, v in phases.items()}, "tokens": int(tokens)}


def bench_ceiling(path: Path, model: Mapping[str, Any] | None = None) -> dict[str, Any] | None:
    """The matmul-only ceiling `make bench` measured on this machine (artifacts/bench.json):
    {"tok_per_s", "model", "device", "dtype", "threads", "batch"}; None when there is none, or
    when it was measured on another model, device or dtype than `model` (a config's model
    section: name, device, dtype) runs."""
    try:
        b = json.loads(path.read_text())
        out = {"tok_per_s": float(b["matmul_ceiling_tok_per_s"]),
               **{k: b.get(k) for k in ("model", "device", "dtype", "threads", "batch")}}  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if model and (
        model.get("name") != out["model"]
        or model.get("dtype") != out["dtype"]
        or not str(out["device"]).startswith(str(model.get("device")))
    ):
        return None
    return out


def render(
    breakdown: Mapping[str, Any],
    wall: float | None,
    workers: int,
    ceiling: Mapping[str, Any] | None = None,
) -> list[str]:
    """Lines for the terminal: each phase's seconds and share of the workers' summed time,
    tokens generated and the generation rate per worker, as a share of `ceiling` when given."""
    phases = breakdown["phases"]
    total = sum(phases.values())
    if total <= 0:
        return []
    head = f"time by phase, summed over {workers} worker(s) and the controller: {total:.1f} s"
    if wall:
        head += f" in {wall:.1f} s of wall time"
    lines = [head]
    for k, v in sorted(phases.items(), key=lambda kv: -kv[1]):
        if v >= 0.05:
            lines.append(f"  {k:22s} {v:8.1f} s  {100 * v / total:5.1f}%")
    decode = phases.get("generation: decode", 0.0) + phases.get("generation: prefill", 0.0)
    if breakdown.get("tokens") and decode > 0:
        rate = breakdown["tokens"] / decode
        line = (
            f"  {breakdown['tokens']} tokens generated, {rate:.0f} tok/s per worker in generation"
        )
        if ceiling:
            line += (
                f", {100 * rate / ceiling['tok_per_s']:.0f}% of the matmul-only ceiling "
                f"{ceiling['tok_per_s']:.0f} tok/s (make bench: {ceiling.get('model')}, "
                f"{ceiling.get('device')}, {ceiling.get('dtype')}, {ceiling.get('threads')} "
                f"thread(s), batch {ceiling.get('batch')})"
            )
        else:
            line += " (make bench measures this machine's matmul-only ceiling to compare)"
        lines.append(line)
    return lines
