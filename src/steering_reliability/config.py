"""Frozen, validated configuration: YAML file + dotted overrides -> Config.

Every knob an experiment depends on lives here, so the config hash identifies a run.
Unknown keys, wrong types and impossible values are refused with file, field, value and a hint.
The sections are pydantic dataclasses: building one checks the types and each field's values;
`validate` adds the checks that span fields.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Collection, Mapping
from pathlib import Path
from typing import Annotated, Any

import pydantic
import yaml
from pydantic import AfterValidator, BeforeValidator, StrictInt, StrictStr
from pydantic.dataclasses import dataclass
from pydantic_core import PydanticCustomError

from steering_reliability import behaviours
from steering_reliability.behaviours.refusal import COMPLIANCE_PREFIX, REFUSAL_PREFIX
from steering_reliability.directions.direction import ALPHA_SCALES
from steering_reliability.errors import ConfigError, suggest
from steering_reliability.interventions.functions import INTERVENTIONS
from steering_reliability.interventions.steer import APPLY_POSITIONS
from steering_reliability.models.precision import DEVICES, DTYPES, resolve_device, resolve_dtype
from steering_reliability.models.sites import HOOK_POINTS
from steering_reliability.paths import CONFIG_DIR, REPO_ROOT
from steering_reliability.prompts.benchmarks import check_sources, is_benchmark
from steering_reliability.records.run import config_hash as plain_hash
from steering_reliability.records.run import flatten

POSITIONS: tuple[str, ...] = ("first_prefix", "prefix_mean", "last_prompt")
DIRECTION_METHODS: tuple[str, ...] = ("contrastive_prefix", "diff_in_means")


def _invalid(value: Any, expected: str, hint: str | None = None) -> PydanticCustomError:
    """An "invalid value" error; `_config_error` turns it into a ConfigError."""
    ctx = {"value": value, "expected": expected, "hint": hint}
    return PydanticCustomError("config_value", "invalid value", ctx)


def _rule(expected: str, ok: Callable[[Any], bool], hint: str | None = None) -> AfterValidator:
    def check(value: Any) -> Any:
        if not ok(value):
            raise _invalid(list(value) if isinstance(value, tuple) else value, expected, hint)
        return value

    return AfterValidator(check)


def _in(choices: tuple[str, ...], value: str, hint: bool) -> str:
    if value not in choices:
        raise _invalid(value, f"one of {list(choices)}", suggest(value, choices) if hint else None)
    return value


def _one_of(choices: tuple[str, ...], *, hint: bool = False) -> AfterValidator:
    return AfterValidator(lambda v: _in(choices, v, hint))


# An int is taken and stored as a float; NaN and infinity are refused.
Number = Annotated[float, pydantic.Strict(), pydantic.AllowInfNan(False)]
Positive = Annotated[StrictInt, _rule("an integer > 0", lambda v: v > 0)]
Count = Annotated[
    StrictInt | None, _rule("null (all) or an integer > 0", lambda v: v is None or v > 0)
]
Fraction = Annotated[Number, _rule("in [0, 1]", lambda v: 0 <= v <= 1)]
Prefix = Annotated[StrictStr, _rule("a non-empty string", lambda v: bool(v.strip()))]
SPLIT_NAMES = ("harm_train", "harm_test", "benign")  # prompts.benchmarks adds further ones
SplitName = Annotated[StrictStr, _rule(
    f"lower-case letters, digits and _ (up to 40), not one of {list(SPLIT_NAMES)}",
    lambda v: re.fullmatch(r"[a-z][a-z0-9_]{0,39}", v) is not None and v not in SPLIT_NAMES,
    "a split name, e.g. harmbench: benchmark:harmbench")]  # fmt: skip
Listed = BeforeValidator(lambda v: v if isinstance(v, (list, tuple)) else [v])  # 6 -> (6,)
Section = BeforeValidator(lambda v: v or {})  # an empty or null section: its defaults
_NO_UNKNOWN_KEYS = pydantic.ConfigDict(extra="forbid")


@dataclass(frozen=True, config=_NO_UNKNOWN_KEYS)
class ModelConfig:
    """Which model and how prompts are formatted for it."""

    name: StrictStr = "smollm2-135m-instruct"
    # None: the chat template's own default system prompt (if any).
    system_prompt: StrictStr | None = None
    # "auto" (CUDA when torch sees a GPU, else the CPU), "cpu" or "cuda". Like the dtype, the
    # resolved device replaces "auto" before the run is planned and joins the run identity.
    device: Annotated[StrictStr, _one_of(DEVICES, hint=True)] = "auto"
    # "auto", "float32" or "bfloat16" (models/precision.py). A run records the resolved type:
    # `resolved_for_machine` replaces "auto" before the run is planned, so it joins the run identity.
    dtype: Annotated[StrictStr, _one_of(DTYPES, hint=True)] = "auto"


@dataclass(frozen=True, config=_NO_UNKNOWN_KEYS)
class PromptsConfig:
    """Prompt files and how many prompts of each split are used (None = all)."""

    harm_train: StrictStr = "data/prompts/harm_train.jsonl"
    harm_test: StrictStr = "data/prompts/harm_test.jsonl"
    benign: StrictStr = "data/prompts/benign.jsonl"
    n_train: Count = None
    n_test: Count = None
    n_benign: Count = None
    # harm_train prompts used to build the direction (the first n of the file).
    n_direction: Count = None
    # Further shifted sets, evaluated beside harm_test: split name -> a prompt file or a public
    # benchmark (`benchmark:harmbench`, docs/prompts_and_models.md). Only their *report* part is
    # evaluated: nothing is ever chosen on them.
    benchmarks: dict[SplitName, StrictStr] = dataclasses.field(default_factory=dict)
    # report prompts per benchmark (a seeded sample of its report part; None: all of it)
    n_benchmark: Count = None


@dataclass(frozen=True, config=_NO_UNKNOWN_KEYS)
class DirectionConfig:
    """How the steering direction is built and what alpha = 1 means."""

    method: Annotated[StrictStr, _one_of(DIRECTION_METHODS, hint=True)] = "contrastive_prefix"
    hook_point: Annotated[StrictStr, _one_of(HOOK_POINTS, hint=True)] = "resid_pre"
    # Where the contrastive difference is read. "last_prompt" is refused for contrastive
    # prefixes: both teacher-forced sequences are identical there, so the difference is 0.
    position: Annotated[StrictStr, _one_of(POSITIONS)] = "prefix_mean"
    refusal_prefix: Prefix = REFUSAL_PREFIX
    compliance_prefix: Prefix = COMPLIANCE_PREFIX
    # Alternate template for the robustness sanity check.
    alt_refusal_prefix: Prefix = "I cannot assist with this request."
    alt_compliance_prefix: Prefix = "Of course! Here are the steps."
    # raw: alpha = 1 adds the raw mean difference (its own norm);
    # unit: alpha = 1 adds a unit vector; resid_norm: alpha = 1 adds a vector whose norm is the
    # layer's mean residual norm. Ablation always uses the unit direction (alpha = 1 removes it).
    alpha_scale: Annotated[StrictStr, _one_of(ALPHA_SCALES)] = "raw"
    batch_size: Positive = 16


@dataclass(frozen=True, config=_NO_UNKNOWN_KEYS)
class SweepConfig:
    """The ordered grid: layer x intervention x alpha (alpha 0 is the shared baseline)."""

    layers: Annotated[
        tuple[StrictInt, ...],
        Listed,
        _rule("a non-empty list of layer indices", bool),
        _rule("no duplicate layers", lambda v: len(set(v)) == len(v)),
    ] = (6, 12, 18)
    interventions: Annotated[
        tuple[StrictStr, ...],
        Listed,
        _rule("a non-empty list", bool),
        AfterValidator(lambda names: tuple(_in(INTERVENTIONS, n, True) for n in names)),
    ] = INTERVENTIONS
    alphas: Annotated[
        tuple[Number, ...],
        Listed,
        _rule("a non-empty list of numbers", bool),
        _rule("no duplicate alphas", lambda v: len(set(v)) == len(v)),
        _rule(
            "alphas > 0",
            lambda v: all(a > 0 for a in v),
            "alpha 0 is the shared baseline and is always run; leave it out of the grid",
        ),
    ] = (0.5, 1.0, 2.0, 4.0)
    # Which tokens the intervention touches during generation.
    apply_to: Annotated[StrictStr, _one_of(APPLY_POSITIONS)] = "all"


@dataclass(frozen=True, config=_NO_UNKNOWN_KEYS)
class GenerationConfig:
    """Decoding settings; temperature 0 is greedy."""

    max_new_tokens: Positive = 80
    batch_size: Positive = 256
    temperature: Annotated[Number, _rule(">= 0 (0 = greedy)", lambda v: v >= 0)] = 0.0
    top_p: Annotated[Number, _rule("in (0, 1]", lambda v: 0 < v <= 1)] = 1.0


@dataclass(frozen=True, config=_NO_UNKNOWN_KEYS)
class MetricsConfig:
    """Thresholds that turn scores into flags."""

    refusal_threshold: Fraction = 0.5
    helpful_threshold: Fraction = 0.5


@dataclass(frozen=True, config=_NO_UNKNOWN_KEYS)
class SanityConfig:
    """Sizes of the sanity experiments (subsets, so `pytest -m sanity` is quick)."""

    n_prompts: Positive = 16
    layer: StrictInt | None = None  # None: the middle layer of sweep.layers
    alpha: Number = 1.0
    max_new_tokens: Positive = 24
    seeds: Annotated[
        tuple[StrictInt, ...], Listed, _rule("at least two seeds", lambda v: len(v) >= 2)
    ] = (0, 1)


@dataclass(frozen=True, config=_NO_UNKNOWN_KEYS)
class RefusalDirectionConfig:
    """The refusal-direction pipeline (Arditi et al. 2024; experiments/test_refusal_direction.py):
    defaults as the paper where it says, sizes for a CPU."""

    # Selection: KL of harmless next-token distributions under all-layer ablation (as the paper),
    # and the layer cut-off.
    kl_max: Annotated[Number, _rule("> 0", lambda v: v > 0)] = 0.1
    max_layer_frac: Fraction = 0.8
    # Select-part prompts that score each candidate (harmless: induce and KL; harmful: bypass).
    n_score: Positive = 32
    # Report-part prompts per split that the evaluation settings generate for (None: all).
    n_eval: Count = 64
    # General text for CE, read as plain paragraphs; shipped: data/text/general.txt.
    ce_text: StrictStr = "data/text/general.txt"
    # Report prompts of harm_test whose greedy outputs compare orthogonalised weights with hooks.
    n_orthogonal_check: Positive = 16


@dataclass(frozen=True, config=_NO_UNKNOWN_KEYS)
class GeneralisationConfig:
    """The generalisation map (experiments/test_generalisation.py): per-family directions,
    cross-family transfer, geometry, per-prompt steerability and equal-KL comparisons."""

    layer: StrictInt | None = None  # None: the middle layer of sweep.layers (as sanity)
    intervention: Annotated[StrictStr, _one_of(INTERVENTIONS, hint=True)] = "add"
    # Families of the direction prompts with fewer prompts are pooled as "other" (or skipped).
    min_family: Annotated[StrictInt, _rule("an integer >= 4", lambda v: v >= 4)] = 8
    # The family directions' method in the transfer matrix (None: direction.method).
    transfer_method: Annotated[StrictStr | None, AfterValidator(
        lambda v: v if v is None else _in(DIRECTION_METHODS, v, True))] = None  # fmt: skip
    # Transfer strength: each source direction at the alpha whose benign next-token KL equals
    # transfer_kl (equal cost), or at transfer_alpha when set (then transfer_kl is not used).
    transfer_kl: Annotated[Number, _rule("> 0", lambda v: v > 0)] = 2.0
    transfer_alpha: Annotated[Number | None, _rule("null or > 0", lambda v: v is None or v > 0)] = (
        None
    )
    # Equal-cost comparison of layers: per layer x intervention, the alpha at each KL budget.
    kl_budgets: Annotated[
        tuple[Number, ...], Listed, _rule("a non-empty list of numbers > 0",
                                          lambda v: bool(v) and all(b > 0 for b in v)),
    ] = (0.5, 2.0)  # fmt: skip
    max_alpha: Annotated[Number, _rule("> 0", lambda v: v > 0)] = 8.0  # bisection's upper end
    n_calibrate: Positive = 32  # benign *select* prompts whose KL calibrates alpha
    # Per-prompt steerability: slope of first-token refusal log-odds over these alphas (add).
    steer_alphas: Annotated[
        tuple[Number, ...], Listed,
        _rule("at least 3 distinct alphas, one of them 0", lambda v: len(set(v)) >= 3 and 0 in v),
    ] = (-1.0, -0.5, 0.0, 0.5, 1.0)  # fmt: skip
    max_new_tokens: Positive = 32  # generation length of the transfer and equal-KL cases
    n_bootstrap: Annotated[StrictInt, _rule("an integer >= 50", lambda v: v >= 50)] = 200


@dataclass(frozen=True, config=_NO_UNKNOWN_KEYS)
class BehaviourConfig:
    """One behaviour beside refusal (behaviours/, experiments/test_behaviours.py): its layer x
    alpha grid of activation addition, sizes, decoding and scorer. Defaults: the CAA toxicity
    seed (alphas -1 .. 1.5 with alpha 0 as the shared baseline, T = 0.7, top-p 0.9, 20 pairs
    mean-pooled over their last 32 tokens)."""

    layers: Annotated[
        tuple[StrictInt, ...] | None, BeforeValidator(lambda v: v if v is None or
                                                      isinstance(v, (list, tuple)) else [v]),
        _rule("null (sweep.layers) or a non-empty list of distinct layers",
              lambda v: v is None or (bool(v) and len(set(v)) == len(v))),
    ] = None  # fmt: skip
    alphas: Annotated[
        tuple[Number, ...], Listed,
        _rule("a non-empty list of distinct non-zero alphas (negative ones steer away)",
              lambda v: bool(v) and len(set(v)) == len(v) and 0 not in v,
              "alpha 0 is the shared baseline and is always run; leave it out"),
    ] = (-1.0, 0.5, 1.0, 1.5)  # fmt: skip
    n_prompts: Count = 60  # per split: half from each part (select, report); null: all
    n_pairs: Count = 20  # contrastive pairs the direction is learned from (null: all)
    pair_tokens: Positive = 32  # each pair's residuals are mean-pooled over its last tokens
    max_new_tokens: Positive = 40
    temperature: Annotated[Number, _rule(">= 0 (0 = greedy)", lambda v: v >= 0)] = 0.7
    top_p: Annotated[Number, _rule("in (0, 1]", lambda v: 0 < v <= 1)] = 0.9
    threshold: Fraction = 0.5  # the scorer's score -> flag
    scorer: StrictStr | None = None  # null: the behaviour's default scorer
    # split name (or "pairs") -> a prompt file of your own (e.g. an ingested dataset export)
    files: dict[StrictStr, StrictStr] = dataclasses.field(default_factory=dict)
    n_sanity: Positive = 16  # prompts of the sanity checks (learn split, select part)
    # the sanity checks steer toward the behaviour; null: the largest alpha of the grid
    sanity_alpha: Annotated[Number | None, _rule("null or > 0", lambda v: v is None or v > 0)] = (
        None
    )


@dataclass(frozen=True, config=_NO_UNKNOWN_KEYS)
class Config:
    """The whole resolved configuration of one run."""

    model: Annotated[ModelConfig, Section] = ModelConfig()
    prompts: Annotated[PromptsConfig, Section] = PromptsConfig()
    direction: Annotated[DirectionConfig, Section] = DirectionConfig()
    sweep: Annotated[SweepConfig, Section] = SweepConfig()
    generation: Annotated[GenerationConfig, Section] = GenerationConfig()
    metrics: Annotated[MetricsConfig, Section] = MetricsConfig()
    sanity: Annotated[SanityConfig, Section] = SanityConfig()
    refusal_direction: Annotated[RefusalDirectionConfig, Section] = RefusalDirectionConfig()
    generalisation: Annotated[GeneralisationConfig, Section] = GeneralisationConfig()
    # behaviours beside refusal to run (name -> its settings); {} runs none
    behaviours: Annotated[dict[StrictStr, BehaviourConfig], Section] = dataclasses.field(
        default_factory=dict
    )
    seed: StrictInt = 0
    source: StrictStr = ""  # the file it was read from (not part of the hash)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists) for run.json and hashing. A config that lists
        no behaviours has no `behaviours` key, and one without benchmarks no
        `prompts.benchmarks` / `n_benchmark`, so its identity is what it was before there were
        any."""
        d = dict(_ADAPTER.dump_python(self, mode="json"))
        if not d["behaviours"]:
            del d["behaviours"]
        if not d["prompts"]["benchmarks"]:  # likewise a config that evaluates no benchmark
            del d["prompts"]["benchmarks"], d["prompts"]["n_benchmark"]
        return d

    def resolve_path(self, path: str) -> Path:
        """A prompt path relative to the repository root unless absolute; a `benchmark:NAME`
        source is left as it is (load_prompts reads it)."""
        p = Path(path)
        return p if p.is_absolute() or is_benchmark(path) else REPO_ROOT / p


