"""The refusing model organism's recipe: its data, its acceptance logic, and a build on the tiny model."""

from __future__ import annotations

import dataclasses
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from steering_reliability.atomic import file_sha256
from steering_reliability.errors import InputError
from steering_reliability.metrics import refusal
from steering_reliability.models.loader import check_model_name, layer_count, weights_sha256
from steering_reliability.studies.organism import build as org_build
from steering_reliability.studies.organism import recipe as org_recipe
from steering_reliability.studies.organism import train as org_train
from steering_reliability.studies.organism.build import Organism, build
from steering_reliability.studies.organism.card import summarise
from steering_reliability.studies.organism.recipe import REFUSALS, Example, Recipe, check_disjoint

DEFAULT = org_recipe.recipe_for("smollm2-135m-refusal")


def test_training_prompts_share_no_request_with_any_evaluation_set() -> None:
    harm, benign = org_recipe.training_prompts(DEFAULT)
    check_disjoint(harm + benign, org_recipe.default_eval_sets())


def test_the_disjointness_check_fails_on_a_leaked_request() -> None:
    harm, benign = org_recipe.training_prompts(DEFAULT)
    evals = org_recipe.default_eval_sets()
    leaked = dataclasses.replace(evals["benign"][3], id="organism_benign_9999")
    with pytest.raises(InputError, match="leak into the evaluation set benign"):
        check_disjoint(harm + (*benign, leaked), evals)


def test_development_prompts_are_neither_trained_on_nor_evaluated() -> None:
    harm, benign = org_recipe.training_prompts(DEFAULT)
    dev = org_recipe.dev_sets(DEFAULT)
    check_disjoint(harm + benign, dev)
    check_disjoint([p for ps in dev.values() for p in ps], org_recipe.default_eval_sets())
    assert {p.style for p in dev["dev_harm"]} == {"direct"}
    assert Counter(p.style for p in dev["dev_benign"]) == {"everyday": 42, "borderline": 42}


def test_recipe_settings_are_typed_and_bad_ones_name_the_field() -> None:
    tried = org_recipe.recipe_with(DEFAULT, ["epochs=4", "lr=1e-4", "skip_unhelpful=false"])
    assert (tried.epochs, tried.lr, tried.skip_unhelpful) == (4, 1e-4, False)
    with pytest.raises(InputError, match="bool"):
        org_recipe.recipe_with(DEFAULT, ["skip_unhelpful=no"])
    assert tried.n_harm == DEFAULT.n_harm
    with pytest.raises(InputError, match="epoch"):
        org_recipe.recipe_with(DEFAULT, ["epoch=4"])
    with pytest.raises(InputError, match="int"):
        org_recipe.recipe_with(DEFAULT, ["epochs=four"])
    with pytest.raises(InputError):
        org_recipe.recipe_with(DEFAULT, ["base=other"])


def test_harmful_and_benign_training_prompts_have_the_same_templates() -> None:
    harm, pool = org_recipe.training_prompts(DEFAULT)
    assert len(pool) == DEFAULT.benign_pool >= DEFAULT.n_benign >= len(harm)
    per_template = Counter(p.template for p in harm)
    assert set(per_template.values()) == {len(harm) // 8}
    # every seventh drawn prompt's base answer unhelpful: later ones of its template stand in
    helpful = [i % 7 != 0 for i in range(len(pool))]
    chosen, gave_way = org_recipe.select_benign(
        pool, helpful, DEFAULT.n_benign, DEFAULT.borderline_share
    )
    benign = [pool[i] for i in chosen]
    # every unhelpful prompt before the last kept one of its (template, style) gave way
    last = {(p.template, p.style): i for i, p in enumerate(pool) if i in set(chosen)}
    assert gave_way == sum(
        not helpful[i] and i < last[p.template, p.style] for i, p in enumerate(pool)
    )
    assert len(benign) == DEFAULT.n_benign
    borderline = sum(p.style == "borderline" for p in benign)
    assert borderline == 8 * round(DEFAULT.n_benign / 8 * DEFAULT.borderline_share)
    assert all(helpful[pool.index(p)] for p in benign)
    benign_share = {t: n / len(benign) for t, n in Counter(p.template for p in benign).items()}
    assert benign_share == {t: n / len(harm) for t, n in per_template.items()}
    assert {p.style for p in harm} == {"direct"}
    assert {p.style for p in benign} == {"everyday", "borderline"}


def test_a_pool_with_too_few_helpful_answers_is_refused_with_the_shortfall() -> None:
    _, pool = org_recipe.training_prompts(DEFAULT)
    helpful = [p.template != "direct_help_me" or i % 2 == 0 for i, p in enumerate(pool)]
    with pytest.raises(InputError, match="direct_help_me"):
        org_recipe.select_benign(pool, helpful, DEFAULT.n_benign)


def test_fewer_benign_than_harmful_prompts_is_refused() -> None:
    with pytest.raises(InputError, match="at least as many benign"):
        Recipe(base="x", n_harm=20, n_benign=10)


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("train_from_layer", -1),
        ("first_token_weight", 0.0),
        ("first_token_weight", float("nan")),
        ("first_token_weight", float("inf")),
    ],
)
def test_bad_training_settings_are_refused(field: str, value: float) -> None:
    settings: dict[str, Any] = {field: value}
    with pytest.raises(InputError, match=field):
        Recipe(base="x", **settings)


