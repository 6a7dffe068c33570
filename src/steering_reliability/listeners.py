"""Callbacks one layer offers another without importing it (no imports here, so it is cheap).

GENERATION_PROGRESS: called as fn(prompts finished, prompts in the call) after every decode step
of `generation.generate`; the recording plugin's heartbeat file uses it (records/progress.py).
Listeners must be cheap and must not raise.
"""

from __future__ import annotations

from collections.abc import Callable

GENERATION_PROGRESS: list[Callable[[int, int], None]] = []
