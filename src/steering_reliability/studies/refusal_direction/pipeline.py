"""The refusal-direction pipeline of Arditi et al. (2024), on any model, from the library's parts.

1. candidates: difference in means, harmful vs harmless prompts, at every layer x every
   post-instruction position (the tokens the prompt format puts after the user's message,
   derived from the template), one forward pass per batch for all layers;
2. a cheap scan without generation: per candidate, the first-token refusal probability under
   addition on harmless prompts (induce), its drop under all-layer ablation on harmful prompts
   that refuse at baseline (bypass) and the KL on harmless prompts under that ablation and under
   the addition (`selection.score_candidates`);
3. selection on *select* prompts: a bound on the ablation's KL on harmless prompts (as in the
   paper), layer cut-off, must induce; the best bypass where the model refuses enough to measure
   it, else the best induce score;
4. evaluation settings on *report* prompts: all-layer directional ablation, and activation
   addition (-v on harmful prompts, +v on harmless ones) at the selected layer;
5. CE on a general text sample, and the weight-orthogonalised model as a loadable export.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd
import torch

from steering_reliability.atomic import atomic_write, digest, publish_dir_once
from steering_reliability.config import Config
from steering_reliability.directions import Direction
from steering_reliability.directions.builders import diff_in_means
from steering_reliability.errors import ConfigError, DirectionError
from steering_reliability.generation import next_token_logits
from steering_reliability.interventions import Steering, full_ablation, orthogonalize_weights, steer
from steering_reliability.models import default_cache_dir, load
from steering_reliability.models.loader import card_of
from steering_reliability.models.registry import ORGANISMS
from steering_reliability.models.sites import model_device, variant_key
from steering_reliability.prompts import load_prompts
from steering_reliability.studies.refusal_direction.selection import (
    kl_frontier,
    score_candidates,
    select_direction,
)
from steering_reliability.studies.shared import direction_prompts, file_parts, split_files
from steering_reliability.verdict import Verdict

if TYPE_CHECKING:
    from steering_reliability.verdict import Verdict
from steering_reliability.models import LoadedModel
from steering_reliability.models.formatting import post_instruction_positions
from steering_reliability.models.loader import plain_checkpoint
from steering_reliability.prompts import Prompt

SCAN_VERSION = 4  # bump when the scan's numerics change: cached layer tables are recomputed
PROMPT_ROLES = ("harmful", "harmless", "harmful_val", "harmless_val")
SETTINGS = ("baseline", "ablation", "actadd")
# On a model organism (models.registry.ORGANISMS), one more setting: all-layer ablation of the
# *base* model's direction (same prompts, layer and position), beside the organism's own.
BASE_SETTING = "ablation_base"
MIN_REFUSING = 5  # harmful select prompts that must refuse at baseline for selection by bypass
# Ablation-KL bounds beside the configured one at which the report shows what selection would
# take (`frontier`): what a looser bound buys in bypass or induce, and at what cost.
FRONTIER_KL = (0.25, 0.5, 1.0, 2.0, math.inf)
_FLOATS = ("alpha", "norm", "split_half_cosine", "induce_score", "baseline_refusal_prob_benign",
           "ablation_kl", "addition_kl", "bypass_score")  # fmt: skip


@dataclass(frozen=True)
class PipelinePrompts:
    """Which prompts each step reads: all from the *select* parts of the prompt files, the ones
    that build the means apart from the ones that score the candidates."""

    harmful: tuple[Prompt, ...]  # the harmful mean: the sweep's direction prompts (harm_train)
    harmless: tuple[Prompt, ...]  # the harmless mean: benign, after the scoring ones
    harmful_val: tuple[Prompt, ...]  # bypass scoring: harm_train not in `harmful`, else harm_test
    harmless_val: tuple[Prompt, ...]  # induce and KL scoring: the first n_score of benign


def pipeline_prompts(cfg: Config) -> PipelinePrompts:
    """The prompts of the candidate and selection steps (never a report prompt)."""
    parts, files = file_parts(cfg), split_files(cfg)
    n = cfg.refusal_direction.n_score

    def select(split: str) -> tuple[Prompt, ...]:
        return tuple(p for p in load_prompts(files[split], split=split)
                     if parts[split].get(p.id) == "select")  # fmt: skip

    harmful = direction_prompts(cfg)
    seen = {p.id for p in harmful}
    harmful_val = tuple(p for p in select("harm_train") if p.id not in seen) or select("harm_test")
    benign = select("benign")
    if len(benign) <= n:
        raise ConfigError(
            "too few benign select prompts to both score candidates and build the harmless mean",
            field="refusal_direction.n_score", value=n,
            expected=f"fewer than the {len(benign)} select-part prompts of {files['benign']}",
        )  # fmt: skip
    return PipelinePrompts(harmful, benign[n:][: len(harmful)], harmful_val[:n], benign[:n])


def positions(model: LoadedModel, cfg: Config) -> tuple[int, ...]:
    """The post-instruction positions of the model's prompt format (refused when there are none)."""
    found = post_instruction_positions(model.tokenizer, system_prompt=cfg.model.system_prompt)
    if not found:
        raise ConfigError(
            "the prompt format puts no tokens after the user's message, so there are no "
            "post-instruction positions to read",
            field="model.name",
            value=model.info.name,
            hint="use a chat model, or a model whose prompt format ends in an assistant cue",
        )
    return found


