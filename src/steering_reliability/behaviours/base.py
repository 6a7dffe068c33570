"""The behaviour unit, its score, its contrastive pairs, and the registry of behaviours."""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from steering_reliability.errors import ConfigError, InputError, suggest

# The roles of a behaviour's prompt sets: the set its direction is learned on (in distribution),
# a shifted set (other style, template and topic), and a benign control set (the cost).
ROLES: tuple[str, ...] = ("learn", "shifted", "control")
RECIPES: tuple[str, ...] = ("contrastive_pairs", "contrastive_prefix", "diff_in_means")
_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
# pytest markers the suite uses already: a behaviour of such a name would change what they select
RESERVED = ("experiment", "sanity", "slow", "refusal_direction", "generalisation", "skip",
            "skipif", "xfail", "parametrize", "usefixtures", "filterwarnings")  # fmt: skip


@dataclass(frozen=True)
class Score:
    """A scorer's verdict on one text: a score in [0, 1], the flag, and what it rests on."""

    score: float
    flag: bool
    evidence: tuple[str, ...] = ()


class Scorer(Protocol):
    """texts -> one Score each; `threshold` turns a score into the flag."""

    def __call__(self, texts: Sequence[str], threshold: float) -> list[Score]: ...


@dataclass(frozen=True)
class Labels:
    """The words a report uses for the behaviour (e.g. "toxicity", "toxic", "detoxify")."""

    noun: str  # "toxicity": section titles, axis labels
    flag: str  # "toxic": what a flagged text is
    roles: Mapping[str, str] = field(
        default_factory=lambda: {
            "learn": "direction set",
            "shifted": "shifted set",
            "control": "benign control",
        }
    )


@dataclass(frozen=True)
class Pair:
    """One contrastive pair: a request with the behaviour's continuation and its opposite."""

    id: str
    prompt: str
    positive: str  # shows the behaviour (e.g. a toxic reply)
    negative: str  # does not (a civil reply to the same request)
    template: str  # which continuation wording it uses (pair template robustness)


@dataclass(frozen=True)
class Behaviour:
    """What is steered, on which prompts, with which direction recipe, scored how.

    splits: role -> split name (the rows' `split` column); files: split name -> the default
    prompt file, plus "pairs" -> the contrastive pairs file for `contrastive_pairs`. A config's
    `behaviours.<name>.files` may point any of them elsewhere. scorers: name -> a factory of
    the scorer (the first is the default; a factory may raise a ConfigError that says what is
    missing, e.g. weights that are not on this machine).
    """

    name: str
    description: str
    splits: Mapping[str, str]
    files: Mapping[str, Path]
    recipe: str
    scorers: Mapping[str, Callable[[], Scorer]]
    labels: Labels
    # contrastive_prefix: every learn prompt + (positive prefix, negative prefix)
    prefixes: tuple[str, str] | None = None
    # (scorer, threshold) -> the scorer's accuracy on a labelled set ({"accuracy", "n", ...}),
    # recorded in run.json and shown in the report; None: no labelled set
    calibrate: Callable[[Scorer, float], dict[str, object]] | None = None
    # other files its results depend on (e.g. the calibration set): part of a run's inputs
    extra_inputs: tuple[Path, ...] = ()

    def __post_init__(self) -> None:
        where = f"behaviour {self.name!r}"
        if self.name in RESERVED:
            raise InputError(f"{where}: the name is a pytest marker the suite uses already",
                             field="name", value=self.name,
                             expected=f"a name other than {list(RESERVED)}")  # fmt: skip
        if not _NAME.match(self.name):
            raise InputError(f"{where}: bad name", field="name", value=self.name,
                             expected="lower-case letters, digits and _ (a pytest marker)")  # fmt: skip
        if tuple(self.splits) != ROLES:
            raise InputError(f"{where}: its splits must name every role, in order",
                             field="splits", value=list(self.splits), expected=str(list(ROLES)))  # fmt: skip
        if self.recipe not in RECIPES:
            raise InputError(f"{where}: unknown direction recipe", field="recipe",
                             value=self.recipe, expected=f"one of {list(RECIPES)}")  # fmt: skip
        needed = [*self.splits.values(), *(["pairs"] if self.recipe == "contrastive_pairs" else [])]
        missing = [s for s in needed if s not in self.files]
        if missing:
            raise InputError(f"{where}: no default file for {missing}", field="files",
                             value=sorted(self.files), expected=f"files for {needed}")  # fmt: skip
        if (self.recipe == "contrastive_prefix") != (self.prefixes is not None):
            raise InputError(f"{where}: prefixes go with the contrastive_prefix recipe only",
                             field="prefixes", value=self.prefixes)  # fmt: skip
        if not self.scorers:
            raise InputError(f"{where}: no scorer", field="scorers", expected="at least one")

    def split(self, role: str) -> str:
        return self.splits[role]

    @property
    def split_names(self) -> tuple[str, ...]:
        return tuple(self.splits.values())

    def scorer(self, name: str | None = None) -> Scorer:
        """The named scorer (None: the default), built now; its own errors say what is missing."""
        chosen = name or next(iter(self.scorers))
        if chosen not in self.scorers:
            raise ConfigError("unknown scorer", field=f"behaviours.{self.name}.scorer",
                              value=chosen, expected=f"one of {list(self.scorers)}",
                              hint=suggest(chosen, tuple(self.scorers)))  # fmt: skip
        return self.scorers[chosen]()


