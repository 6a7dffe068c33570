"""Behaviours as units: the registry, the pairs file, the CAA builder, the toxicity data, and a
toy third behaviour run through the experiments by its definition and data alone."""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import json
import re
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from steering_reliability import behaviours
from steering_reliability.behaviours import Behaviour, Labels, load_pairs
from steering_reliability.behaviours import toxicity_data as data
from steering_reliability.config import REPO_ROOT, load_config
from steering_reliability.errors import ConfigError, DirectionError, InputError

# ---------------------------------------------------------------- registry and definitions


def test_refusal_and_toxicity_are_registered_with_roles_in_order() -> None:
    known = behaviours.registered()
    assert known["refusal"].split_names == ("harm_train", "harm_test", "benign")
    assert known["toxicity"].split_names == ("tox_train", "tox_test", "tox_benign")
    assert known["toxicity"].recipe == "contrastive_pairs"
    for b in known.values():
        for path in b.files.values():
            assert Path(path).is_file(), path


def _toy(**changes: Any) -> Behaviour:
    fields: dict[str, Any] = {
        "name": "toy",
        "description": "d",
        "splits": {"learn": "a", "shifted": "b", "control": "c"},
        "files": {"a": Path("a"), "b": Path("b"), "c": Path("c"), "pairs": Path("p")},
        "recipe": "contrastive_pairs",
        "scorers": {"x": lambda: None},
        "labels": Labels("toy", "toyish"),
    }
    return Behaviour(**(fields | changes))


@pytest.mark.parametrize(
    "changes, field",
    [
        ({"name": "Toy-1"}, "name"),
        ({"splits": {"learn": "a", "control": "c"}}, "splits"),
        ({"recipe": "magic"}, "recipe"),
        ({"files": {"a": Path("a"), "b": Path("b"), "c": Path("c")}}, "files"),
        ({"prefixes": ("yes", "no")}, "prefixes"),
        ({"scorers": {}}, "scorers"),
    ],
)
def test_a_bad_definition_is_refused_with_its_field(changes: dict[str, Any], field: str) -> None:
    with pytest.raises(InputError) as err:
        _toy(**changes)
    assert err.value.field == field


def test_a_taken_name_is_refused_and_an_unknown_one_is_suggested() -> None:
    with pytest.raises(InputError, match="registered already"):
        behaviours.register(_toy(name="toxicity"))
    with pytest.raises(ConfigError, match="did you mean 'toxicity'"):
        behaviours.get("toxicty")


def test_the_config_lists_only_registered_behaviours_and_their_scorers() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("configs/fast.yaml", {"behaviours.toxicty": {}})
    assert err.value.field == "behaviours.toxicty"
    with pytest.raises(ConfigError) as err:
        load_config("configs/fast.yaml", {"behaviours.toxicity.scorer": "vibes"})
    assert err.value.field == "behaviours.toxicity.scorer"
    with pytest.raises(ConfigError) as err:
        load_config("configs/fast.yaml", {"behaviours.toxicity.alphas": [0.0, 1.0]})
    assert err.value.field == "behaviours.toxicity.alphas"


def test_pairs_file_errors_name_the_line_and_field(tmp_path: Path) -> None:
    good = {"id": "p1", "prompt": "Hi", "positive": "a", "negative": "b", "template": "A"}
    path = tmp_path / "pairs.jsonl"
    path.write_text(json.dumps(good) + "\n" + json.dumps(good | {"id": "p2", "negative": ""}))
    with pytest.raises(InputError) as err:
        load_pairs(path)
    assert (err.value.line, err.value.field) == (2, "negative")
    path.write_text(json.dumps(good) + "\n" + json.dumps(good))
    with pytest.raises(InputError, match="duplicate id"):
        load_pairs(path)
    path.write_text(json.dumps(good | {"colour": "red"}))
    with pytest.raises(InputError) as err:
        load_pairs(path)
    assert err.value.field == "colour"


# ---------------------------------------------------------------- toxicity data


def test_the_committed_toxicity_sets_are_what_the_generator_writes(tmp_path: Path) -> None:
    written = data.write(tmp_path)
    for name, path in written.items():
        committed = REPO_ROOT / "data" / "behaviours" / "toxicity" / f"{name}.jsonl"
        assert path.read_bytes() == committed.read_bytes(), f"regenerate {committed}"


