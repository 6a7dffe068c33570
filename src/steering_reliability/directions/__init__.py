"""Steering directions: builders, residual reads, content-addressed cache, selection."""

from __future__ import annotations

from steering_reliability.directions.activations import (
    SpanResiduals,
    encode,
    encode_plain,
    residual_spans,
    residuals,
)
from steering_reliability.directions.builders import (
    CONTRASTIVE_POSITIONS,
    contrastive_pairs,
    contrastive_prefix,
    diff_in_means,
    outcome_conditioned,
)
from steering_reliability.directions.cache import (
    CODE_VERSION,
    check_variant,
    direction_key,
    export,
    get_or_compute,
    get_or_compute_many,
    load_cached,
    texts_sha256,
)
from steering_reliability.directions.direction import (
    ALPHA_SCALES,
    Direction,
    cosine,
    make_direction,
)

__all__ = [
    "ALPHA_SCALES",
    "CODE_VERSION",
    "CONTRASTIVE_POSITIONS",
    "Direction",
    "SpanResiduals",
    "check_variant",
    "contrastive_pairs",
    "contrastive_prefix",
    "cosine",
    "diff_in_means",
    "direction_key",
    "encode",
    "encode_plain",
    "export",
    "get_or_compute",
    "get_or_compute_many",
    "load_cached",
    "make_direction",
    "outcome_conditioned",
    "residual_spans",
    "residuals",
    "texts_sha256",
]