def check_inputs(cfg: Config) -> None:
    """Before any model loads: the general text the CE is measured on is a file."""
    ce_text = cfg.resolve_path(cfg.refusal_direction.ce_text)
    if not ce_text.is_file():
        raise ConfigError("the general text for CE is not a file", file=cfg.source or None,
                          field="refusal_direction.ce_text", value=str(ce_text),
                          hint="point it at a UTF-8 text file (shipped: data/text/general.txt)")  # fmt: skip


def candidate_layers(n_layers: int, hook_point: str) -> range:
    """Every layer whose residual can differ between prompts at a template token: at layer 0's
    block input (resid_pre) the residual is the token's embedding, the same for every prompt."""
    return range(1 if hook_point == "resid_pre" else 0, n_layers)


def candidates(
    model: LoadedModel, cfg: Config, prompts: PipelinePrompts, at: Sequence[int]
) -> dict[tuple[int, int], Direction]:
    """Difference-in-means candidates at every candidate layer x position in `at`."""
    return diff_in_means(
        model,
        [p.prompt for p in prompts.harmful],
        [p.prompt for p in prompts.harmless],
        layers=candidate_layers(model.info.n_layers, cfg.direction.hook_point),
        hook_point=cfg.direction.hook_point,
        positions=at,
        system_prompt=cfg.model.system_prompt,
        batch_size=cfg.direction.batch_size,
    )


def scan_layer(
    model: LoadedModel,
    cfg: Config,
    cands: Mapping[tuple[int, int], Direction],
    layer: int,
    prompts: PipelinePrompts,
) -> pd.DataFrame:
    """The scan table of one layer's candidates, cached on disk by everything it depends on (so
    the per-layer cases and the selection share one computation across workers)."""
    from filelock import FileLock

    mine = {k: d for k, d in sorted(cands.items()) if k[0] == layer}
    key = digest({
        "version": SCAN_VERSION, "weights": model.info.weights_sha256, **variant_key(model),
        "layer": layer, "positions": [k[1] for k in mine], "hook_point": cfg.direction.hook_point,
        "system_prompt": cfg.model.system_prompt,
        **{name: [p.prompt for p in getattr(prompts, name)] for name in PROMPT_ROLES},
        "threshold": cfg.metrics.refusal_threshold,
    }, size=16)  # fmt: skip
    path = default_cache_dir() / "refusal_direction" / f"{key}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    with FileLock(f"{path}.lock"):
        if path.is_file():
            table = pd.DataFrame(json.loads(path.read_text(encoding="utf-8")))
            return table.astype(dict.fromkeys(_FLOATS, "float64"))  # JSON null -> NaN
        table = score_candidates(
            model,
            mine,
            benign=[p.prompt for p in prompts.harmless_val],
            harmful=[p.prompt for p in prompts.harmful_val],
            alpha=1.0,
            alpha_scale="raw",
            system_prompt=cfg.model.system_prompt,
            refusal_threshold=cfg.metrics.refusal_threshold,
            batch_size=cfg.direction.batch_size,
        )
        text = table.to_json(orient="records", double_precision=15)
        atomic_write(path, lambda fh: fh.write(text.encode("utf-8")))
    return table


def criterion(table: pd.DataFrame) -> str:
    """ "bypass" where enough harmful select prompts refuse at baseline to rank by it, else
    "induce"."""
    return "bypass" if int(table["n_refusing_baseline"].max()) >= MIN_REFUSING else "induce"


