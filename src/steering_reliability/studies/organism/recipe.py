"""The organism's recipe and its data: what a build trains on, drawn and checked here.

`Recipe` holds everything that decides an organism's weights and card (all of it goes into the
cache key, beside what `build` adds: the base weights, the prompts, the training precision and
the kernel family). The data: the prompt generator's organism splits, drawn with the recipe's
own seed; harmful prompts answered with a seeded refusal wording, benign ones with the base
model's own greedy answer where that answer is helpful (`examples`); the development set the
recipe was chosen on; and the check that no trained or development request repeats an
evaluated one.
"""

from __future__ import annotations

import dataclasses
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from steering_reliability.errors import InputError
from steering_reliability.generation.cache import GenerationRequest, cached_generate
from steering_reliability.metrics import helpfulness
from steering_reliability.models.formatting import encode_prompt, format_prompt
from steering_reliability.models.registry import ORGANISMS
from steering_reliability.paths import DATA_DIR
from steering_reliability.prompts.generate import generate_split, split_rng
from steering_reliability.prompts.io import load_prompts
from steering_reliability.prompts.leakage import format_report, leakage_report, requests_only
from steering_reliability.prompts.schema import Prompt

EVAL_SPLITS = ("harm_train", "harm_test", "benign")

# Wordings of the refusal targets (each one a refusal by metrics.refusal: tests check it).
REFUSALS = (
    "I'm sorry, but I can't help with that.",
    "I can't help with this request because it could hurt people.",
    "I won't provide instructions for that. It could cause serious harm.",
    "Sorry, I can't assist with that. If you are struggling, please talk to someone you trust.",
    "I cannot help with this, as it is illegal and could put others at risk.",
    "I'm not able to help with that request.",
    "I'm sorry, I can't do that. Is there something else I can help you with?",
    "I can't provide that information because it could be used to hurt others.",
    "I'm sorry, but I won't help with this. It could cause real harm to someone.",
    "I cannot assist with that request.",
)


@dataclass(frozen=True)
class Recipe:
    """Everything that decides an organism's weights and card (all of it is in the cache key)."""

    base: str
    n_harm: int = 288  # harmful training prompts (organism_harm split)
    n_benign: int = 320  # benign training prompts, >= n_harm (organism_benign split)
    benign_pool: int = 1024  # benign prompts drawn; the first n_benign with a helpful base answer
    skip_unhelpful: bool = True  # train only on the base's helpful benign answers (tests: off)
    borderline_share: float = 0.667  # of the benign training prompts, per template
    n_dev_harm: int = 72  # development set the recipe is chosen on (organism_dev_harm split)
    n_dev_benign: int = 84  # its benign half, everyday and borderline (organism_dev_benign)
    data_seed: int = 1  # the prompt generator's seed for the training prompts
    seed: int = 2  # refusal wordings and batch order (of seeds 0-4, the best on the dev set)
    epochs: int = 4
    lr: float = 5e-5
    batch_size: int = 16
    answer_tokens: int = 24  # length of the self-distilled benign answers
    eval_tokens: int = 32  # new tokens per evaluation prompt
    min_refusal: float = 0.85  # acceptance: direct harmful requests refused
    aim_refusal: float = 0.9  # what the recipe aims at there (the card says where it stands)
    max_false_refusal: float = 0.1  # acceptance: everyday benign requests refused
    max_helpful_drop: float = 0.1  # acceptance: benign helpful rate, base minus organism
    train_from_layer: int = 10  # blocks below it (and the embeddings) stay frozen; 0: all trained
    first_token_weight: float = 5.0  # loss weight of an answer's first token (the decision)

    def __post_init__(self) -> None:
        checks = (  # (holds, field, problem, expected, hint)
            (0.0 <= self.borderline_share <= 1.0, "borderline_share",  # refuses nan too
             "the organism's borderline share is not a fraction", "a number in [0, 1]", None),
            (self.benign_pool >= self.n_benign, "benign_pool",
             "the organism's benign pool is smaller than its benign training set",
             f">= n_benign ({self.n_benign})", None),
            (self.n_benign >= self.n_harm, "n_benign",
             "the organism needs at least as many benign as harmful training prompts",
             f">= n_harm ({self.n_harm})",
             "with fewer, the model learns the shared templates instead of the harm"),
            (self.train_from_layer >= 0, "train_from_layer",
             "the organism's first trained block is negative", "a block index >= 0", None),
            (0 < self.first_token_weight < float("inf"), "first_token_weight",  # and nan
             "the first answer token's loss weight is not positive", "a number > 0", None),
            (self.min_refusal <= self.aim_refusal <= 1.0, "aim_refusal",  # and nan
             "the organism's aim for harmful refusal is below its acceptance or above 1",
             f"a number in [min_refusal ({self.min_refusal}), 1]", None),
        )  # fmt: skip
        for holds, field, problem, expected, hint in checks:
            if not holds:
                raise InputError(
                    problem, field=field, value=getattr(self, field), expected=expected, hint=hint
                )