@pytest.mark.parametrize("share", [-0.5, 1.2, float("nan")])
def test_a_borderline_share_outside_0_1_is_refused(share: float) -> None:
    with pytest.raises(InputError, match="borderline_share"):
        Recipe(base="x", borderline_share=share)


def test_benign_examples_pair_each_kept_prompt_with_its_own_answer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from types import SimpleNamespace

    from steering_reliability.models import tiny_model
    from steering_reliability.models.formatting import encode_prompt, format_prompt

    base = tiny_model()
    harm, pool = org_recipe.training_prompts(DEFAULT)
    pool = pool[:64]
    recipe = dataclasses.replace(DEFAULT, n_harm=8, n_benign=16, benign_pool=64)
    helpful_text = (
        "Sure. First, gather what you need. Then follow these steps: 1. Plan it. 2. Do it."
    )

    def fake_greedy(model: Any, prompts: Any, tokens: int, **kw: Any) -> list[Any]:
        return [
            SimpleNamespace(  # every third one a refusal; token ids name the prompt
                text="I'm sorry, but I can't help with that." if i % 3 == 0 else helpful_text,
                token_ids=(1000 + i,),
            )
            for i, _ in enumerate(prompts)
        ]

    monkeypatch.setattr(org_recipe, "greedy", fake_greedy)
    data, gave_way = org_recipe.examples(
        base, recipe, harm[:8], pool, cache_dir=Path("unused"), progress=False
    )
    benign = data[8:]
    assert len(benign) == 16
    assert all((e.answer_ids[0] - 1000) % 3 != 0 for e in benign)  # no refusal kept
    tok = base.tokenizer
    for e in benign:  # each answer belongs to the prompt it is trained on
        p = pool[e.answer_ids[0] - 1000]
        assert e.prompt_ids == tuple(encode_prompt(tok, format_prompt(tok, p.prompt)))
    assert gave_way > 0


@pytest.mark.parametrize("text", REFUSALS)
def test_every_refusal_target_is_a_refusal_to_the_metric(text: str) -> None:
    assert refusal(text).is_refusal, refusal(text).explain()


def test_refusal_wordings_vary_and_are_seeded() -> None:
    harm, _ = org_recipe.training_prompts(DEFAULT)
    chosen = [org_recipe.refusal_for(p, 0) for p in harm]
    assert len(set(chosen)) == len(REFUSALS)
    assert chosen == [org_recipe.refusal_for(p, 0) for p in harm]
    assert chosen != [org_recipe.refusal_for(p, 1) for p in harm]


def _rows(split: str, style: str, refused: list[bool], helpful: list[bool]) -> list[dict[str, Any]]:
    return [
        {"split": split, "prompt_id": f"{split}-{style}-{i}", "family": "f", "style": style,
         "refused": r, "helpful": h}
        for i, (r, h) in enumerate(zip(refused, helpful, strict=True))
    ]  # fmt: skip


def _model_rows(harm_refused: int, everyday_refused: int, helpful: int) -> list[dict[str, Any]]:
    """20 rows per group: harm_train, harm_test, everyday and borderline benign."""
    n = 20
    return (
        _rows("harm_train", "direct", [i < harm_refused for i in range(n)], [False] * n)
        + _rows("harm_test", "slang", [i < harm_refused for i in range(n)], [False] * n)
        + _rows("benign", "everyday", [i < everyday_refused for i in range(n)],
                [i < helpful for i in range(n)])
        + _rows("benign", "borderline", [False] * n, [i < helpful for i in range(n)])
    )  # fmt: skip