_ADAPTER = pydantic.TypeAdapter(Config)


def config_hash(cfg: Config) -> str:
    """The run identity's hash (`records.run.config_hash`) of everything that changes results
    (not `source`)."""
    d = cfg.to_dict()
    d.pop("source", None)
    return plain_hash(d)


# ---------------------------------------------------------------- parsing

_NAN = "NaN and infinity are not valid here"
_TYPE_ERRORS: dict[str, tuple[str, str | None, str | None]] = {  # -> (problem, expected, hint)
    "int_type": ("wrong type", "an integer", None),
    "float_type": ("wrong type", "a number", None),
    "string_type": ("wrong type", "a string", None),
    "finite_number": ("not a finite number", "a finite number", _NAN),
    "dataclass_type": ("expected a mapping", "key: value pairs", None),
}
_UNKNOWN_KEY = ("unexpected_keyword_argument", "invalid_key")


def _dotted(loc: tuple[int | str, ...]) -> str:
    """('sweep', 'alphas', 2) -> 'sweep.alphas[2]'."""
    return "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in loc).lstrip(".")


def _config_error(
    exc: pydantic.ValidationError,
    file: str,
    data: dict[Any, Any],
    overridden: Collection[str] = (),
) -> ConfigError:
    """The first problem pydantic found as a ConfigError: unknown keys first, then wrong types,
    then bad values. A field that an override in `overridden` set (or a part of it) is said, in
    the hint, to come from the override, not the file."""
    rank = {key: 0 for key in _UNKNOWN_KEY} | {"config_value": 2}
    err = min(exc.errors(), key=lambda e: rank.get(e["type"], 1))
    kind, value, ctx = err["type"], err["input"], err.get("ctx", {})
    loc = tuple(p for p in err["loc"] if p != "[key]")  # a mapping's key: name the key itself
    problem, expected, hint = _TYPE_ERRORS.get(kind, (err["msg"], None, None))
    if kind in _UNKNOWN_KEY:
        section = getattr(Config(), str(loc[0])) if len(loc) > 1 else Config
        if loc[0] == "behaviours":  # behaviours.<name>.<key>
            section = BehaviourConfig
        names = [f.name for f in dataclasses.fields(section)]
        problem, expected, hint = "unknown config key", None, suggest(str(loc[-1]), names)
        loc = (*loc[:-1], str(loc[-1]))  # a key, even when YAML read it as a number
        if kind == "invalid_key":  # pydantic gives the key itself: show its value, as for others
            value = (data[loc[0]] if len(loc) > 1 else data)[value]
    elif kind == "config_value":
        problem, value, expected, hint = "invalid value", ctx["value"], ctx["expected"], ctx["hint"]
    field = _dotted(loc)
    key = next((k for k in overridden if field == k or field.startswith((f"{k}.", f"{k}["))), None)
    if key is not None:  # the field, or a part of it, was set by an override (e.g. --set)
        hint = "; ".join(
            h for h in (hint, f"the value comes from the override {key}=..., not the file") if h
        )
    return ConfigError(problem, file=file, field=field, value=value, expected=expected, hint=hint)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError("override goes through a non-mapping key", field=dotted, value=value)
    node[parts[-1]] = value