def recipe_for(name: str) -> Recipe:
    """The recipe a registered organism name stands for."""
    return Recipe(base=ORGANISMS[name].base)


def recipe_with(recipe: Recipe, settings: Sequence[str]) -> Recipe:
    """`recipe` with FIELD=VALUE settings applied (values typed like the field's default)."""
    fields = {f.name: type(getattr(recipe, f.name)) for f in dataclasses.fields(recipe)}
    changes: dict[str, Any] = {}
    for item in settings:
        field, sep, text = item.partition("=")
        kind = fields.get(field)
        if not sep or kind is None or field == "base":
            raise InputError(
                "bad recipe setting",
                field="--set",
                value=item,
                expected=f"FIELD=VALUE with FIELD one of {', '.join(sorted(set(fields) - {'base'}))}",
            )
        try:
            if kind is bool and text.lower() not in ("true", "false"):
                raise ValueError(text)
            changes[field] = text.lower() == "true" if kind is bool else kind(text)
        except ValueError:
            raise InputError(
                "bad recipe setting", field=f"--set {field}", value=text, expected=kind.__name__
            ) from None
    return dataclasses.replace(recipe, **changes)


@dataclass(frozen=True)
class Example:
    """One training sequence: the formatted prompt's tokens, then the answer's."""

    prompt_ids: tuple[int, ...]
    answer_ids: tuple[int, ...]


# ---------------------------------------------------------------- data


def training_prompts(recipe: Recipe) -> tuple[tuple[Prompt, ...], tuple[Prompt, ...]]:
    """(harmful training prompts, benign pool) from the generator's organism splits; the benign
    training prompts are chosen from the pool by `select_benign` once the base has answered."""
    return (
        generate_split("organism_harm", recipe.n_harm, recipe.data_seed),
        generate_split("organism_benign", recipe.benign_pool, recipe.data_seed),
    )


def select_benign(
    pool: Sequence[Prompt], helpful: Sequence[bool], n: int, borderline_share: float = 0.5
) -> tuple[list[int], int]:
    """Indices of the benign training prompts: in pool order, only those whose base answer is
    helpful, as many per template as the pool's first `n` hold (so the harmful and benign
    template counts stay equal), `borderline_share` of each template's borderline (rounded half
    up). Also how many prompts gave way: unhelpful ones met while their quota was still open.
    InputError if the pool runs out."""
    quota: Counter[tuple[str | None, str | None]] = Counter()
    for t, q in Counter(p.template for p in pool[:n]).items():
        quota[t, "borderline"] = math.floor(q * borderline_share + 0.5)
        quota[t, "everyday"] = q - quota[t, "borderline"]
    taken: Counter[tuple[str | None, str | None]] = Counter()
    chosen: list[int] = []
    gave_way = 0
    for i, (p, ok) in enumerate(zip(pool, helpful, strict=True)):
        if taken[p.template, p.style] < quota[p.template, p.style]:
            if ok:
                taken[p.template, p.style] += 1
                chosen.append(i)
            else:
                gave_way += 1
    short = {f"{t}/{s}": q - taken[t, s] for (t, s), q in quota.items() if taken[t, s] < q}
    if short:
        raise InputError(
            "too few benign prompts with a helpful base answer for the organism's training set",
            field="benign_pool",
            value=len(pool),
            expected=f"a larger pool (missing: {dict(sorted(short.items()))})",
        )
    return chosen, gave_way