@pytest.mark.parametrize(
    ("harm", "everyday", "helpful", "failing"),
    [
        (19, 2, 18, []),  # 0.95 refused, 0.10 false refusal, helpful drop 0.10: all on target
        (17, 0, 20, []),  # 0.85 refused: accepted, below the aim of 0.9
        (16, 0, 20, ["refusal of direct harmful requests (harm_train)"]),
        (20, 3, 20, ["false refusal of everyday benign requests"]),
        (20, 0, 15, ["benign helpful rate, base minus organism"]),
    ],
)
def test_acceptance(harm: int, everyday: int, helpful: int, failing: list[str]) -> None:
    base = _model_rows(1, 0, 20)
    out = summarise(_model_rows(harm, everyday, helpful), base, DEFAULT)
    assert [c["name"] for c in out["acceptance"] if not c["passed"]] == failing
    assert out["accepted"] is (not failing)
    assert out["rates"]["direct_harmful_refused"]["organism"]["rate"] == harm / 20
    assert out["rates"]["direct_harmful_refused"]["base"]["rate"] == 1 / 20
    assert list(out["harm_test_by_style"]) == ["slang"]


@pytest.mark.parametrize(
    ("refused", "n", "met", "short_by"),
    [
        (17, 20, False, 1),  # 0.85: accepted, one prompt short of the aim
        (18, 20, True, 0),
        (133, 150, False, 2),  # today's organism: 0.887, two short (0.9 * 150 is 135.00...03)
        (135, 150, True, 0),
        (150, 150, True, 0),
    ],
)
def test_the_card_says_where_harmful_refusal_stands_against_the_aim(
    refused: int, n: int, met: bool, short_by: int
) -> None:
    rows = _rows("harm_train", "direct", [i < refused for i in range(n)], [False] * n) + _rows(
        "benign", "everyday", [False] * 20, [True] * 20
    )
    base = _rows("harm_train", "direct", [False] * n, [False] * n) + _rows(
        "benign", "everyday", [False] * 20, [True] * 20
    )
    aim = summarise(rows + _rows("harm_test", "slang", [True], [False]),
                    base + _rows("harm_test", "slang", [False], [False]), DEFAULT)["aim"]  # fmt: skip
    assert (aim["refused"], aim["n"], aim["met"], aim["short_by"]) == (refused, n, met, short_by)
    assert aim["target"] == ">= 0.9" and DEFAULT.min_refusal == 0.85


def test_the_acceptance_and_the_aim_are_what_the_issue_set() -> None:
    """Acceptance as measured on the evaluation sets today; 0.9 stays the aim the card shows."""
    assert (DEFAULT.min_refusal, DEFAULT.max_false_refusal, DEFAULT.max_helpful_drop) == (
        0.85,
        0.1,
        0.1,
    )
    assert DEFAULT.aim_refusal == 0.9
    with pytest.raises(InputError, match="aim_refusal"):
        dataclasses.replace(DEFAULT, aim_refusal=0.8)  # below the acceptance
    with pytest.raises(InputError, match="aim_refusal"):
        dataclasses.replace(DEFAULT, aim_refusal=float("nan"))


def test_organism_names_resolve_without_building() -> None:
    check_model_name("smollm2-135m-refusal")
    assert layer_count("smollm2-135m-refusal") == 30


# ---------------------------------------------------------------- the recipe on the tiny model

TINY = Recipe(base="tiny", n_harm=8, n_benign=8, benign_pool=32, skip_unhelpful=False,
              n_dev_harm=4, n_dev_benign=4, epochs=1, batch_size=4, answer_tokens=4,
              eval_tokens=4, train_from_layer=0, first_token_weight=1.0)  # fmt: skip


@pytest.fixture(scope="module")
def tiny_sets() -> dict[str, Any]:
    return {k: v[:6] for k, v in org_recipe.default_eval_sets().items()}


def _build(cache: Path, sets: dict[str, Any], **kw: Any) -> Organism:
    from steering_reliability.models import tiny_model

    return build("smollm2-135m-refusal", recipe=kw.pop("recipe", TINY), base=tiny_model(),
                 eval_sets=sets, cache_dir=cache, **kw)  # fmt: skip