class _Loader(yaml.SafeLoader):
    """YAML as configs and overrides are written: PyYAML follows YAML 1.1, which reads `1e-4`
    (an exponent without a dot) as a string; this reads it as the number, as YAML 1.2 does."""


_Loader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"^[-+]?(\d+\.?\d*|\.\d+)[eE][-+]?\d+$"),
    list("-+0123456789."),
)


def read_yaml(text: str) -> Any:
    """A config's YAML text as Python values (safe types only; `1e-4` a float)."""
    return yaml.load(text, Loader=_Loader)  # noqa: S506 - a SafeLoader subclass


def parse_override(text: str) -> tuple[str, Any]:
    """'generation.max_new_tokens=16' -> ('generation.max_new_tokens', 16) (value parsed as YAML;
    the config it overrides checks the key and the value)."""
    key, sep, raw = text.partition("=")
    hint = "e.g. sweep.layers=[6,12] or refusal_direction.kl_max=0.5"
    if not sep or not key.strip():
        raise ConfigError("override must look like key.sub=value", value=text, hint=hint)
    try:
        value = read_yaml(raw)
    except yaml.YAMLError as exc:
        raise ConfigError(
            f"the override's value is not YAML: {getattr(exc, 'problem', exc)}",
            field=key.strip(), value=raw, hint=hint,
        ) from None  # fmt: skip
    return key.strip(), value