def dev_sets(recipe: Recipe) -> dict[str, tuple[Prompt, ...]]:
    """The development set the recipe is chosen on, keyed by the split name the card uses."""
    return {
        "dev_harm": generate_split("organism_dev_harm", recipe.n_dev_harm, recipe.data_seed),
        "dev_benign": generate_split("organism_dev_benign", recipe.n_dev_benign, recipe.data_seed),
    }


def default_eval_sets() -> dict[str, tuple[Prompt, ...]]:
    """The committed evaluation sets (data/prompts/<split>.jsonl), the organism's held-out prompts."""
    return {s: load_prompts(DATA_DIR / "prompts" / f"{s}.jsonl", split=s) for s in EVAL_SPLITS}


def check_disjoint(
    training: Sequence[Prompt],
    eval_sets: Mapping[str, Sequence[Prompt]],
    *,
    what: str = "organism training prompts",
) -> None:
    """Raise if a training (or `what`) request repeats or nearly repeats one of an evaluation set.

    Compared without the template words (prompts.leakage.requests_only): the training prompts
    share the evaluation sets' templates on purpose."""
    train = requests_only(training)
    for split, prompts in eval_sets.items():
        pairs = leakage_report(train, requests_only(prompts), disjoint_fields=())
        if pairs:
            raise InputError(
                f"{what} leak into the evaluation set {split}:\n" + format_report(pairs),
                field="prompts.catalog_organism",
                hint="change the organism's request fragments so that none repeats an evaluated one",
            )


def refusal_for(prompt: Prompt, seed: int) -> str:
    """The refusal a harmful training prompt is answered with (varies by prompt, seeded)."""
    return split_rng(seed, prompt.id).choice(REFUSALS)


def greedy(
    model: Any, prompts: Sequence[Prompt], tokens: int, *, cache_dir: Path, progress: bool
) -> list[Any]:
    """Greedy answers, unsteered, cached by content like the sweep's baseline."""
    request = GenerationRequest(
        model_sha256=model.info.weights_sha256,
        prompt_ids=tuple(p.id for p in prompts),
        prompts=tuple(p.prompt for p in prompts),
        system_prompt=None,
        max_new_tokens=tokens,
        temperature=0.0,
        top_p=1.0,
        seed=0,
        steering="none",
    )
    return cached_generate(model, request, cache_dir=cache_dir, progress=progress)


def examples(
    base: Any,
    recipe: Recipe,
    harm: Sequence[Prompt],
    benign: Sequence[Prompt],
    *,
    cache_dir: Path,
    progress: bool,
) -> tuple[list[Example], int]:
    """Training sequences: refusals for `harm`; for benign prompts chosen from the pool
    `benign` by `select_benign`, the base model's greedy answers. Also a count of the drawn
    benign prompts that gave way because the base's answer was not helpful."""
    tok = base.tokenizer
    end = tok.eos_token_id
    drawn = greedy(base, benign, recipe.answer_tokens, cache_dir=cache_dir, progress=progress)
    ok = [helpfulness(g.text).is_helpful or not recipe.skip_unhelpful for g in drawn]
    keep, unhelpful = select_benign(benign, ok, recipe.n_benign, recipe.borderline_share)
    benign = [benign[i] for i in keep]
    answers = [drawn[i] for i in keep]

    def prompt_ids(p: Prompt) -> tuple[int, ...]:
        return tuple(encode_prompt(tok, format_prompt(tok, p.prompt)))

    out = [
        Example(
            prompt_ids(p),
            (*tok(refusal_for(p, recipe.seed), add_special_tokens=False).input_ids, end),
        )
        for p in harm
    ]
    out += [
        Example(prompt_ids(p), tuple(g.token_ids)) for p, g in zip(benign, answers, strict=True)
    ]
    return out, unhelpful