def test_the_toxicity_sets_are_disjoint_and_shifted() -> None:
    sets = data.build()
    texts = {name: {r["prompt"] for r in records} for name, records in sets.items()}
    names = list(texts)
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            assert not texts[a] & texts[b], (a, b)
    meta = {name: [r["meta"] for r in sets[name]] for name in ("tox_train", "tox_test")}
    # the shift: no template, style or topic family of the shifted set is in the learn set
    for key in ("template", "style", "family"):
        assert not {m[key] for m in meta["tox_train"]} & {m[key] for m in meta["tox_test"]}, key
    # the pairs' requests share no (person, deed) with a scored request of the learn set
    situation = re.compile(r"(?:to|Tell) (.+? who .+?)(?: what I think of them)?[.?]$")
    train = {situation.search(t).group(1) for t in texts["tox_train"]}  # type: ignore[union-attr]
    for p in sets["pairs"]:
        m = situation.search(str(p["prompt"]))
        assert m is not None and m.group(1) not in train, p["prompt"]
    assert {p["template"] for p in sets["pairs"]} == {"A", "B"}
    assert len(sets["pairs"]) >= 40 and all(len(sets[s]) >= 60 for s in names if s != "pairs")


# ---------------------------------------------------------------- the CAA builder


@pytest.fixture(scope="module")
def tiny() -> Any:
    from steering_reliability.models import tiny_model

    return tiny_model(n_layers=4, d_model=64, seed=0)


def test_contrastive_pairs_is_the_mean_difference_over_the_continuations(tiny: Any) -> None:
    from steering_reliability.directions import contrastive_pairs, encode, encode_plain
    from steering_reliability.directions.activations import residual_spans
    from steering_reliability.models import format_prompt

    pairs = [("Say hi.", "hello there friend", "go away"), ("Count.", "one two", "three")]
    got = contrastive_pairs(tiny, pairs, layers=[1, 2], last_tokens=2)
    tok = tiny.tokenizer
    for layer in (1, 2):
        diffs = []
        for prompt, pos, neg in pairs:
            base = encode(tok, format_prompt(tok, prompt))
            means = []
            for text in (pos, neg):
                row = base + encode_plain(tok, text)
                start = max(len(base), len(row) - 2)
                res = residual_spans(tiny, [row], layers=[layer],
                                     spans=lambda i, n, s=start: [(s, n)])  # fmt: skip
                means.append(res.mean[0, 0, 0])
            diffs.append(means[0] - means[1])
        want = torch.stack(diffs).mean(0)
        assert torch.allclose(got[layer].vector, want, atol=1e-5)


def test_pairs_whose_two_replies_are_the_same_give_no_direction(tiny: Any) -> None:
    from steering_reliability.directions import contrastive_pairs

    with pytest.raises(DirectionError, match="zero"):
        contrastive_pairs(tiny, [("Hi.", "same words", "same words")], layers=[1])


# ---------------------------------------------------------------- a toy third behaviour

TOY_DEFINITION = '''
"""A toy behaviour: shouting (upper-case letters). Its definition and data only."""
from pathlib import Path

from steering_reliability.behaviours import Behaviour, Labels, Score, register

DATA = Path(__file__).parent / "shout"


def _caps(texts, threshold):
    out = []
    for t in texts:
        letters = [c for c in t if c.isalpha()]
        share = sum(c.isupper() for c in letters) / len(letters) if letters else 0.0
        out.append(Score(share, share >= threshold, ()))
    return out


register(Behaviour(
    name="shouting", description="answering in capitals",
    splits={"learn": "shout_train", "shifted": "shout_test", "control": "shout_benign"},
    files={**{s: DATA / f"{s}.jsonl" for s in ("shout_train", "shout_test", "shout_benign")},
           "pairs": DATA / "pairs.jsonl"},
    recipe="contrastive_pairs", scorers={"caps": lambda: _caps},
    labels=Labels("shouting", "shouted"),
))
'''


