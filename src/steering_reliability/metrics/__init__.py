"""Behaviour metrics: pure functions over text, token statistics and logits (no model inside).

refusal      weighted refusal/compliance phrases, position-aware      -> RefusalResult
helpfulness  length, structure, no refusal, no collapse              -> HelpfulnessResult
confounds    distinct-n, rep-n, token stats, collapse, entropy       -> TokenStats, Degeneracy
first_token  softmax mass on refusal-opening tokens                  -> Tensor[batch]
divergence   KL(base || steered) and CE over all completion tokens   -> Tensor[batch]
"""

from __future__ import annotations

from steering_reliability.metrics.confounds import (
    Degeneracy,
    TokenStats,
    degeneracy,
    distinct_n,
    entropy_from_logits,
    repeated_ngram_fraction,
    token_stats,
)
from steering_reliability.metrics.divergence import cross_entropy, kl_divergence
from steering_reliability.metrics.first_token import (
    default_opener_phrases,
    first_token_refusal_prob,
    refusal_token_ids,
)
from steering_reliability.metrics.helpfulness import HelpfulnessResult, helpfulness
from steering_reliability.metrics.markers import Marker
from steering_reliability.metrics.refusal import (
    COMPLIANCE_MARKERS,
    REFUSAL_MARKERS,
    PhraseMatch,
    RefusalResult,
    refusal,
)
from steering_reliability.metrics.text import NormalizedText, normalize

__all__ = [
    "COMPLIANCE_MARKERS",
    "REFUSAL_MARKERS",
    "Degeneracy",
    "HelpfulnessResult",
    "Marker",
    "NormalizedText",
    "PhraseMatch",
    "RefusalResult",
    "TokenStats",
    "cross_entropy",
    "default_opener_phrases",
    "degeneracy",
    "distinct_n",
    "entropy_from_logits",
    "first_token_refusal_prob",
    "helpfulness",
    "kl_divergence",
    "normalize",
    "refusal",
    "refusal_token_ids",
    "repeated_ngram_fraction",
    "token_stats",
]
