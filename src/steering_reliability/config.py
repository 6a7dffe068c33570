"""Frozen, validated configuration: YAML file + dotted overrides -> Config.

Every knob an experiment depends on lives here, so the config hash identifies a run.
Unknown keys, wrong types and impossible values are refused with file, field, value and a hint.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from .errors import ConfigError, suggest

INTERVENTIONS: tuple[str, ...] = ("add", "ablate")
HOOK_POINTS: tuple[str, ...] = ("resid_pre", "resid_post")
POSITIONS: tuple[str, ...] = ("first_prefix", "prefix_mean", "last_prompt")
APPLY_POSITIONS: tuple[str, ...] = ("all", "prompt", "generated")
ALPHA_SCALES: tuple[str, ...] = ("raw", "unit", "resid_norm")
DIRECTION_METHODS: tuple[str, ...] = ("contrastive_prefix", "diff_in_means")
DTYPES: tuple[str, ...] = ("auto", "float32", "bfloat16")

REPO_ROOT = Path(__file__).resolve().parents[2]
CONFIG_DIR = REPO_ROOT / "configs"


@dataclass(frozen=True)
class ModelConfig:
    """Which model and how prompts are formatted for it."""

    name: str = "smollm2-135m-instruct"
    # None: the chat template's own default system prompt (if any).
    system_prompt: str | None = None
    device: str = "cpu"  # "cpu", "cuda", "auto"
    # "auto", "float32" or "bfloat16" (models/precision.py). A run records the resolved type:
    # `resolved_precision` replaces "auto" before the run is planned, so it joins the run identity.
    dtype: str = "auto"


@dataclass(frozen=True)
class PromptsConfig:
    """Prompt files and how many prompts of each split are used (None = all)."""

    harm_train: str = "data/prompts/harm_train.jsonl"
    harm_test: str = "data/prompts/harm_test.jsonl"
    benign: str = "data/prompts/benign.jsonl"
    n_train: int | None = None
    n_test: int | None = None
    n_benign: int | None = None
    # harm_train prompts used to build the direction (the first n of the file).
    n_direction: int | None = None


@dataclass(frozen=True)
class DirectionConfig:
    """How the steering direction is built and what alpha = 1 means."""

    method: str = "contrastive_prefix"
    hook_point: str = "resid_pre"
    # Where the contrastive difference is read. "last_prompt" is refused for contrastive
    # prefixes: both teacher-forced sequences are identical there, so the difference is 0.
    position: str = "prefix_mean"
    refusal_prefix: str = "I'm sorry, but I can't help with that."
    compliance_prefix: str = "Sure, here is a detailed guide."
    # Alternate template for the robustness sanity check.
    alt_refusal_prefix: str = "I cannot assist with this request."
    alt_compliance_prefix: str = "Of course! Here are the steps."
    # raw: alpha = 1 adds the raw mean difference (its own norm);
    # unit: alpha = 1 adds a unit vector; resid_norm: alpha = 1 adds a vector whose norm is the
    # layer's mean residual norm. Ablation always uses the unit direction (alpha = 1 removes it).
    alpha_scale: str = "raw"
    batch_size: int = 16


@dataclass(frozen=True)
class SweepConfig:
    """The ordered grid: layer x intervention x alpha (alpha 0 is the shared baseline)."""

    layers: tuple[int, ...] = (6, 12, 18)
    interventions: tuple[str, ...] = INTERVENTIONS
    alphas: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0)
    # Which tokens the intervention touches during generation.
    apply_to: str = "all"


@dataclass(frozen=True)
class GenerationConfig:
    """Decoding settings; temperature 0 is greedy."""

    max_new_tokens: int = 80
    batch_size: int = 64
    temperature: float = 0.0
    top_p: float = 1.0


@dataclass(frozen=True)
class MetricsConfig:
    """Thresholds that turn scores into flags."""

    refusal_threshold: float = 0.5
    helpful_threshold: float = 0.5


@dataclass(frozen=True)
class SanityConfig:
    """Sizes of the sanity experiments (subsets, so `pytest -m sanity` is quick)."""

    n_prompts: int = 16
    layer: int | None = None  # None: the middle layer of sweep.layers
    alpha: float = 1.0
    max_new_tokens: int = 24
    seeds: tuple[int, ...] = (0, 1)


@dataclass(frozen=True)
class Config:
    """The whole resolved configuration of one run."""

    model: ModelConfig = field(default_factory=ModelConfig)
    prompts: PromptsConfig = field(default_factory=PromptsConfig)
    direction: DirectionConfig = field(default_factory=DirectionConfig)
    sweep: SweepConfig = field(default_factory=SweepConfig)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    sanity: SanityConfig = field(default_factory=SanityConfig)
    seed: int = 0
    source: str = ""  # the file it was read from (not part of the hash)

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict (tuples become lists) for run.json and hashing."""
        return _plain(dataclasses.asdict(self))

    def resolve_path(self, path: str) -> Path:
        """A prompt path relative to the repository root unless absolute."""
        p = Path(path)
        return p if p.is_absolute() else REPO_ROOT / p


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj


