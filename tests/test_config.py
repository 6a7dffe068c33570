"""Config: YAML + overrides -> frozen Config; bad values refused with field, value and a hint."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest

from steering_reliability.config import (
    CONFIG_DIR,
    config_hash,
    load_config,
    parse_override,
    validate_for_model,
)
from steering_reliability.errors import ConfigError


def _write(tmp_path: Path, text: str) -> Path:
    p = tmp_path / "c.yaml"
    p.write_text(text)
    return p


def test_shipped_configs_load_and_differ() -> None:
    default = load_config(CONFIG_DIR / "default.yaml")
    fast = load_config(CONFIG_DIR / "fast.yaml")
    assert default.sweep.layers == (6, 12, 18)
    assert default.sweep.alphas == (0.5, 1.0, 2.0, 4.0)
    assert config_hash(default) != config_hash(fast)
    assert config_hash(default) == config_hash(load_config(CONFIG_DIR / "default.yaml"))


# The run identity of the shipped configs (the pydantic loader reproduced the hand-written one's
# hashes; the refusal_direction section, then generation.batch_size 64 -> 256, changed them).
# Per config: as loaded, and with model.device cpu and model.dtype float32 (what `resolved_for_machine` gives on a CPU where auto
# means float32; the run identity there, unchanged since device "cpu" was the default). A change
# here starts new runs: change the literals only with the config.
# The behaviours section (toxicity) changed them again, and the benchmarks of prompts.benchmarks.
PINNED_HASHES = [
    ("default", "b9db83011f440080", "364eea51345b1b88"),
    ("fast", "dc09bd973aee07c2", "b951997e4252f3c8"),
]


@pytest.mark.parametrize(("name", "as_loaded", "float32"), PINNED_HASHES)
def test_shipped_config_hashes_are_pinned(name: str, as_loaded: str, float32: str) -> None:
    cfg = load_config(CONFIG_DIR / f"{name}.yaml")
    model = dataclasses.replace(cfg.model, device="cpu", dtype="float32")
    resolved = dataclasses.replace(cfg, model=model)
    assert (config_hash(cfg), config_hash(resolved)) == (as_loaded, float32)
    plain = cfg.to_dict()  # plain JSON types for run.json: lists, and floats stay floats
    assert plain["sweep"]["layers"] == [6, 12, 18] and plain["generation"]["temperature"] == 0.0
    assert isinstance(plain["generation"]["temperature"], float)


def test_fast_with_a_config_is_that_config_at_fast_yaml_sizes() -> None:
    from steering_reliability.config import fast_overrides

    sizes = fast_overrides(CONFIG_DIR.parent, CONFIG_DIR / "default.yaml")
    assert "model.name" not in sizes and sizes["generation.max_new_tokens"] == 24
    # default.yaml at fast.yaml's sizes is fast.yaml (so `--fast` means the same either way)
    assert config_hash(load_config(CONFIG_DIR / "default.yaml", sizes)) == config_hash(
        load_config(CONFIG_DIR / "fast.yaml")
    )
    # a behaviour's fast sizes apply where the config lists it: --fast adds none to organism.yaml
    sizes = fast_overrides(CONFIG_DIR.parent, CONFIG_DIR / "organism.yaml")
    assert not [k for k in sizes if k.startswith("behaviours.")]
    organism, fast = (load_config(CONFIG_DIR / "organism.yaml", sizes),
                      load_config(CONFIG_DIR / "fast.yaml"))  # fmt: skip
    assert organism.model.name == "smollm2-135m-refusal" and organism.behaviours == {}
    fast = dataclasses.replace(fast, behaviours={})
    # the generalisation map bypasses the organism's refusal (ablation at alpha 1) instead of
    # inducing it; at fast.yaml's sizes like the rest
    assert (organism.generalisation.intervention, organism.generalisation.transfer_alpha) == (
        "ablate",
        1.0,
    )
    assert organism.generalisation.n_calibrate == fast.generalisation.n_calibrate
    assert dataclasses.replace(organism, model=fast.model, generalisation=fast.generalisation,
                               source="") == dataclasses.replace(fast, source="")  # fmt: skip


def test_overrides_apply_and_change_the_hash() -> None:
    base = load_config()
    over = load_config(None, {"generation.max_new_tokens": 8, "sweep.layers": [3]})
    assert over.generation.max_new_tokens == 8 and over.sweep.layers == (3,)
    assert config_hash(base) != config_hash(over)
    assert parse_override("sweep.alphas=[1, 2]") == ("sweep.alphas", [1, 2])
    assert parse_override("refusal_direction.kl_max = 0.5") == ("refusal_direction.kl_max", 0.5)
    # YAML 1.1 reads 1e-1 (no dot) as a string; an override means the number
    assert parse_override("refusal_direction.kl_max=1e-1") == ("refusal_direction.kl_max", 0.1)
    assert (
        load_config(
            None, dict([parse_override("refusal_direction.kl_max=1e-1")])
        ).refusal_direction.kl_max
        == 0.1
    )
    assert parse_override("model.name=1e-1x") == ("model.name", "1e-1x")
    for bad in ("refusal_direction.kl_max", "=0.5", "sweep.alphas=[1, 2"):
        with pytest.raises(ConfigError, match="override"):
            parse_override(bad)


@pytest.mark.parametrize(
    "override",
    [
        {"refusal_direction.kl_max": -1},
        {"sweep.alphas": ["x"]},
        {"refusal_direction": {"kl_max": -1}},
    ],
)
def test_a_bad_overridden_value_is_blamed_on_the_override(
    override: dict[str, Any], tmp_path: Path
) -> None:
    """Also where the error is inside the overridden value (a list item, a key of a section);
    the same bad value written in the file is the file's."""
    with pytest.raises(ConfigError, match="from the override") as got:
        load_config(None, override)
    assert f"the override {next(iter(override))}=..." in str(got.value)
    cfg = tmp_path / "c.yaml"
    cfg.write_text("refusal_direction:\n  kl_max: -1\nsweep:\n  alphas: [x]\n")
    with pytest.raises(ConfigError) as plain:
        load_config(cfg, {"generation.max_new_tokens": 8})
    assert "override" not in str(plain.value) and str(cfg) in str(plain.value)