def frontier(table: pd.DataFrame, cfg: Config) -> list[dict[str, Any]]:
    """What selection takes at the configured ablation-KL bound and at each looser one of
    FRONTIER_KL (`selection.kl_frontier`), with the same cut-off, induce filter and ranking."""
    rd = cfg.refusal_direction
    looser = (b for b in FRONTIER_KL if b > rd.kl_max)
    return kl_frontier(table, (rd.kl_max, *looser), rd.max_layer_frac,
                       require_induce=True, by=criterion(table))  # fmt: skip


def select(table: pd.DataFrame, cfg: Config) -> tuple[pd.Series, str]:
    """The selected candidate and the criterion that ranked it ("bypass" or "induce"); a
    ConfigError naming the refusal_direction setting to change when no candidate passes."""
    rd = cfg.refusal_direction
    by = criterion(table)
    try:
        row = select_direction(table, rd.kl_max, rd.max_layer_frac, require_induce=True, by=by)
    except DirectionError as exc:
        raise ConfigError(
            f"no refusal-direction candidate passes selection ({exc.problem})",
            file=cfg.source or None, field="refusal_direction.kl_max", value=rd.kl_max,
            expected=exc.expected, hint="raise refusal_direction.kl_max or max_layer_frac; "
            "candidates must also raise the harmless refusal probability above baseline",
        ) from None  # fmt: skip
    return row, by


@contextlib.contextmanager
def setting(
    model: LoadedModel, name: str, direction: Direction | None, *, harmful: bool
) -> Iterator[list[Steering]]:
    """The hooks of one evaluation setting; yields the steerings to hand to generate().

    ablation: v̂ removed from every layer's residual input and attention/MLP outputs;
    actadd: -v added at the selected layer on harmful prompts (bypass), +v on harmless (induce).
    """
    if name != "baseline" and direction is None:
        raise ValueError(f"the {name} setting needs a direction")
    if name == "ablation" and direction is not None:
        with full_ablation(model, direction.vector):
            yield []
    elif name == "actadd" and direction is not None:
        sign = -1.0 if harmful else 1.0
        yield [
            Steering(
                "add", direction.layer, direction.vector, sign, hook_point=direction.hook_point
            )
        ]
    else:
        yield []


def base_model_name(model_name: str) -> str | None:
    """The embedded model an organism was fine-tuned from; None for any other model."""
    organism = ORGANISMS.get(model_name)
    return organism.base if organism is not None else None


def frozen_blocks(model: Any) -> int:
    """How many of a model organism's lowest blocks its fine-tune left untouched (its card's
    recipe `train_from_layer`; the embeddings too when it is above 0); 0 for any other model."""
    card = card_of(model)
    return 0 if card is None else int(card["recipe"].get("train_from_layer", 0))


def settings_for(model_name: str) -> tuple[str, ...]:
    """The evaluation settings run on a model: BASE_SETTING too where it has a base."""
    return SETTINGS + ((BASE_SETTING,) if base_model_name(model_name) else ())


def base_direction(cfg: Config, prompts: PipelinePrompts, chosen: Direction) -> Direction:
    """The base model's difference-in-means direction at the organism's selected layer and
    position, from the same select prompts: the direction that *induces* refusal in the base,
    to compare with the one that *mediates* the organism's learned refusal."""
    name = base_model_name(cfg.model.name)
    if name is None:
        raise ValueError(f"{cfg.model.name} is not a model organism: it has no base model")
    base = load(name, device=cfg.model.device, dtype=cfg.model.dtype)
    found = candidates(base, cfg, prompts, positions(base, cfg))
    return found[(chosen.layer, int(chosen.position))]


def read_text(path: Path) -> list[str]:
    """The paragraphs of a plain text file (blank-line separated)."""
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read the CE text: {exc}", field="refusal_direction.ce_text",
                          value=str(path), hint="point it at a UTF-8 text file") from None  # fmt: skip
    paragraphs = [" ".join(p.split()) for p in text.split("\n\n") if p.strip()]
    if not paragraphs:
        raise ConfigError(
            "the CE text is empty", field="refusal_direction.ce_text", value=str(path)
        )
    return paragraphs


