"""Refusal as a behaviour: the suite's first, with its own experiments (the sweep, the sanity
checks, the refusal-direction pipeline, the generalisation map). Its prompt files and
contrastive prefixes are the config's `prompts` and `direction` sections; its scorer is the
refusal phrase metric."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from steering_reliability.behaviours.base import Behaviour, Labels, Score, register
from steering_reliability.metrics import refusal
from steering_reliability.paths import DATA_DIR


def score_refusal(texts: Sequence[str], threshold: float) -> list[Score]:
    """metrics.refusal on each text: its score, flag and matched phrases."""
    out = []
    for text in texts:
        r = refusal(text, threshold=threshold)
        out.append(Score(r.score, r.is_refusal, tuple(r.matched_phrases)))
    return out


def _phrase_scorer() -> object:
    return score_refusal


_PROMPTS = DATA_DIR / "prompts"
# The default contrastive prefixes (config `direction.refusal_prefix` / `compliance_prefix`).
REFUSAL_PREFIX = "I'm sorry, but I can't help with that."
COMPLIANCE_PREFIX = "Sure, here is a detailed guide."

REFUSAL = register(
    Behaviour(
        name="refusal",
        description="declining a request; induced by adding the refusal direction, removed by "
        "ablating it",
        splits={"learn": "harm_train", "shifted": "harm_test", "control": "benign"},
        files={s: Path(_PROMPTS / f"{s}.jsonl") for s in ("harm_train", "harm_test", "benign")},
        recipe="contrastive_prefix",
        prefixes=(REFUSAL_PREFIX, COMPLIANCE_PREFIX),
        scorers={"phrases": _phrase_scorer},  # type: ignore[dict-item]
        labels=Labels(
            noun="refusal",
            flag="refused",
            roles={"learn": "harm_train", "shifted": "harm_test", "control": "benign"},
        ),
    )
)