@pytest.mark.parametrize(
    ("text", "field", "needle"),
    [
        ("sweep:\n  layerz: [1]\n", "sweep.layerz", "did you mean 'layers'"),
        ("sweep:\n  alphas: [.nan]\n", "sweep.alphas[0]", "finite"),
        ("sweep:\n  alphas: [.inf]\n", "sweep.alphas[0]", "finite"),
        ("sweep:\n  alphas: []\n", "sweep.alphas", "non-empty"),
        ("sweep:\n  layers: []\n", "sweep.layers", "non-empty"),
        ("sweep:\n  layers: [true]\n", "sweep.layers[0]", "an integer"),
        ("sweep:\n  layers: [6, 6]\n", "sweep.layers", "no duplicate"),
        ("sweep:\n  interventions: [abate]\n", "sweep.interventions", "did you mean 'ablate'"),
        ("direction:\n  hook_point: resid_prre\n", "direction.hook_point", "resid_pre"),
        ("direction:\n  position: last_prompt\n", "direction.position", "identical"),
        ("generation:\n  max_new_tokens: 0\n", "generation.max_new_tokens", "> 0"),
        ("generation:\n  max_new_tokens: many\n", "generation.max_new_tokens", "an integer"),
        ("sweep:\n  alphas: [0, 1]\n", "sweep.alphas", "baseline"),
    ],
)
def test_bad_values_are_refused_with_field_and_hint(
    tmp_path: Path, text: str, field: str, needle: str
) -> None:
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as err:
        load_config(path)
    msg = str(err.value)
    assert str(path) in msg and f"field: {field}" in msg and needle in msg


def test_invalid_yaml_names_the_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "sweep:\n  layers: [1, 2\n")
    with pytest.raises(ConfigError) as err:
        load_config(path)
    assert f"{path}:" in str(err.value)


def test_layer_outside_the_model_names_the_model() -> None:
    cfg = load_config(None, {"sweep.layers": [6, 30]})
    with pytest.raises(ConfigError) as err:
        validate_for_model(cfg, model_name="smollm2-135m-instruct", n_layers=30)
    assert "smollm2-135m-instruct has 30 layers" in str(err.value) and "value: 30" in str(err.value)


