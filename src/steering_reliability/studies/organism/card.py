"""The organism's card: its evaluation on the held-out sets beside its base model's, the
acceptance checks, and card.json / card.md beside the weights.

Acceptance, on the committed evaluation sets (never trained on): refusal of direct harmful
requests (harm_train), false refusal of everyday benign requests, and the benign helpful rate
against the base model's; borderline benign, harm_test by style and by family and the
development set are reported beside them, each with a 95% bootstrap interval.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from steering_reliability.analysis.markdown import table
from steering_reliability.atomic import atomic_write_bytes, atomic_write_json
from steering_reliability.metrics import helpfulness, refusal
from steering_reliability.metrics.stats import diff_ci, mean_ci
from steering_reliability.prompts.schema import Prompt
from steering_reliability.studies.organism.recipe import Recipe, greedy


def evaluate(
    model: Any,
    eval_sets: Mapping[str, Sequence[Prompt]],
    recipe: Recipe,
    *,
    cache_dir: Path,
    progress: bool,
) -> list[dict[str, Any]]:
    """One scored row per evaluation prompt, from greedy answers."""
    rows: list[dict[str, Any]] = []
    for split, prompts in eval_sets.items():
        gens = greedy(model, prompts, recipe.eval_tokens, cache_dir=cache_dir, progress=progress)
        for p, g in zip(prompts, gens, strict=True):
            r = refusal(g.text)
            rows.append(
                {
                    "split": split,
                    "prompt_id": p.id,
                    "family": p.family,
                    "style": p.style,
                    "refused": r.is_refusal,
                    "helpful": helpfulness(g.text, refusal_result=r).is_helpful,
                }
            )
    return rows


def _estimate(values: Sequence[bool]) -> dict[str, Any]:
    e = mean_ci(pd.Series([float(v) for v in values]))
    return {"rate": e.value, "lo": e.lo, "hi": e.hi, "n": e.n}


def summarise(
    organism: Sequence[Mapping[str, Any]], base: Sequence[Mapping[str, Any]], recipe: Recipe
) -> dict[str, Any]:
    """The card's numbers and acceptance verdicts from the two models' scored rows."""
    frames = {"organism": pd.DataFrame(organism), "base": pd.DataFrame(base)}

    def rate(column: str, **where: str) -> dict[str, Any]:
        out = {}
        for who, f in frames.items():
            keep = f
            for k, v in where.items():
                keep = keep[keep[k] == v]
            out[who] = _estimate(keep[column].tolist())
        return out

    def by(field: str) -> dict[str, Any]:
        harm = frames["organism"][frames["organism"].split == "harm_test"]
        return {
            v: rate("refused", split="harm_test", **{field: v})
            for v in sorted(harm[field].unique())
        }

    def dev() -> dict[str, Any]:
        if "dev_harm" not in set(frames["organism"].split):
            return {}
        return {
            "dev_harmful_refused": rate("refused", split="dev_harm"),
            "dev_everyday_refused": rate("refused", split="dev_benign", style="everyday"),
            "dev_borderline_refused": rate("refused", split="dev_benign", style="borderline"),
            "dev_benign_helpful": rate("helpful", split="dev_benign"),
        }

    benign = {
        who: f[f.split == "benign"].set_index("prompt_id")["helpful"].astype(float)
        for who, f in frames.items()
    }
    drop = diff_ci(benign["base"], benign["organism"], paired=True)
    rates = {
        "direct_harmful_refused": rate("refused", split="harm_train"),
        "everyday_benign_refused": rate("refused", split="benign", style="everyday"),
        "borderline_benign_refused": rate("refused", split="benign", style="borderline"),
        "benign_helpful": rate("helpful", split="benign"),
        "harm_test_refused": rate("refused", split="harm_test"),
    }
    checks = [
        _check("refusal of direct harmful requests (harm_train)",
               rates["direct_harmful_refused"]["organism"]["rate"], ">=", recipe.min_refusal),
        _check("false refusal of everyday benign requests",
               rates["everyday_benign_refused"]["organism"]["rate"], "<=", recipe.max_false_refusal),
        _check("benign helpful rate, base minus organism", drop.value, "<=", recipe.max_helpful_drop),
    ]  # fmt: skip
    return {
        "rates": rates,
        "helpful_drop": {"value": drop.value, "lo": drop.lo, "hi": drop.hi, "n": drop.n},
        "harm_test_by_style": by("style"),
        "harm_test_by_family": by("family"),
        "dev": dev(),
        "acceptance": checks,
        "accepted": all(c["passed"] for c in checks),
        "aim": _aim(rates["direct_harmful_refused"]["organism"], recipe.aim_refusal),
    }


def _aim(refused: Mapping[str, Any], aim: float) -> dict[str, Any]:
    """Where harmful refusal stands against the recipe's aim (not an acceptance check): the
    rate, and how many prompts it is short of the aim (0 when it meets it)."""
    n = int(refused["n"])
    count = round(refused["rate"] * n)
    needed = math.ceil(aim * n - 1e-9)  # 0.9 * 150 is 135.00000000000003 in floats
    return {
        "name": "refusal of direct harmful requests (harm_train)",
        "value": refused["rate"],
        "target": f">= {aim}",
        "refused": count,
        "n": n,
        "met": count >= needed,
        "short_by": max(0, needed - count),
    }


def _check(name: str, value: float, op: str, target: float) -> dict[str, Any]:
    passed = value >= target if op == ">=" else value <= target
    return {"name": name, "value": value, "target": f"{op} {target}", "passed": bool(passed)}


def card_markdown(card: Mapping[str, Any]) -> str:
    """The card as Markdown: acceptance, then the rates with 95% bootstrap intervals."""

    def cell(e: Mapping[str, Any]) -> str:
        return f"{e['rate']:.2f} [{e['lo']:.2f}, {e['hi']:.2f}] (n={e['n']})"

    def measures(rates: Mapping[str, Any]) -> str:
        rows = [
            [k.replace("_", " "), cell(v["organism"]), cell(v["base"])] for k, v in rates.items()
        ]
        return table(["measure", "organism", "base"], rows)

    verdict = (
        "accepted"
        if card["accepted"]
        else (
            "NOT accepted (accepted as weak by the user)"
            if card.get("accepted_weak")
            else "NOT accepted"
        )
    )
    lines = [
        f"# Model organism `{card['name']}`",
        "",
        f"Fine-tuned from `{card['base']['name']}` to refuse harmful requests; key `{card['key']}`; "
        f"{verdict}. Evaluated greedily ({card['recipe']['eval_tokens']} new tokens) on the "
        "committed evaluation sets, none of whose requests it was trained on.",
        "",
        "## Acceptance",
        "",
        table(
            ["check", "value", "target", "passed"],
            [
                [c["name"], f"{c['value']:.3f}", c["target"], "yes" if c["passed"] else "NO"]
                for c in card["acceptance"]
            ],
        ),
        "",
        *_aim_line(card.get("aim")),
        "## Refusal and helpfulness (organism vs base)",
        "",
        measures(card["rates"]),
        "",
    ]
    if card.get("dev"):
        lines += [
            "## Development set (the recipe was chosen on it; not an acceptance check)",
            "",
            measures(card["dev"]),
            "",
        ]
    for field in ("style", "family"):
        lines += [
            f"## harm_test refusal by {field}",
            "",
            table(
                [field, "organism", "base"],
                [
                    [k, cell(v["organism"]), cell(v["base"])]
                    for k, v in card[f"harm_test_by_{field}"].items()
                ],
            ),
            "",
        ]
    t = card["training"]
    lines += [
        "## Training",
        "",
        f"{card['data']['n_harm']} harmful + {card['data']['n_benign']} benign prompts "
        f"({card['data'].get('benign_unhelpful_base_answers_skipped', 0)} drawn benign prompts "
        "skipped: the base's own answer was not helpful), "
        f"{t['steps']} steps in {t['seconds']} s ({t['precision']}, {t['threads']} threads); "
        + _trained_part(card["recipe"], t)
        + f"mean loss {t['loss_first_epoch']} in the first epoch, {t['loss_last_epoch']} in the last. "
        f"Whole build {card['build_seconds']} s.",
        "",
    ]
    if card.get("kernel_family"):
        lines += [
            f"Kernel family (part of the key: it decides the weights' bytes with the recipe): "
            f"{card['kernel_family']}. Weights sha256 `{card['weights_sha256']}`.",
            "",
        ]
    return "\n".join(lines)


def _aim_line(aim: Mapping[str, Any] | None) -> list[str]:
    """The line under the acceptance table that says where the recipe stands against its aim."""
    if not aim:
        return []
    where = (
        "meets it"
        if aim["met"]
        else f"{aim['short_by']} prompt{'s' if aim['short_by'] != 1 else ''} short of it"
    )
    return [
        f"Aim (what the recipe aims at, not an acceptance check): {aim['name']} {aim['target']}; "
        f"the organism stands at {aim['value']:.3f} ({aim['refused']} of {aim['n']}), {where}.",
        "",
    ]


def _trained_part(recipe: Mapping[str, Any], log: Mapping[str, Any]) -> str:
    """What the fine-tune changed and how its loss weighed the answers, in words."""
    first = recipe.get("train_from_layer", 0)
    what = (
        f"blocks {first} and up and the final norm trained, the embeddings and "
        + (f"blocks 0-{first - 1}" if first > 1 else "block 0")
        + " frozen"
        if first
        else "every weight trained"
    )
    if "trained_parameters" in log:
        what += f" ({log['trained_parameters'] / 1e6:.1f}M parameters)"
    weight = recipe.get("first_token_weight", 1.0)
    return f"{what}; an answer's first token weighs {weight:g} in the loss, the others 1; "


def write_card(folder: Path, card: Mapping[str, Any]) -> None:
    atomic_write_json(folder / "card.json", card)
    atomic_write_bytes(folder / "card.md", card_markdown(card).encode())
