"""Behaviours as units: what is steered, on which prompts, with which direction, scored how.

A `Behaviour` names its prompt sets by role (the set the direction is learned on, a shifted set,
a benign control set), its direction recipe (contrastive pairs, contrastive prefixes or a
difference in means), its scorer (texts -> `Score`s) and the words its report uses. Refusal is
one behaviour (its experiments are experiments/test_sweep.py and the pipelines beside it);
every other registered behaviour that a config lists under `behaviours:` runs through the
generic behaviour experiment (experiments/test_behaviours.py) and the report's behaviour section.

A new behaviour is a definition and its data: build a `Behaviour` and `register` it (in a module
imported before the config is read, e.g. a conftest.py); nothing else changes.
"""

from __future__ import annotations

# The built-in behaviours: each module registers itself when imported.
from steering_reliability.behaviours import refusal, toxicity  # noqa: F401
from steering_reliability.behaviours.base import (
    ROLES,
    Behaviour,
    Labels,
    Pair,
    Score,
    Scorer,
    get,
    load_pairs,
    names,
    register,
    registered,
    unregister,
)

__all__ = [
    "ROLES",
    "Behaviour",
    "Labels",
    "Pair",
    "Score",
    "Scorer",
    "get",
    "load_pairs",
    "names",
    "register",
    "registered",
    "unregister",
]