def test_config_is_frozen() -> None:
    cfg = load_config()
    with pytest.raises(AttributeError):
        cfg.seed = 3  # type: ignore[misc]


def test_an_embedded_model_without_the_configured_layers_stops_the_session_up_front(
    tmp_path: Path,
) -> None:
    """Gemma 3 270M has 18 layers: the default grid's layer 18 is refused before any load."""
    import subprocess
    import sys

    from steering_reliability.config import REPO_ROOT

    args = [sys.executable, "-m", "pytest", "experiments", "--model", "gemma-3-270m"]
    args += ["-p", "no:cacheprovider", "-n", "0", "--runs-dir", str(tmp_path / "runs")]
    done = subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, done.stdout + done.stderr
    assert "expected: 0 <= layer < 18 (gemma-3-270m has 18 layers)" in done.stderr
    assert "e.g. [4, 9, 13]" in done.stderr
    assert not (tmp_path / "runs").exists()  # nothing was started


def _experiments(tmp_path: Path, *extra: str) -> Any:
    import subprocess
    import sys

    from steering_reliability.config import REPO_ROOT

    args = [sys.executable, "-m", "pytest", "experiments", "-p", "no:cacheprovider", "-n", "0"]
    args += ["--runs-dir", str(tmp_path / "runs"), *extra]
    return subprocess.run(args, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120)


def _refused_once(done: Any, tmp_path: Path, needle: str) -> None:
    out = done.stdout + done.stderr
    assert done.returncode == pytest.ExitCode.USAGE_ERROR, out
    assert needle in done.stderr, out
    assert done.stderr.count("ERROR:") == 1, out  # one message, not one per case
    assert "Traceback" not in out and "Loading weights" not in out  # no model was loaded
    assert not (tmp_path / "runs").exists()  # nothing was started


def test_an_unknown_model_is_refused_once_before_any_work(tmp_path: Path) -> None:
    done = _experiments(tmp_path, "--model", "smollm3-135m")
    _refused_once(done, tmp_path, "unknown model 'smollm3-135m'")
    assert "smollm2-135m-instruct" in done.stderr  # the suggestion


def test_a_malformed_prompt_file_is_refused_once_before_any_work(tmp_path: Path) -> None:
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "prompt": "ok", "meta": {"family": "x", "style": "y"}}\n{oops\n')
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"prompts:\n  harm_test: {bad}\n")
    done = _experiments(tmp_path, "--config", str(cfg))
    _refused_once(done, tmp_path, f"{bad}:2")


def test_a_set_override_reaches_the_config_and_a_bad_one_is_refused_once(tmp_path: Path) -> None:
    """--set applies a dotted override to the config (a bad value is refused by the field it
    sets, which only the applied override can trigger); a malformed one is refused as usage."""
    done = _experiments(tmp_path, "--set", "refusal_direction.kl_max=-1")
    _refused_once(done, tmp_path, "refusal_direction.kl_max")
    assert "from the override refusal_direction.kl_max=..., not the file" in done.stderr
    done = _experiments(tmp_path, "--set", "refusal_direction.kl_max")
    _refused_once(done, tmp_path, "--set: override must look like key.sub=value")


def test_a_bad_config_value_is_refused_once_before_any_work(tmp_path: Path) -> None:
    cfg = tmp_path / "c.yaml"
    cfg.write_text("generation:\n  temperature: -1\n")
    done = _experiments(tmp_path, "--config", str(cfg))
    _refused_once(done, tmp_path, "generation.temperature")


def test_a_number_written_with_an_exponent_reads_as_a_number(tmp_path: Path) -> None:
    """YAML 1.1 (PyYAML) reads `1e-1` as a string; config files and --set read it as 0.1."""
    cfg = tmp_path / "c.yaml"
    cfg.write_text("refusal_direction:\n  kl_max: 1e-1\n  n_score: 8\n")
    assert load_config(cfg).refusal_direction.kl_max == 0.1
    assert parse_override("refusal_direction.kl_max=-2.5E+0") == ("refusal_direction.kl_max", -2.5)