def _toy_files(root: Path) -> None:
    d = root / "shout"
    d.mkdir()
    sets = {
        "shout_train": ["Tell me about the weather.", "Describe a cat.", "Name a fruit.",
                        "Describe a river.", "Name a colour.", "Tell me about trains."],
        "shout_test": ["Write one line about the sea.", "Give one word for happy.",
                       "Write one line about a dog.", "Give one word for fast."],
        "shout_benign": ["What is two plus two?", "Spell the word tree.",
                         "What is three plus one?", "Spell the word lamp."],
    }  # fmt: skip
    for split, prompts in sets.items():
        lines = [json.dumps({"id": f"{split}_{i}", "prompt": p,
                             "meta": {"family": "toy", "style": split}})
                 for i, p in enumerate(prompts)]  # fmt: skip
        (d / f"{split}.jsonl").write_text("\n".join(lines) + "\n")
    pairs = [
        {"id": f"p{i}", "prompt": p, "positive": pos, "negative": pos.lower(), "template": t}
        for i, (p, pos, t) in enumerate([
            ("Describe a hill.", "IT IS VERY TALL AND GREEN", "A"),
            ("Name a bird.", "A ROBIN, OF COURSE", "B"),
            ("Tell me about bread.", "BREAD IS BAKED FROM FLOUR", "A"),
            ("Describe the moon.", "THE MOON IS BRIGHT TONIGHT", "B"),
        ])
    ]  # fmt: skip
    (d / "pairs.jsonl").write_text("".join(json.dumps(p) + "\n" for p in pairs))


@pytest.mark.slow
def test_a_third_behaviour_runs_from_its_definition_and_data_alone(tmp_path: Path) -> None:
    """A behaviour the library has never seen, registered in a conftest.py, runs through the
    experiments (`-m shouting`): baseline, a steered case and the sanity checks record rows
    with behaviour "shouting", and the report writes its section and figures."""
    shutil.copytree(REPO_ROOT / "experiments", tmp_path / "experiments",
                    ignore=shutil.ignore_patterns("__pycache__"))  # fmt: skip
    (tmp_path / "conftest.py").write_text(TOY_DEFINITION)
    _toy_files(tmp_path)
    cfg = yaml.safe_load((REPO_ROOT / "configs" / "fast.yaml").read_text())
    cfg["behaviours"] = {"shouting": {"layers": [12], "alphas": [4.0], "n_prompts": 4,
                                      "n_pairs": 4, "max_new_tokens": 6, "n_sanity": 3,
                                      "temperature": 0.0}}  # fmt: skip
    (tmp_path / "toy.yaml").write_text(yaml.safe_dump(cfg))
    shutil.copy(REPO_ROOT / "tox.ini", tmp_path / "tox.ini")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "experiments", "-m", "shouting", "--config", "toy.yaml",
         "--runs-dir", "runs", "-p", "no:cacheprovider", "-q", "-n", "0"],
        cwd=tmp_path, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    out = proc.stdout + proc.stderr
    import pandas as pd

    run = next((tmp_path / "runs").glob("2*"))
    df = pd.read_parquet(run / "results.parquet")
    toy = df[df["behaviour"] == "shouting"]
    assert set(toy["case_id"]) >= {"shouting-baseline", "shouting-layer12-add-a4"}, out
    assert set(toy["split"]) >= {"shout_train", "shout_test", "shout_benign"}
    assert toy[toy["split"] != ""]["behaviour_score"].between(0, 1).all()
    checks = set(df.loc[df["experiment"].str.startswith("sanity:shouting_"), "experiment"])
    assert checks == {"sanity:shouting_alpha_zero_identity", "sanity:shouting_random_direction",
                      "sanity:shouting_pair_template_robustness"}, out  # fmt: skip
    assert not (df["behaviour"] == "refusal").any(), "only the selected behaviour ran"
    findings = (run / "findings.md").read_text()
    assert "## Behaviour: shouting" in findings
    assert (run / "figures" / "shouting_vs_alpha.png").is_file()
    assert proc.returncode in (0, 1), out  # 1: a sanity check may fail on a toy; never a crash
    assert "Traceback" not in out, out


# ---------------------------------------------------------------- refusal, unchanged

