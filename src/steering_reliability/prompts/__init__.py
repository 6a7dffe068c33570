"""Prompt sets: the schema, a strict loader, a template generator with a real distribution
shift, a leakage check, and ingest of public sets' layouts."""

from __future__ import annotations

from steering_reliability.atomic import file_sha256
from steering_reliability.prompts.generate import SPLITS, generate_sets, generate_split, make_sets
from steering_reliability.prompts.ingest import ingest, ingest_file
from steering_reliability.prompts.io import (
    check_prompt_lengths,
    dumps_prompts,
    load_prompts,
    write_prompts,
)
from steering_reliability.prompts.leakage import (
    JACCARD_THRESHOLD,
    LeakagePair,
    format_report,
    leakage_report,
)
from steering_reliability.prompts.schema import FrozenMeta, Prompt

__all__ = [
    "JACCARD_THRESHOLD",
    "SPLITS",
    "FrozenMeta",
    "LeakagePair",
    "Prompt",
    "check_prompt_lengths",
    "dumps_prompts",
    "file_sha256",
    "format_report",
    "generate_sets",
    "generate_split",
    "ingest",
    "ingest_file",
    "leakage_report",
    "load_prompts",
    "make_sets",
    "write_prompts",
]
