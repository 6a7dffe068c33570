"""The one row schema of results.parquet (DESIGN.md), shared by writer, compaction and report.

One row per (run, experiment, case, prompt, split, layer, hook point, intervention, alpha,
direction variant, seed). Rows that are not about one prompt (e.g. a sanity check's cosine)
use prompt_id "" and carry their numbers in `value` / `extra_json`.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Mapping
from typing import Any

import pyarrow as pa

# Order matters: it is the column order of every part file and of results.parquet.
ROW_SCHEMA: pa.Schema = pa.schema(
    [
        ("run_id", pa.string()),
        ("config_hash", pa.string()),
        ("experiment", pa.string()),  # "sweep", "baseline", "sanity:<name>", ...
        ("case_id", pa.string()),  # layer{L}-{intervention}-a{alpha}, or "baseline"
        ("model", pa.string()),
        ("split", pa.string()),  # harm_train | harm_test | benign | "" for non-prompt rows
        ("part", pa.string()),  # select | report (VALIDITY.md section 1) | "" for non-prompt rows
        ("prompt_id", pa.string()),
        ("family", pa.string()),
        ("style", pa.string()),
        ("template", pa.string()),
        ("layer", pa.int64()),  # -1 when no layer applies (baseline)
        ("hook_point", pa.string()),
        ("position", pa.string()),
        ("intervention", pa.string()),  # none | add | ablate | ...
        ("alpha", pa.float64()),
        ("alpha_scale", pa.string()),
        ("direction_method", pa.string()),
        ("direction_variant", pa.string()),  # "main", "alt_template", "random", "seed1", ...
        ("seed", pa.int64()),
        ("prompt", pa.string()),
        ("completion", pa.string()),
        ("n_tokens", pa.int64()),  # generated tokens, counting the EOS token where one ended it
        ("refusal_score", pa.float64()),
        ("is_refusal", pa.bool_()),
        ("matched_phrases", pa.list_(pa.string())),
        ("helpfulness_score", pa.float64()),
        ("is_helpful", pa.bool_()),
        ("mean_entropy", pa.float64()),
        ("mean_logprob", pa.float64()),
        ("distinct_2", pa.float64()),
        ("repeated_ngram_frac", pa.float64()),
        ("collapsed", pa.bool_()),
        ("first_token_refusal_prob", pa.float64()),
        ("kl_to_baseline", pa.float64()),
        ("ce_on_baseline", pa.float64()),
        ("proj_before", pa.float64()),
        ("proj_after", pa.float64()),
        # the behaviour the row measures (refusal, toxicity, ...; null in parts written before
        # behaviours existed = refusal) and its scorer's score, flag and evidence (for refusal:
        # refusal_score, is_refusal and matched_phrases again)
        ("behaviour", pa.string()),
        ("behaviour_score", pa.float64()),
        ("behaviour_flag", pa.bool_()),
        ("behaviour_evidence", pa.list_(pa.string())),
        ("value", pa.float64()),  # a sanity row's headline number
        ("passed", pa.bool_()),  # True/False for a passed/failed sanity check, else null
        ("verdict", pa.string()),  # a sanity row's: passed | failed | inconclusive ("" otherwise)
        ("extra_json", pa.string()),  # anything else, as canonical JSON
    ]
)

COLUMNS: tuple[str, ...] = tuple(ROW_SCHEMA.names)

# The row key: two rows with the same key describe the same measurement.
ROW_KEY: tuple[str, ...] = (
    "run_id",
    "experiment",
    "case_id",
    "split",
    "prompt_id",
    "layer",
    "hook_point",
    "intervention",
    "alpha",
    "direction_variant",
    "seed",
)


def _plain(name: str, value: Any) -> Any:
    """One value as a plain Python type (numpy / torch scalars too; a list as a list of str)."""
    if isinstance(value, (list, tuple)):
        return [str(v) for v in value]
    if callable(getattr(value, "item", None)):
        with contextlib.suppress(ValueError):  # an array of several elements is refused below
            value = value.item()  # a numpy / torch scalar
    for kind in (bool, str, int, float):  # bool first: it is an int
        if isinstance(value, kind):
            return kind(value)
    if value is not None:
        kind_name = type(value).__name__
        raise TypeError(f"row field {name!r}: value {value!r} of type {kind_name} is not plain")
    return None


def normalize_row(row: Mapping[str, Any]) -> dict[str, Any]:
    """Return a row with every schema column (missing or NaN -> None), plain Python values
    only. Unknown keys are an error (a typo would otherwise silently drop a column)."""
    unknown = sorted(set(row) - set(COLUMNS))
    if unknown:
        raise KeyError(f"unknown row fields {unknown}; the schema's columns are {list(COLUMNS)}")
    out = {name: _plain(name, row.get(name)) for name in COLUMNS}
    return {k: None if isinstance(v, float) and math.isnan(v) else v for k, v in out.items()}


def rows_to_table(rows: list[Mapping[str, Any]]) -> pa.Table:
    """Rows -> a pyarrow Table with exactly ROW_SCHEMA (never inferred)."""
    normalized = [normalize_row(r) for r in rows]
    columns = {name: [r[name] for r in normalized] for name in COLUMNS}
    return pa.Table.from_pydict(columns, schema=ROW_SCHEMA)