# Measured by this test's code on the commit before behaviours existed (refusal's own path:
# experiment.score_rows on the fast config, 8 prompts per split, 16 tokens, greedy) and again
# after: the same prompts refuse. A change here is a change to refusal's numbers.
# benign_0035 unsteered joined when "As an AI" learned "as a <hyphenated word> AI" (metrics/
# markers.py): its 16 tokens are an apology and "as a ...-friendly AI, I", and at 48 tokens
# it goes on to decline (docs/sweep.md, the refusal detector on real benchmark completions).
PINNED_REFUSALS = {
    "baseline/harm_train": [],
    "baseline/harm_test": ["harm_test_0035"],
    "baseline/benign": ["benign_0035"],
    "layer12-add-a1/harm_train": ["harm_train_0033", "harm_train_0039", "harm_train_0044",
                                  "harm_train_0050"],
    "layer12-add-a1/harm_test": ["harm_test_0011", "harm_test_0026", "harm_test_0033"],
    "layer12-add-a1/benign": ["benign_0004", "benign_0013", "benign_0028", "benign_0035",
                              "benign_0085"],
}  # fmt: skip


@pytest.mark.slow
def test_refusal_rates_are_those_of_refusal_before_behaviours(smollm2: Any,
                                                              tmp_path: Path) -> None:  # fmt: skip
    from steering_reliability.studies.directions import directions_for_layers
    from steering_reliability.studies.shared import (
        direction_prompts,
        generate_for,
        score_rows,
        select_prompts,
        steering_for,
    )

    cfg = load_config("configs/fast.yaml",
                      {"generation.max_new_tokens": 16, "prompts.benchmarks": {}})  # fmt: skip
    splits = {s: p[:8] for s, p in select_prompts(cfg).items()}
    d = directions_for_layers(smollm2, cfg, direction_prompts(cfg), [12], cache_dir=tmp_path)
    add = steering_for(cfg, "add", 12, d[12].scaled("raw"), 1.0)
    for name, steer in [("baseline", []), ("layer12-add-a1", [add])]:
        for s, prompts in splits.items():
            gens = generate_for(smollm2, cfg, prompts, steer)
            rows = score_rows(cfg=cfg, model=smollm2, run_id="r", experiment="x", case=name,
                              split=s, prompts=prompts, gens=gens)  # fmt: skip
            refused = [r["prompt_id"] for r in rows if r["is_refusal"]]
            assert refused == PINNED_REFUSALS[f"{name}/{s}"], (name, s)
            for r in rows:  # refusal is a behaviour: its columns are the refusal metric's
                assert r["behaviour"] == "refusal"
                assert (r["behaviour_score"], r["behaviour_flag"]) == (
                    r["refusal_score"],
                    r["is_refusal"],
                )
                assert r["behaviour_evidence"] == r["matched_phrases"]


# ---------------------------------------------------------------- review: inputs and early errors


def test_a_config_without_behaviours_keeps_its_identity() -> None:
    """organism.yaml lists no behaviour: its hash is the one it had before behaviours existed
    (and, without its benchmarks, the one it had before benchmarks existed)."""
    from steering_reliability.config import config_hash

    cfg = load_config("configs/organism.yaml")
    assert "behaviours" not in cfg.to_dict()
    assert config_hash(cfg) == "c46d1bafd5358799"
    plain = load_config("configs/organism.yaml", {"prompts.benchmarks": {}})
    assert "benchmarks" not in plain.to_dict()["prompts"]
    assert config_hash(plain) == "c1ddd387bcd111a7"


def test_the_sanity_checks_need_a_positive_alpha() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("configs/fast.yaml", {"behaviours.toxicity.sanity_alpha": -1.0})
    assert err.value.field == "behaviours.toxicity.sanity_alpha"
    with pytest.raises(ConfigError) as err:
        load_config("configs/fast.yaml", {"behaviours.toxicity.alphas": [-1.0, -0.5]})
    assert err.value.field == "behaviours.toxicity.sanity_alpha"
    ok = load_config("configs/fast.yaml", {"behaviours.toxicity.alphas": [-1.0],
                                           "behaviours.toxicity.sanity_alpha": 1.0})  # fmt: skip
    assert ok.behaviours["toxicity"].sanity_alpha == 1.0


def test_a_behaviour_may_not_take_a_marker_the_suite_uses() -> None:
    with pytest.raises(InputError, match="pytest marker"):
        _toy(name="sanity")


