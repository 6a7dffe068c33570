"""Load and validate a run's `results.parquet` and `run.json` for the report.

The report reads these two files only; anything it cannot use is a `ReportInputError` that
names the file, what is missing and how to fix it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from steering_reliability.errors import InputError
from steering_reliability.prompts.generate import SPLITS as SPLITS  # one home: the prompt sets
from steering_reliability.records.schema import COLUMNS

BASELINE = "baseline"
SWEEP = "sweep"
SANITY_PREFIX = "sanity:"
PARTS: tuple[str, ...] = ("select", "report")

# Without these the summary, figures and examples cannot be computed.
REQUIRED_COLUMNS: tuple[str, ...] = (
    "experiment",
    "case_id",
    "split",
    "prompt_id",
    "layer",
    "intervention",
    "alpha",
    "prompt",
    "completion",
    "n_tokens",
    "refusal_score",
    "is_refusal",
    "helpfulness_score",
    "is_helpful",
    "mean_entropy",
    "collapsed",
)
# Flags and numbers read as floats (null -> NaN) so rates and means skip missing values.
_NUMERIC = (
    "alpha",
    "n_tokens",
    "refusal_score",
    "is_refusal",
    "helpfulness_score",
    "is_helpful",
    "mean_entropy",
    "mean_logprob",
    "collapsed",
    "kl_to_baseline",
    "ce_on_baseline",
    "value",
    "proj_before",
    "proj_after",
)
_TEXT = ("experiment", "case_id", "split", "part", "prompt_id", "family", "style", "intervention",
         "verdict")  # fmt: skip


class ReportInputError(InputError):
    """A run directory whose results cannot be rendered (missing file, columns or rows)."""


def load_results(path: str | Path) -> pd.DataFrame:
    """Read results.parquet into a DataFrame with every schema column and plain dtypes."""
    path = Path(path)
    if not path.is_file():
        raise ReportInputError(
            "results file not found",
            file=str(path),
            hint="run the experiments first (make experiments), or pass the run directory",
        )
    try:
        table = pq.read_table(path)
    except Exception as exc:  # pyarrow raises several types for a corrupt file
        raise ReportInputError(
            f"cannot read parquet: {exc}", file=str(path), hint="re-run the experiments"
        ) from exc
    return prepare(table.to_pandas(), source=str(path))


def prepare(frame: pd.DataFrame, *, source: str = "<results>") -> pd.DataFrame:
    """Validate columns and rows, add absent optional columns as nulls, normalise dtypes."""
    missing = [c for c in REQUIRED_COLUMNS if c not in frame.columns]
    if missing:
        raise ReportInputError(
            f"results are missing required column(s): {', '.join(missing)}",
            file=source,
            expected=f"the columns of records.schema.ROW_SCHEMA (required: {list(REQUIRED_COLUMNS)})",
            hint="write rows with records.schema.rows_to_table so every column is present",
        )
    if frame.empty:
        raise ReportInputError(
            "results have no rows", file=source, hint="no case recorded any row; check the run log"
        )
    df = frame.copy()
    for name in COLUMNS:
        if name not in df.columns:
            df[name] = None
    for name in _NUMERIC:
        df[name] = pd.to_numeric(df[name].astype("object"), errors="coerce").astype("float64")
    for name in _TEXT:
        df[name] = df[name].astype("object").where(df[name].notna(), "").astype(str)
    df["layer"] = pd.to_numeric(df["layer"], errors="coerce").fillna(-1).astype("int64")
    df["matched_phrases"] = df["matched_phrases"].map(_phrases)
    return df


def _phrases(value: Any) -> tuple[str, ...]:
    """A list-like cell of matched phrases as a tuple of strings (null -> empty)."""
    if value is None or isinstance(value, float):
        return ()
    if isinstance(value, str):
        return (value,)
    return tuple(str(v) for v in value)


def check_rows(df: pd.DataFrame, *, source: str = "<results>") -> None:
    """The report needs baseline rows and steered sweep rows; say which are absent."""
    found = sorted(set(df["experiment"]))
    for name, what in ((BASELINE, "unsteered baseline"), (SWEEP, "steered sweep")):
        if not (df["experiment"] == name).any():
            raise ReportInputError(
                f"results have no {what} rows (experiment == {name!r})",
                file=source,
                field="experiment",
                value=found,
                hint="run the sweep experiment (test_baseline records the baseline once per "
                "split: `pytest experiments -k baseline` adds it to a run)",
            )


def load_run_info(path: str | Path) -> dict[str, Any]:
    """Read run.json; an absent file gives {} (the report then says so), a corrupt one errors."""
    path = Path(path)
    if not path.is_file():
        return {}
    try:
        info = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise ReportInputError(f"cannot read run.json: {exc}", file=str(path)) from exc
    if not isinstance(info, dict):
        raise ReportInputError(
            "run.json is not a JSON object", file=str(path), value=type(info).__name__
        )
    return info


def lookup(info: Mapping[str, Any], dotted: str, default: Any = None) -> Any:
    """`info["a"]["b"]` for "a.b", also accepting a flat "a.b" key, under "config" or not."""
    for root in (info, info.get("config"), info.get("resolved_config")):
        if not isinstance(root, Mapping):
            continue
        if dotted in root:
            return root[dotted]
        node: Any = root
        for part in dotted.split("."):
            if not isinstance(node, Mapping) or part not in node:
                break
            node = node[part]
        else:
            return node
    return default