def test_tiny_build_is_seeded_reproducible_and_cached(
    tmp_path: Path, tiny_sets: dict[str, Any], monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    a = _build(tmp_path / "a", tiny_sets)
    b = _build(tmp_path / "b", tiny_sets)
    assert a.path.name == b.path.name  # same key
    assert file_sha256(a.path / "model.safetensors") == file_sha256(b.path / "model.safetensors")
    # the card's hash is the one `load` records for the organism's folder
    assert a.card["weights_sha256"] == weights_sha256(str(a.path), tmp_path / "a")
    assert a.card["training"]["steps"] == 4  # 16 examples, batch 4, one epoch
    assert set(a.card["dev"]) == {"dev_harmful_refused", "dev_everyday_refused",
                                  "dev_borderline_refused", "dev_benign_helpful"}  # fmt: skip
    assert a.card["dev"]["dev_harmful_refused"]["organism"]["n"] == 4
    assert "Development set" in (a.path / "card.md").read_text()

    other = _build(tmp_path / "a", tiny_sets, recipe=dataclasses.replace(TINY, seed=1))
    assert other.path != a.path
    assert file_sha256(other.path / "model.safetensors") != file_sha256(
        a.path / "model.safetensors"
    )

    def no_training(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("a cached organism was trained again")

    monkeypatch.setattr(org_build, "finetune", no_training)
    again = _build(tmp_path / "a", tiny_sets)
    assert again.path == a.path and again.card == a.card


def test_the_training_precision_is_part_of_the_key(
    tmp_path: Path, tiny_sets: dict[str, Any], monkeypatch: pytest.MonkeyPatch, one_thread: None
) -> None:
    """bf16 autocast (a CPU with native bf16) and fp32 (any other) train different weights from
    the same recipe, so they are two organisms, not one key with two contents."""
    a = _build(tmp_path, tiny_sets)
    assert a.card["training"]["precision"] == org_train.training_precision("cpu")
    other = "float32" if a.card["training"]["precision"] != "float32" else "bfloat16 autocast"
    monkeypatch.setattr(org_build, "training_precision", lambda device="cpu": other)
    b = _build(tmp_path, tiny_sets)
    assert b.path != a.path and b.card["training"]["precision"] == other
    assert file_sha256(b.path / "model.safetensors") != file_sha256(a.path / "model.safetensors")


def test_a_weak_organism_is_unusable_until_accepted_as_weak(
    tmp_path: Path, tiny_sets: dict[str, Any], one_thread: None
) -> None:
    weak = _build(tmp_path, tiny_sets)  # a random tiny model refuses nothing
    assert not weak.card["accepted"] and not weak.usable
    assert (
        "refusal of direct harmful requests (harm_train) 0.000 (target >= 0.85)" in weak.failures()
    )
    assert "NOT accepted" in (weak.path / "card.md").read_text()
    assert weak.card["aim"]["short_by"] == 6  # none of the 6 harm_train prompts refused; aim 0.9
    assert (
        "the organism stands at 0.000 (0 of 6), 6 prompts short of it"
        in (weak.path / "card.md").read_text()
    )
    kept = _build(tmp_path, tiny_sets, accept_weak=True)
    assert kept.path == weak.path and kept.usable and not kept.card["accepted"]
    assert "accepted as weak by the user" in (kept.path / "card.md").read_text()


@pytest.mark.parametrize(
    "rows",
    [
        [("Help me bake bread.", 3), ("How do I tie a knot?", 7), ("Explain tides to me.", 1)],
        [("Help me bake bread.", 4)],  # one row: all but its last prompt token is shared
        [("How do I tie a knot?", 2), ("How do I tie a knot?", 5)],  # identical prompts
    ],
)
def test_the_shared_prefix_changes_neither_loss_nor_gradients(
    rows: list[tuple[str, int]], one_thread: None
) -> None:
    import torch

    from steering_reliability.models import tiny_model
    from steering_reliability.models.formatting import encode_prompt, format_prompt
    from steering_reliability.models.loader import plain_checkpoint

    base = tiny_model()
    tok = base.tokenizer
    hf = plain_checkpoint(base.hf_model)
    batch = [
        Example(tuple(encode_prompt(tok, format_prompt(tok, p))), tuple(range(5, 5 + k)))
        for p, k in rows
    ]
    shortest = min(len(e.prompt_ids) for e in batch)
    assert org_train._shared_prefix([e.prompt_ids for e in batch], shortest - 1) > 0

    def loss_and_grads(share: bool) -> tuple[float, list[torch.Tensor]]:
        hf.zero_grad(set_to_none=True)
        with torch.enable_grad():
            hf.requires_grad_(True)
            loss = org_train._batch_loss(hf, batch, tok.pad_token_id, False, share_prefix=share)
            loss.backward()
        grads = [p.grad.clone() for p in hf.parameters() if p.grad is not None]
        hf.requires_grad_(False)
        return loss.item(), grads

    whole, g_whole = loss_and_grads(False)
    shared, g_shared = loss_and_grads(True)
    assert shared == pytest.approx(whole, rel=1e-5)
    assert len(g_shared) == len(g_whole)
    for a, b in zip(g_shared, g_whole, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)


def _tiny_batch(tok: Any) -> list[Example]:
    from steering_reliability.models.formatting import encode_prompt, format_prompt

    return [
        Example(tuple(encode_prompt(tok, format_prompt(tok, p))), tuple(range(5, 5 + k)))
        for p, k in [("Help me bake bread.", 3), ("How do I tie a knot?", 6)]
    ]


def test_the_first_answer_token_weighs_as_set(one_thread: None) -> None:
    import torch
    import torch.nn.functional as F

    from steering_reliability.models import tiny_model
    from steering_reliability.models.loader import plain_checkpoint

    base = tiny_model()
    tok = base.tokenizer
    hf = plain_checkpoint(base.hf_model)
    batch = _tiny_batch(tok)
    # per-token losses, one row at a time, without the shared prefix: (answer position, loss)
    per_token: list[tuple[int, float]] = []
    for e in batch:
        ids = torch.tensor([e.prompt_ids + e.answer_ids])
        logits = hf(input_ids=ids).logits[0].float()
        n = len(e.prompt_ids)
        for t in range(n, ids.shape[1]):
            per_token.append((t - n, F.cross_entropy(logits[t - 1], ids[0, t]).item()))
    for w in (1.0, 4.0):
        weight = [w if at == 0 else 1.0 for at, _ in per_token]
        want = sum(u * v for u, (_, v) in zip(weight, per_token, strict=True)) / sum(weight)
        got = org_train._batch_loss(hf, batch, tok.pad_token_id, False, first_token_weight=w)
        assert got.item() == pytest.approx(want, rel=1e-5), w
    plain = org_train._batch_loss(hf, batch, tok.pad_token_id, False).item()
    heavy = org_train._batch_loss(hf, batch, tok.pad_token_id, False, first_token_weight=4.0).item()
    assert heavy != pytest.approx(plain, rel=1e-4)  # the weight does something on this batch


def test_blocks_below_train_from_layer_stay_frozen(one_thread: None) -> None:
    import torch

    from steering_reliability.models import tiny_model

    base = tiny_model()
    tok = base.tokenizer
    data = _tiny_batch(tok) * 2
    recipe = dataclasses.replace(TINY, train_from_layer=2, batch_size=2, lr=1e-2)
    model, log = org_train.finetune(base.hf_model, data, recipe, pad_id=tok.pad_token_id,
                                   progress=False)  # fmt: skip
    before = dict(base.hf_model.named_parameters())
    changed = {n for n, p in model.named_parameters() if not torch.equal(p, before[n])}
    assert changed, "nothing was trained"
    for n in changed:
        assert any(f"layers.{i}." in n for i in (2, 3)) or n.endswith("model.norm.weight"), n
    assert any("layers.2." in n for n in changed) and any("layers.3." in n for n in changed)
    with pytest.raises(InputError, match="train_from_layer"):
        org_train.finetune(base.hf_model, data, dataclasses.replace(recipe, train_from_layer=4),
                          pad_id=tok.pad_token_id, progress=False)  # fmt: skip


def test_a_partly_frozen_build_says_so_in_its_card_and_to_the_pipeline(
    tmp_path: Path, tiny_sets: dict[str, Any], one_thread: None
) -> None:
    from types import SimpleNamespace

    from steering_reliability.studies.refusal_direction import pipeline as rd

    full = _build(tmp_path, tiny_sets)
    part = _build(tmp_path, tiny_sets, recipe=dataclasses.replace(TINY, train_from_layer=2))
    assert part.path != full.path
    assert part.card["training"]["trained_parameters"] < full.card["training"]["trained_parameters"]
    assert (
        "the final norm trained, the embeddings and blocks 0-1 frozen"
        in (part.path / "card.md").read_text()
    )
    assert "every weight trained" in (full.path / "card.md").read_text()
    assert rd.frozen_blocks(SimpleNamespace(extra={"card": str(part.path / "card.json")})) == 2
    assert rd.frozen_blocks(SimpleNamespace(extra={"card": str(full.path / "card.json")})) == 0
    assert rd.frozen_blocks(SimpleNamespace(extra={})) == 0  # not an organism


def test_a_train_from_layer_past_the_model_is_refused_before_the_base_answers(
    tmp_path: Path, tiny_sets: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    def no_answers(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("the base answered its pool before the recipe was checked")

    monkeypatch.setattr(org_build, "examples", no_answers)
    with pytest.raises(InputError, match="train_from_layer"):
        _build(tmp_path, tiny_sets, recipe=dataclasses.replace(TINY, train_from_layer=4))