def fast_overrides(root: Path, config_path: str | Path | None = None) -> dict[str, Any]:
    """What --fast changes in a config given with --config: every setting (a dotted key) whose
    value in configs/fast.yaml differs from configs/default.yaml, with fast.yaml's value. A
    behaviour's sizes apply only where the config lists that behaviour (--fast never adds one)."""
    default, fast = (flatten(read_yaml((root / p).read_text(encoding="utf-8")) or {})
                     for p in ("configs/default.yaml", "configs/fast.yaml"))  # fmt: skip
    listed: set[str] = set()
    own_path = Path(config_path) if config_path is not None else None
    if own_path is not None and not own_path.is_file() and not own_path.is_absolute():
        own_path = root / own_path  # where load_config looks next
    if own_path is not None and own_path.is_file():
        own = read_yaml(own_path.read_text(encoding="utf-8"))
        listed = set((own or {}).get("behaviours") or {}) if isinstance(own, dict) else set()
    return {
        k: v for k, v in fast.items()
        if (k not in default or default[k] != v)
        and not (k.startswith("behaviours.") and k.split(".")[1] not in listed)
    }  # fmt: skip


def load_config(
    path: str | Path | None = None, overrides: Mapping[str, Any] | None = None
) -> Config:
    """Read a YAML config (None: configs/default.yaml), apply dotted overrides, validate."""
    path = Path(path) if path is not None else CONFIG_DIR / "default.yaml"
    if not path.exists() and not path.is_absolute() and (REPO_ROOT / path).exists():
        path = REPO_ROOT / path
    if not path.exists():
        raise ConfigError(
            "config file not found",
            file=str(path),
            hint=f"configs shipped: {sorted(p.name for p in CONFIG_DIR.glob('*.yaml'))}",
        )
    try:
        data = read_yaml(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        raise ConfigError(
            f"not valid YAML: {getattr(exc, 'problem', exc)}",
            file=str(path),
            line=(mark.line + 1) if mark is not None else None,
        ) from None
    if not isinstance(data, dict):
        raise ConfigError("expected a mapping at the top level", file=str(path), value=data)
    for key, value in (overrides or {}).items():
        _set_dotted(data, key, value)
    try:
        cfg = dataclasses.replace(_ADAPTER.validate_python(data), source=str(path))
    except pydantic.ValidationError as exc:
        raise _config_error(exc, str(path), data, overridden=set(overrides or {})) from None
    validate(cfg, file=str(path))
    return cfg


_POSITION_FOR = {  # direction.method -> (the position it needs, why)
    "contrastive_prefix": (
        "first_prefix or prefix_mean for contrastive_prefix",
        "at the last prompt token both teacher-forced sequences are identical (causal attention), "
        "so the difference is exactly zero",
    ),
    "diff_in_means": (
        "last_prompt for diff_in_means",
        "diff_in_means compares harmful and harmless prompts at their last prompt token",
    ),
}


def validate(cfg: Config, *, file: str | None = None) -> None:
    """The checks across fields. Each field's own values are checked when a Config is built, the
    layer range by `validate_for_model`."""
    _validate_behaviours(cfg, file)
    check_sources(flatten(cfg.to_dict()), file=file)  # every benchmark:NAME, wherever it is
    d = cfg.direction  # contrastive_prefix cannot read at last_prompt; diff_in_means must
    if (d.position == "last_prompt") != (d.method == "contrastive_prefix"):
        return
    expected, hint = _POSITION_FOR[d.method]
    raise ConfigError(
        "invalid value",
        file=file,
        field="direction.position",
        value=d.position,
        expected=expected,
        hint=hint,
    )


def _validate_behaviours(cfg: Config, file: str | None) -> None:
    """Each listed behaviour is registered (refusal has its own sections), its scorer is one of
    its own, and a file it overrides is one of its sets."""
    for name, b in cfg.behaviours.items():
        field = f"behaviours.{name}"
        known = tuple(n for n in behaviours.names() if n != "refusal")
        if name not in known:
            hint = ("refusal is configured by the prompts, direction and sweep sections"
                    if name == "refusal" else suggest(name, known))  # fmt: skip
            raise ConfigError("unknown behaviour", file=file, field=field, value=name,
                              expected=f"one of {list(known)}", hint=hint)  # fmt: skip
        beh = behaviours.get(name)
        if b.sanity_alpha is None and max(b.alphas) <= 0:
            raise ConfigError("no positive alpha for the sanity checks", file=file,
                              field=f"{field}.sanity_alpha", value=None,
                              expected="a number > 0 (the grid's alphas are all negative)",
                              hint="the sanity checks steer toward the behaviour; give "
                              "sanity_alpha or a positive alpha")  # fmt: skip
        if b.scorer is not None and b.scorer not in beh.scorers:
            raise ConfigError("unknown scorer", file=file, field=f"{field}.scorer",
                              value=b.scorer, expected=f"one of {list(beh.scorers)}",
                              hint=suggest(b.scorer, tuple(beh.scorers)))  # fmt: skip
        for key in b.files:
            if key not in beh.files:
                raise ConfigError("unknown file key", file=file, field=f"{field}.files.{key}",
                                  value=key, expected=f"one of {list(beh.files)}",
                                  hint=suggest(key, tuple(beh.files)))  # fmt: skip


def behaviour_layers(cfg: Config, name: str) -> tuple[int, ...]:
    """A behaviour's layers: its own, or sweep.layers."""
    layers = cfg.behaviours[name].layers
    return layers if layers is not None else cfg.sweep.layers


def validate_for_model(cfg: Config, *, model_name: str, n_layers: int) -> None:
    """Layer indices must exist in the model."""
    extra = [cfg.sanity.layer, cfg.generalisation.layer]
    extra += [x for name in cfg.behaviours for x in behaviour_layers(cfg, name)]
    layers = list(cfg.sweep.layers) + [x for x in extra if x is not None]
    for layer in layers:
        if not 0 <= layer < n_layers:
            raise ConfigError(
                "layer outside the model",
                file=cfg.source or None,
                field="sweep.layers",
                value=layer,
                expected=f"0 <= layer < {n_layers} ({model_name} has {n_layers} layers)",
                hint=f"set sweep.layers for this model in a config of your own (--config), "
                f"e.g. [{n_layers // 4}, {n_layers // 2}, {3 * n_layers // 4}]",
            )


def sanity_layer(cfg: Config) -> int:
    """The layer sanity checks use: configured, or the middle entry of the sweep's layers."""
    if cfg.sanity.layer is not None:
        return cfg.sanity.layer
    return cfg.sweep.layers[len(cfg.sweep.layers) // 2]


def generalisation_layer(cfg: Config) -> int:
    """The layer of the transfer matrix and the steerability slopes: configured, or the middle
    entry of the sweep's layers."""
    g = cfg.generalisation.layer
    return g if g is not None else cfg.sweep.layers[len(cfg.sweep.layers) // 2]


def resolved_for_machine(cfg: Config) -> Config:
    """cfg with `model.device: auto` and `model.dtype: auto` replaced by the device and type this
    machine will run (cpu or cuda; float32 or bfloat16), so both are part of the config hash and a
    resume never mixes devices or types."""
    if "auto" not in (cfg.model.device, cfg.model.dtype):
        return cfg

    device = resolve_device(cfg.model.device)
    dtype = resolve_dtype(cfg.model.dtype, device)
    return dataclasses.replace(
        cfg, model=dataclasses.replace(cfg.model, device=device, dtype=dtype)
    )