# ---------------------------------------------------------------- registry

_REGISTRY: dict[str, Behaviour] = {}


def register(behaviour: Behaviour, *, replace: bool = False) -> Behaviour:
    """Make a behaviour known by its name (an error if the name is taken, unless `replace`)."""
    if behaviour.name in _REGISTRY and not replace and _REGISTRY[behaviour.name] != behaviour:
        raise InputError("a behaviour of this name is registered already",
                         field="name", value=behaviour.name)  # fmt: skip
    _REGISTRY[behaviour.name] = behaviour
    return behaviour


def unregister(name: str) -> None:
    _REGISTRY.pop(name, None)


def registered() -> dict[str, Behaviour]:
    return dict(_REGISTRY)


def names() -> tuple[str, ...]:
    return tuple(registered())


def get(name: str) -> Behaviour:
    known = registered()
    if name not in known:
        raise ConfigError("unknown behaviour", field="behaviours", value=name,
                          expected=f"one of {sorted(known)}",
                          hint=suggest(name, tuple(known)))  # fmt: skip
    return known[name]


# ---------------------------------------------------------------- pairs file

_PAIR_KEYS = ("id", "prompt", "positive", "negative", "template")


def load_pairs(path: str | Path) -> tuple[Pair, ...]:
    """A JSONL file of contrastive pairs, one object per line with the keys of `Pair`; every
    problem names the file, line, field and value."""
    path = Path(path)
    if not path.is_file():
        raise InputError("pairs file not found", file=str(path),
                         expected=f"a JSONL file with keys {list(_PAIR_KEYS)}")  # fmt: skip
    out: list[Pair] = []
    seen: set[str] = set()
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:
            raise InputError(f"not valid JSON: {exc.msg}", file=str(path), line=n) from None
        if not isinstance(obj, dict):
            raise InputError("expected a JSON object", file=str(path), line=n, value=obj)
        for key in _PAIR_KEYS:
            value = obj.get(key)
            if not isinstance(value, str) or not value.strip():
                raise InputError("missing or empty field", file=str(path), line=n, field=key,
                                 value=value, expected="a non-empty string")  # fmt: skip
        unknown = sorted(set(obj) - set(_PAIR_KEYS))
        if unknown:
            raise InputError("unknown field", file=str(path), line=n, field=unknown[0],
                             expected=f"only {list(_PAIR_KEYS)}")  # fmt: skip
        if obj["id"] in seen:
            raise InputError("duplicate id", file=str(path), line=n, field="id", value=obj["id"])
        seen.add(obj["id"])
        out.append(Pair(**{k: obj[k] for k in _PAIR_KEYS}))
    if not out:
        raise InputError("no pairs in the file", file=str(path), expected="at least one pair")
    return tuple(out)