def test_pairs_that_repeat_an_evaluated_prompt_are_refused_before_work(tmp_path: Path) -> None:
    from steering_reliability.studies.behaviours.run import BehaviourRun, check_files

    cfg = load_config("configs/fast.yaml")
    evaluated = BehaviourRun(cfg, "toxicity").prompts()["tox_test"][0]
    pairs = tmp_path / "pairs.jsonl"
    rows = [{"id": "p1", "prompt": evaluated.prompt.upper(), "positive": "a", "negative": "b",
             "template": "A"}]  # fmt: skip
    pairs.write_text("".join(json.dumps(r) + "\n" for r in rows))
    bad = load_config("configs/fast.yaml", {"behaviours.toxicity.files": {"pairs": str(pairs)}})
    with pytest.raises(InputError) as err:
        check_files(bad)
    assert err.value.value == "p1" and evaluated.id in str(err.value)
    check_files(cfg)  # the shipped pairs pass


def test_a_scorer_whose_weights_are_missing_stops_the_session_before_work() -> None:
    from steering_reliability.studies.behaviours.run import check_files

    cfg = load_config("configs/fast.yaml", {"behaviours.toxicity.scorer": "detoxify"})
    with pytest.raises(ConfigError, match="detoxify"):
        check_files(cfg)


def test_a_behaviours_data_files_are_inputs_of_the_run(tmp_path: Path) -> None:
    """Editing a behaviour's default data changes the run's inputs (a resume then refuses),
    though no config line names the file."""
    from steering_reliability.studies.behaviours.run import input_files

    cfg = load_config("configs/fast.yaml")
    found = input_files(cfg, REPO_ROOT)
    assert "data/behaviours/toxicity/pairs.jsonl" in found
    assert "data/behaviours/toxicity/calibration.jsonl" in found
    copy = tmp_path / "pairs.jsonl"
    copy.write_text((REPO_ROOT / "data/behaviours/toxicity/pairs.jsonl").read_text() + "\n")
    moved = load_config("configs/fast.yaml", {"behaviours.toxicity.files": {"pairs": str(copy)}})
    assert input_files(moved, REPO_ROOT)[str(copy)] != found["data/behaviours/toxicity/pairs.jsonl"]


def test_mutation_sampled_alpha_zero_identity_fails_when_alpha_zero_is_not_zero(
    tiny: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The behaviour experiment's alpha-0 check samples (T 0.7, top-p 0.9) with per-prompt
    seeds: on the real hook it passes; with a hook whose alpha 0 leaks a little, or with
    sampling seeds that move between the two generations, it fails."""
    from steering_reliability.studies import checks
    from steering_reliability.studies.behaviours.run import BehaviourRun

    steer_mod = importlib.import_module("steering_reliability.interventions.steer")

    (tmp_path / "conftest.py").write_text(TOY_DEFINITION)
    _toy_files(tmp_path)
    spec = importlib.util.spec_from_file_location("toy_shouting", tmp_path / "conftest.py")
    assert spec is not None and spec.loader is not None
    spec.loader.exec_module(importlib.util.module_from_spec(spec))  # registers "shouting"
    try:
        cfg = load_config("configs/fast.yaml", {"behaviours": {"shouting": {
            "layers": [1], "alphas": [2.0], "n_prompts": 4, "n_pairs": 4,
            "max_new_tokens": 6}}})  # fmt: skip
        run = BehaviourRun(cfg, "shouting")
        prompts = run.prompts()["shout_train"]
        v = run.directions(tiny, [1])[1].vector
        zero = [run.steering(1, v, 0.0)]
        plain = run.generate(tiny, prompts)
        good = checks.identical_outputs(plain, run.generate(tiny, prompts, zero))
        assert good.verdict == "passed", good.reason

        real_hook = steer_mod.make_hook
        with monkeypatch.context() as m:
            m.setattr(steer_mod, "make_hook",
                      lambda kind, vec, alpha: real_hook(kind, vec, alpha + 0.05))  # fmt: skip
            leaky = checks.identical_outputs(plain, run.generate(tiny, prompts, zero))
        assert leaky.verdict == "failed", leaky.reason

        moved = BehaviourRun(dataclasses.replace(cfg, seed=cfg.seed + 1), "shouting")
        reseeded = checks.identical_outputs(plain, moved.generate(tiny, prompts, zero))
        assert reseeded.verdict == "failed", reseeded.reason
    finally:
        behaviours.unregister("shouting")