def config_hash(cfg: Config) -> str:
    """blake2b of the canonical JSON of everything that changes results (not `source`)."""
    d = cfg.to_dict()
    d.pop("source", None)
    blob = json.dumps(d, sort_keys=True, separators=(",", ":"))
    return hashlib.blake2b(blob.encode(), digest_size=8).hexdigest()


# ---------------------------------------------------------------- parsing


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _coerce(value: Any, tp: Any, where: str, file: str | None) -> Any:
    """Check/convert one YAML value against a dataclass field type."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _coerce(value, inner[0], where, file)
    if origin is tuple:
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            value = [value]
        return tuple(_coerce(v, args[0], f"{where}[{i}]", file) for i, v in enumerate(value))
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(
                "wrong type", file=file, field=where, value=value, expected="true or false"
            )
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(
                "wrong type", file=file, field=where, value=value, expected="an integer"
            )
        return value
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(
                "wrong type", file=file, field=where, value=value, expected="a number"
            )
        if not math.isfinite(float(value)):
            raise ConfigError(
                "not a finite number",
                file=file,
                field=where,
                value=value,
                expected="a finite number",
                hint="NaN and infinity are not valid here",
            )
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(
                "wrong type", file=file, field=where, value=value, expected="a string"
            )
        return value
    raise ConfigError(f"unsupported field type {_type_name(tp)}", file=file, field=where)


def _build(cls: type, data: Mapping[str, Any], prefix: str, file: str | None) -> Any:
    if not isinstance(data, Mapping):
        raise ConfigError(
            "expected a mapping",
            file=file,
            field=prefix or "<top level>",
            value=data,
            expected="key: value pairs",
        )
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    kwargs: dict[str, Any] = {}
    for key, value in data.items():
        where = f"{prefix}{key}"
        if key not in names:
            raise ConfigError(
                "unknown config key",
                file=file,
                field=where,
                value=value,
                hint=suggest(str(key), names),
            )
        tp = hints[key]
        if dataclasses.is_dataclass(tp):
            kwargs[key] = _build(tp, value or {}, f"{where}.", file)  # type: ignore[arg-type]
        else:
            kwargs[key] = _coerce(value, tp, where, file)
    return cls(**kwargs)


def _set_dotted(tree: dict[str, Any], dotted: str, value: Any) -> None:
    node = tree
    parts = dotted.split(".")
    for p in parts[:-1]:
        node = node.setdefault(p, {})
        if not isinstance(node, dict):
            raise ConfigError("override goes through a non-mapping key", field=dotted, value=value)
    node[parts[-1]] = value


def parse_override(text: str) -> tuple[str, Any]:
    """'generation.max_new_tokens=16' -> ('generation.max_new_tokens', 16) (value parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(
            "override must look like key.sub=value",
            value=text,
            hint="e.g. sweep.layers=[6,12] or generation.max_new_tokens=16",
        )
    key, raw = text.split("=", 1)
    return key.strip(), yaml.safe_load(raw)


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
        data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
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
    cfg: Config = _build(Config, data, "", str(path))
    cfg = dataclasses.replace(cfg, source=str(path))
    validate(cfg, file=str(path))
    return cfg


def _check(
    ok: bool, field_: str, value: Any, expected: str, file: str | None, hint: str | None = None
) -> None:
    if not ok:
        raise ConfigError(
            "invalid value", file=file, field=field_, value=value, expected=expected, hint=hint
        )


def validate(cfg: Config, *, file: str | None = None) -> None:
    """Value checks that need no model (layer range is checked by `validate_for_model`)."""
    s, d, g = cfg.sweep, cfg.direction, cfg.generation
    _check(
        len(s.layers) > 0, "sweep.layers", list(s.layers), "a non-empty list of layer indices", file
    )
    _check(
        len(set(s.layers)) == len(s.layers),
        "sweep.layers",
        list(s.layers),
        "no duplicate layers",
        file,
    )
    _check(len(s.alphas) > 0, "sweep.alphas", list(s.alphas), "a non-empty list of numbers", file)
    _check(
        len(set(s.alphas)) == len(s.alphas),
        "sweep.alphas",
        list(s.alphas),
        "no duplicate alphas",
        file,
    )
    _check(
        all(a > 0 for a in s.alphas),
        "sweep.alphas",
        list(s.alphas),
        "alphas > 0",
        file,
        "alpha 0 is the shared baseline and is always run; leave it out of the grid",
    )
    _check(
        len(s.interventions) > 0,
        "sweep.interventions",
        list(s.interventions),
        "a non-empty list",
        file,
    )
    for name in s.interventions:
        _check(
            name in INTERVENTIONS,
            "sweep.interventions",
            name,
            f"one of {list(INTERVENTIONS)}",
            file,
            suggest(name, INTERVENTIONS),
        )
    _check(
        s.apply_to in APPLY_POSITIONS,
        "sweep.apply_to",
        s.apply_to,
        f"one of {list(APPLY_POSITIONS)}",
        file,
    )
    _check(
        cfg.model.dtype in DTYPES,
        "model.dtype",
        cfg.model.dtype,
        f"one of {list(DTYPES)}",
        file,
        suggest(cfg.model.dtype, DTYPES),
    )
    _check(
        d.method in DIRECTION_METHODS,
        "direction.method",
        d.method,
        f"one of {list(DIRECTION_METHODS)}",
        file,
        suggest(d.method, DIRECTION_METHODS),
    )
    _check(
        d.hook_point in HOOK_POINTS,
        "direction.hook_point",
        d.hook_point,
        f"one of {list(HOOK_POINTS)}",
        file,
        suggest(d.hook_point, HOOK_POINTS),
    )
    _check(
        d.position in POSITIONS, "direction.position", d.position, f"one of {list(POSITIONS)}", file
    )
    _check(
        not (d.method == "contrastive_prefix" and d.position == "last_prompt"),
        "direction.position",
        d.position,
        "first_prefix or prefix_mean for contrastive_prefix",
        file,
        "at the last prompt token both teacher-forced sequences are identical (causal attention), "
        "so the difference is exactly zero",
    )
    _check(
        not (d.method == "diff_in_means" and d.position != "last_prompt"),
        "direction.position",
        d.position,
        "last_prompt for diff_in_means",
        file,
        "diff_in_means compares harmful and harmless prompts at their last prompt token",
    )
    _check(
        d.alpha_scale in ALPHA_SCALES,
        "direction.alpha_scale",
        d.alpha_scale,
        f"one of {list(ALPHA_SCALES)}",
        file,
    )
    for name in (
        "refusal_prefix",
        "compliance_prefix",
        "alt_refusal_prefix",
        "alt_compliance_prefix",
    ):
        _check(
            bool(getattr(d, name).strip()),
            f"direction.{name}",
            getattr(d, name),
            "a non-empty string",
            file,
        )
    _check(d.batch_size > 0, "direction.batch_size", d.batch_size, "an integer > 0", file)
    _check(
        g.max_new_tokens > 0, "generation.max_new_tokens", g.max_new_tokens, "an integer > 0", file
    )
    _check(g.batch_size > 0, "generation.batch_size", g.batch_size, "an integer > 0", file)
    _check(g.temperature >= 0, "generation.temperature", g.temperature, ">= 0 (0 = greedy)", file)
    _check(0 < g.top_p <= 1, "generation.top_p", g.top_p, "in (0, 1]", file)
    for name in ("refusal_threshold", "helpful_threshold"):
        v = getattr(cfg.metrics, name)
        _check(0 <= v <= 1, f"metrics.{name}", v, "in [0, 1]", file)
    for name in ("n_train", "n_test", "n_benign", "n_direction"):
        v = getattr(cfg.prompts, name)
        _check(v is None or v > 0, f"prompts.{name}", v, "null (all) or an integer > 0", file)
    _check(
        cfg.sanity.n_prompts > 0, "sanity.n_prompts", cfg.sanity.n_prompts, "an integer > 0", file
    )
    _check(
        cfg.sanity.max_new_tokens > 0,
        "sanity.max_new_tokens",
        cfg.sanity.max_new_tokens,
        "an integer > 0",
        file,
    )
    _check(
        len(cfg.sanity.seeds) >= 2,
        "sanity.seeds",
        list(cfg.sanity.seeds),
        "at least two seeds",
        file,
    )


def validate_for_model(cfg: Config, *, model_name: str, n_layers: int) -> None:
    """Layer indices must exist in the model."""
    layers = list(cfg.sweep.layers) + ([cfg.sanity.layer] if cfg.sanity.layer is not None else [])
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


def resolved_precision(cfg: Config) -> Config:
    """cfg with `model.dtype: auto` replaced by the type this machine will run (float32 or
    bfloat16), so the resolved type is part of the config hash and a resume never mixes types."""
    if cfg.model.dtype != "auto":
        return cfg
    from .models.precision import resolve_device, resolve_dtype

    dtype = resolve_dtype("auto", resolve_device(cfg.model.device))
    return dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, dtype=dtype))
