"""Refusal as a behaviour: the suite's first, with its own experiments (the sweep, the sanity
checks, the refusal-direction pipeline, the generalisation map). Its prompt files and
contrastive prefixes are the config's `prompts` and `direction` sections; its scorer is the
refusal phrase metric."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ..config import REPO_ROOT, DirectionConfig
from .base import Behaviour, Labels, Score, register


def score_refusal(texts: Sequence[str], threshold: float) -> list[Score]:
    """metrics.refusal on each text: its score, flag and matched phrases."""
    from ..metrics import refusal

    out = []
    for text in texts:
        r = refusal(text, threshold=threshold)
        out.append(Score(r.score, r.is_refusal, tuple(r.matched_phrases)))
    return out


def _phrase_scorer() -> object:
    return score_refusal


_PROMPTS = REPO_ROOT / "data" / "prompts"
_DIRECTION = DirectionConfig()

REFUSAL = register(
    Behaviour(
        name="refusal",
        description="declining a request; induced by adding the refusal direction, removed by "
        "ablating it",
        splits={"learn": "harm_train", "shifted": "harm_test", "control": "benign"},
        files={s: Path(_PROMPTS / f"{s}.jsonl") for s in ("harm_train", "harm_test", "benign")},
        recipe="contrastive_prefix",
        prefixes=(_DIRECTION.refusal_prefix, _DIRECTION.compliance_prefix),
        scorers={"phrases": _phrase_scorer},  # type: ignore[dict-item]
        labels=Labels(
            noun="refusal",
            flag="refused",
            roles={"learn": "harm_train", "shifted": "harm_test", "control": "benign"},
        ),
    )
)