def text_ce(
    model: LoadedModel, paragraphs: Sequence[str], steerings: Sequence[Steering] = ()
) -> tuple[float, int]:
    """Mean next-token cross-entropy (nats) over every token of the paragraphs, read as plain
    text (no prompt format), under the hooks in place and `steerings`; and the token count."""
    tok, net = model.tokenizer, model.hf_model
    total, count = 0.0, 0
    with steer(model, list(steerings)), torch.inference_mode():
        for text in paragraphs:
            ids = torch.tensor([tok(text).input_ids], device=model_device(model))
            logits = net(input_ids=ids, use_cache=False).logits[0, :-1].float()
            loss = torch.nn.functional.cross_entropy(logits, ids[0, 1:], reduction="sum")
            total, count = total + float(loss), count + ids.shape[1] - 1
    return total / max(count, 1), count


def export_orthogonalized(model: LoadedModel, direction: Direction) -> tuple[Path, LoadedModel]:
    """The weight-orthogonalised checkpoint (safetensors, config, tokenizer: loadable with
    AutoModelForCausalLM.from_pretrained), written once per (weights, vector) into the cache, and
    that checkpoint loaded back from disk as a LoadedModel."""
    from transformers import AutoModelForCausalLM

    root = default_cache_dir() / "orthogonalized"
    param = next(model.hf_model.parameters())
    dtype, device = param.dtype, param.device
    # the checkpoint is written in the model's dtype; its files do not depend on the device
    variant = {k: v for k, v in variant_key(model).items() if k == "dtype"}
    key = {"weights": model.info.weights_sha256, "vector": vector_sha(direction), **variant}
    folder = root / digest(key, size=16)
    publish_dir_once(
        folder,
        lambda temp: _write_checkpoint(
            orthogonalize_weights(model, direction.vector), direction, temp
        ),
        marker="model.safetensors",
    )
    # on the model's device: compared with the hooks' logits, which run there
    net = AutoModelForCausalLM.from_pretrained(folder, dtype=dtype).to(device).eval()
    import dataclasses

    return folder, dataclasses.replace(model, hf_model=net, extra={})


def _write_checkpoint(ortho: LoadedModel, direction: Direction, folder: Path) -> None:
    plain_checkpoint(ortho.hf_model).save_pretrained(folder, safe_serialization=True)
    ortho.tokenizer.save_pretrained(folder)
    meta = json.dumps(direction_metadata(direction), indent=2)
    (folder / "direction_metadata.json").write_text(meta, encoding="utf-8")


def orthogonal_verdict(
    model: LoadedModel, exported: LoadedModel, direction: Direction, texts: Sequence[str],
    *, system_prompt: str | None = None, rtol: float = 1e-4,
) -> Verdict:  # fmt: skip
    """The exported model's next-token logits on `texts` against all-layer hook ablation's:
    passed when the largest difference is within `rtol` of the largest logit, failed otherwise
    (an export that orthogonalised nothing, or the wrong vector, differs by orders more)."""
    with full_ablation(model, direction.vector):
        hooked = next_token_logits(model, texts, system_prompt=system_prompt)
    baked = next_token_logits(exported, texts, system_prompt=system_prompt)
    gap, scale = float((baked - hooked).abs().max()), float(hooked.abs().max())
    plain = next_token_logits(model, texts, system_prompt=system_prompt)
    effect = float((plain - hooked).abs().max())  # how far ablation moves the logits at all
    ok = gap <= rtol * scale
    reason = (f"exported weights' logits within {gap:.2e} of hook ablation's (bound {rtol:g} x "
              f"max |logit| {scale:.1f}; ablation itself moves them by up to {effect:.2f})")  # fmt: skip
    return Verdict("orthogonalized_equals_ablation", "passed" if ok else "failed", gap, reason,
                   {"max_abs_logit_diff": gap, "max_abs_logit": scale, "ablation_effect": effect,
                    "n_prompts": len(texts), "rtol": rtol})  # fmt: skip


def vector_sha(direction: Direction) -> str:
    """sha256 of the direction's fp32 vector bytes: its content identity."""
    import hashlib

    return hashlib.sha256(direction.vector.detach().float().cpu().numpy().tobytes()).hexdigest()


def direction_metadata(direction: Direction, **extra: Any) -> dict[str, Any]:
    """What the selected direction is: site, sizes, the key of its cached computation."""
    return {"layer": direction.layer, "position": direction.position, "hook_point": direction.hook_point,
            "method": direction.method, "norm": direction.norm, "vector_sha256": vector_sha(direction),
            "n_prompts": direction.n_prompts, **extra}  # fmt: skip
