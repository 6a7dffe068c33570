"""The studies: each a folder with its library code and its report section, found here.

A study is registered by name with the pytest marker its cases carry and the module of its
report section (`report_section(df, info, source) -> Section | None`), named as a string so
that pytest's start-up imports no report code. The report renders the sections in this order;
the first with `lead` opens findings.md. To add a study: its folder under studies/, one
`Study(...)` line below, and its test module experiments/test_<name>.py.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class Study:
    """One study: its name, the marker of its cases (None: no cases of its own), what it
    answers, the module holding its report section (None: nothing in the run's report), and
    the check of its inputs."""

    name: str
    marker: str | None
    description: str
    report: str | None = None
    # "module:function": checks the study's inputs from the config before any model loads,
    # raising a SteeringReliabilityError that names the file, field and value
    check: str | None = None


_STUDIES: dict[str, Study] = {}


def register(study: Study) -> Study:
    """Add a study (or replace the one of that name); returns it."""
    _STUDIES[study.name] = study
    return study


def registered() -> tuple[Study, ...]:
    """Every study, in report order."""
    return tuple(_STUDIES.values())


def check_inputs(cfg: Any) -> None:
    """Every study's check of its inputs (the files its config section names)."""
    for study in registered():
        if study.check is not None:
            module, _, function = study.check.partition(":")
            getattr(importlib.import_module(module), function)(cfg)


register(Study("sweep", "sweep", "the steering sweep: layer x intervention x alpha on every split (experiments/test_sweep.py, test_sanity.py)", "steering_reliability.studies.sweep.report"))  # fmt: skip
register(Study("refusal_direction", "refusal_direction", "the refusal-direction pipeline of Arditi et al. (experiments/test_refusal_direction.py)", "steering_reliability.studies.refusal_direction.report", "steering_reliability.studies.refusal_direction.pipeline:check_inputs"))  # fmt: skip
register(Study("generalisation", "generalisation", "the generalisation map: per-family directions, transfer, geometry, steerability, equal KL (experiments/test_generalisation.py)", "steering_reliability.studies.generalisation.report"))  # fmt: skip
register(Study("behaviours", None, "behaviours beside refusal, each marked with its name, e.g. -m toxicity (experiments/test_behaviours.py)", "steering_reliability.studies.behaviours.report", "steering_reliability.studies.behaviours.run:check_files"))  # fmt: skip
register(Study("organism", None, "the refusing model organism: built by make organism, used as a model name"))  # fmt: skip
