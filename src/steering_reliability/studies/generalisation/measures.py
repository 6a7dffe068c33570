"""What generalises: per-family directions, their geometry, steerability and equal-KL strength.

The numerical parts of the generalisation map (experiments/test_generalisation.py):

- per-family directions: the per-prompt differences the configured builder averages, averaged
  over one family's prompts instead of all of them (`prompt_differences`, `family_groups`);
- their stability (`bootstrap_cosines`) and consistency (`consistency`: the mean pairwise cosine
  of a family's per-prompt differences, the predictor of steerability in Braun et al. 2025);
- geometry: cosines (`cosine_matrix`), how much of the set one axis holds (`axis_shares`) and
  principal angles between two sets that share d_model (`principal_angles`);
- per-prompt steerability (Tan et al. 2024): the least-squares slope of first-token refusal
  log-odds against alpha (`refusal_log_odds`, `slopes`);
- equal cost: the alpha whose mean next-token KL on benign prompts equals a budget, by bisection
  on the monotone part of the KL curve (`calibrate`).
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor

from steering_reliability.config import Config
from steering_reliability.directions import Direction, make_direction
from steering_reliability.directions.builders import (
    contrastive_differences,
    diff_in_means_differences,
)
from steering_reliability.errors import ConfigError
from steering_reliability.generation import next_token_logits
from steering_reliability.interventions import steer
from steering_reliability.metrics.divergence import mean_next_token_kl
from steering_reliability.metrics.first_token import first_token_refusal_prob
from steering_reliability.models import LoadedModel
from steering_reliability.prompts import Prompt
from steering_reliability.studies.directions import prefixes
from steering_reliability.studies.shared import direction_prompts

NONE = "none"  # the unsteered source of the transfer matrix (its baseline row)
POOLED = "pooled"  # the direction from every family's prompts: the sweep's direction
OTHER = "other"  # small families pooled together


def family_groups(prompts: Sequence[Prompt], min_family: int) -> tuple[dict[str, list[int]], str]:
    """Prompt indices per family (`meta.family`), and a message about the families that were
    too small: pooled as "other" when together they reach `min_family`, else left out. Refused
    (ConfigError) when fewer than two groups remain: there is nothing to compare."""
    by: dict[str, list[int]] = defaultdict(list)
    for i, p in enumerate(prompts):
        by[p.family or "unlabelled"].append(i)
    groups = {f: idx for f, idx in sorted(by.items()) if len(idx) >= min_family}
    small = {f: idx for f, idx in sorted(by.items()) if len(idx) < min_family}
    note = ""
    if small:
        pooled = sorted(i for idx in small.values() for i in idx)
        names = ", ".join(f"{f} ({len(idx)})" for f, idx in small.items())
        if len(pooled) >= min_family:
            groups[OTHER] = pooled
            note = f"families with fewer than {min_family} prompts pooled as '{OTHER}': {names}"
        else:
            note = f"families with fewer than {min_family} prompts left out: {names}"
    if len(groups) < 2:
        raise ConfigError(
            "the generalisation map needs at least two families among the direction prompts",
            field="generalisation.min_family", value=min_family,
            expected=f"a size that at least two families reach (sizes: "
            f"{ {f: len(idx) for f, idx in sorted(by.items())} })",
            hint="lower generalisation.min_family, or raise prompts.n_direction",
        )  # fmt: skip
    return groups, note


def prompt_differences(
    model: LoadedModel,
    cfg: Config,
    prompts: Sequence[Prompt],
    layers: Sequence[int],
    *,
    variant: str = "main",
    harmless: Sequence[Prompt] = (),
    method: str | None = None,
) -> tuple[dict[int, Tensor], dict[int, float]]:
    """Per-prompt differences of `method` (None: the configured one) at each layer
    ({layer: [n, d]}) and the mean residual norm there. contrastive_prefix: resid(prompt +
    refusal prefix) - resid(prompt + compliance prefix) at the configured position;
    diff_in_means: resid(prompt) - the mean of `harmless`, at the last prompt token. Their mean
    over all prompts is that method's direction."""
    d, texts = cfg.direction, [p.prompt for p in prompts]
    if (method or d.method) == "contrastive_prefix":
        refusal, compliance = prefixes(cfg, variant)
        diffs, norms, _ = contrastive_differences(
            model, texts, layers=layers, hook_point=d.hook_point, position=d.position,
            refusal_prefix=refusal, compliance_prefix=compliance,
            system_prompt=cfg.model.system_prompt, batch_size=d.batch_size,
        )  # fmt: skip
    else:
        diffs, norms = diff_in_means_differences(
            model, texts, [p.prompt for p in harmless], layers=layers, hook_point=d.hook_point,
            system_prompt=cfg.model.system_prompt, batch_size=d.batch_size,
        )  # fmt: skip
    return (
        {layer: diffs[:, j].float() for j, layer in enumerate(layers)},
        {layer: float(norms[j]) for j, layer in enumerate(layers)},
    )


def family_direction(
    cfg: Config, diffs: Tensor, layer: int, name: str, mean_resid_norm: float,
    method: str | None = None,
) -> Direction:  # fmt: skip
    """The mean of one family's per-prompt differences, as a Direction (split-half cosine and
    batch cosines as every builder records them)."""
    d, method = cfg.direction, method or cfg.direction.method
    position = d.position if method == d.method else "-1"
    return make_direction(
        method=method, layer=layer, hook_point=d.hook_point, position=position, diffs=diffs,
        mean_resid_norm=mean_resid_norm, batch_size=d.batch_size, meta={"family": name},
    )  # fmt: skip


def geometry_methods(cfg: Config) -> tuple[str, ...]:
    """The methods whose family directions the geometry compares: the configured one, and
    difference in means too when that is not it (contrastive prefixes put most of the
    difference in the prefixes, the same for every prompt; the harmful-vs-harmless mean
    difference is where a family's own content shows)."""
    return tuple(dict.fromkeys((cfg.direction.method, "diff_in_means")))


def bootstrap_cosines(diffs: Tensor, n_resamples: int, seed: int = 0) -> np.ndarray:
    """Cosine of each bootstrap direction (the mean of prompts drawn with replacement) to the
    direction of all of them: [n_resamples]. Near 1 throughout: the family's prompts agree."""
    rng = np.random.default_rng(seed)
    x = diffs.detach().cpu().double().numpy()
    v = x.mean(0)
    idx = rng.integers(0, len(x), size=(n_resamples, len(x)))
    means = x[idx].mean(1)  # [r, d]
    return np.asarray(means @ v / (np.linalg.norm(means, axis=1) * np.linalg.norm(v)))


def consistency(diffs: Tensor) -> float:
    """Mean pairwise cosine between different prompts' differences (Braun et al. 2025's
    predictor of steerability); NaN for fewer than two prompts or a zero difference."""
    n = diffs.shape[0]
    norms = diffs.double().norm(dim=1, keepdim=True)
    if n < 2 or bool((norms == 0).any()):
        return math.nan
    u = diffs.double() / norms
    total = float(u.sum(0).pow(2).sum())  # sum over all ordered pairs, the diagonal's n included
    return (total - n) / (n * (n - 1))


def _unit_rows(vectors: Tensor | np.ndarray) -> np.ndarray:
    x = np.asarray(vectors, dtype="float64")
    norms = np.linalg.norm(x, axis=1, keepdims=True)
    if (norms == 0).any():
        raise ValueError("a zero vector has no direction")
    return x / norms


def cosine_matrix(vectors: Tensor | np.ndarray) -> np.ndarray:
    """[k, k] cosines between the rows of `vectors` ([k, d])."""
    u = _unit_rows(vectors)
    return np.clip(u @ u.T, -1.0, 1.0)


def axis_shares(vectors: Tensor | np.ndarray) -> np.ndarray:
    """Share of the unit directions' summed squared length along each principal axis, largest
    first: the squared singular values of the [k, d] unit rows over k (uncentred PCA). The first
    share is 1 when every direction is the same up to sign, and 1/k for k orthogonal ones, so
    it answers "is this one direction or a subspace?"."""
    s = np.linalg.svd(_unit_rows(vectors), compute_uv=False)
    return np.asarray(s**2 / float((s**2).sum()))


def _basis(vectors: Tensor | np.ndarray, tol: float = 1e-10) -> np.ndarray:
    """An orthonormal basis [d, r] of the span of the rows of `vectors` ([k, d])."""
    x = np.asarray(vectors, dtype="float64")
    u, s, _ = np.linalg.svd(x.T, full_matrices=False)
    rank = int((s > tol * max(float(s.max(initial=0.0)), 1e-300)).sum())
    if rank == 0:
        raise ValueError("the vectors span nothing (all zero)")
    return u[:, :rank]


def principal_axes(vectors: Tensor | np.ndarray, share: float = 0.9) -> np.ndarray:
    """The fewest principal axes ([r, d], unit rows) of the unit directions whose `axis_shares`
    add up to `share`: the subspace the set mostly lies in, without the noise axes a near-
    degenerate set (all directions nearly one) would otherwise bring into `principal_angles`."""
    u = _unit_rows(vectors)
    _, s, vt = np.linalg.svd(u, full_matrices=False)
    shares = s**2 / float((s**2).sum())
    r = int(np.searchsorted(np.cumsum(shares), share - 1e-12) + 1)
    return np.asarray(vt[: min(r, len(s))])


def principal_angles(a: Tensor | np.ndarray, b: Tensor | np.ndarray) -> np.ndarray:
    """Principal angles in degrees, smallest first, between the spans of the rows of `a`
    ([k_a, d]) and of `b` ([k_b, d]); min(rank a, rank b) of them. 0: a shared direction;
    90: orthogonal (Bjorck and Golub: arccos of the singular values of Qa^T Qb)."""
    qa, qb = _basis(a), _basis(b)
    if qa.shape[1] < qb.shape[1]:
        qa, qb = qb, qa  # qb: the smaller subspace, whose every direction gets an angle
    cos = np.sort(np.clip(np.linalg.svd(qa.T @ qb, compute_uv=False), 0.0, 1.0))[::-1]
    # arccos loses digits near 0 degrees: small angles from the sines instead (Knyazev and
    # Argentati 2002), the singular values of the part of qb outside span(qa), smallest first
    sin = np.sort(np.clip(np.linalg.svd(qb - qa @ (qa.T @ qb), compute_uv=False), 0.0, 1.0))
    angles = np.where(cos > math.sqrt(0.5), np.arcsin(sin[: len(cos)]), np.arccos(cos))
    return np.sort(np.degrees(angles))


def refusal_log_odds(probs: Tensor | np.ndarray, eps: float = 1e-6) -> np.ndarray:
    """log(p / (1 - p)) of first-token refusal probabilities, p clipped to [eps, 1 - eps]."""
    p = np.clip(np.asarray(probs, dtype="float64"), eps, 1.0 - eps)
    return np.asarray(np.log(p) - np.log1p(-p))


def slopes(alphas: Sequence[float], values: np.ndarray) -> np.ndarray:
    """Least-squares slope of each row of `values` ([n, k]) against the k `alphas`."""
    x = np.asarray(alphas, dtype="float64")
    if len(set(x.tolist())) < 2:
        raise ValueError("a slope needs at least two distinct alphas")
    y = np.asarray(values, dtype="float64")
    xc = x - x.mean()
    return np.asarray((y - y.mean(axis=1, keepdims=True)) @ xc / float(xc @ xc))


@dataclass(frozen=True)
class Calibration:
    """The alpha whose cost equals `budget` (NaN when the monotone part of the curve never
    reaches it: `status` "unreachable"), the cost measured there, and every point evaluated."""

    budget: float
    alpha: float
    cost: float
    status: str  # "found" | "unreachable"
    curve: tuple[tuple[float, float], ...] = field(default=())

    def as_json(self) -> dict[str, object]:
        return {"budget": self.budget, "alpha": None if math.isnan(self.alpha) else self.alpha,
                "cost": self.cost, "status": self.status,
                "curve": [list(p) for p in self.curve]}  # fmt: skip


def calibrate(
    cost: Callable[[float], float],
    budgets: Sequence[float],
    *,
    max_alpha: float,
    grid: int = 7,
    steps: int = 8,
    rtol: float = 0.02,
) -> list[Calibration]:
    """For each budget, an alpha in (0, max_alpha] where `cost(alpha)` (0 at alpha 0) reaches it
    (within `rtol`) while still rising. A geometric grid max_alpha * 2^-(grid-1) ... max_alpha
    is walked up until the cost falls (where the monotone part ends) or passes every budget; the
    bracket that holds a budget is then narrowed at most `steps` times, each at the alpha where a
    power law through the bracket's ends meets the budget (KL grows about as alpha^2 at first),
    falling back to the midpoint when that lands near an end. Past a fall, e.g. output collapse
    making the KL drop again, nothing is searched: a budget the rising part never reaches is
    "unreachable". `cost` is evaluated once per alpha across budgets."""
    seen: dict[float, float] = {0.0: 0.0}

    def at(alpha: float) -> float:
        if alpha not in seen:
            seen[alpha] = float(cost(alpha))
        return seen[alpha]

    points = [0.0] + [max_alpha * 2.0 ** -(grid - 1 - i) for i in range(grid)]
    rising = [0.0]  # the monotone part: grid points while the cost does not fall
    for a in points[1:]:
        if at(a) < at(rising[-1]):
            break
        rising.append(a)
        if at(a) >= max(budgets):
            break
    out = []
    for budget in budgets:
        upper = next((a for a in rising if at(a) >= budget), None)
        if upper is None:
            top = max(rising, key=at)
            out.append(Calibration(budget, math.nan, at(top), "unreachable"))
            continue
        lo, hi = rising[rising.index(upper) - 1], upper
        best = hi
        for _ in range(steps):
            if abs(at(best) - budget) <= rtol * budget:
                break
            mid = _power_law_guess(lo, at(lo), hi, at(hi), budget)
            lo, hi = (lo, mid) if at(mid) >= budget else (mid, hi)
            best = min((a for a in (lo, hi) if a > 0), key=lambda a: abs(at(a) - budget))
        out.append(Calibration(budget, best, at(best), "found"))
    curve = tuple(sorted(seen.items()))
    return [Calibration(c.budget, c.alpha, c.cost, c.status, curve) for c in out]


def _power_law_guess(lo: float, f_lo: float, hi: float, f_hi: float, budget: float) -> float:
    """Where c * alpha^k through (lo, f_lo) and (hi, f_hi) equals budget (k = 2 from alpha 0),
    or the midpoint when that is not inside the middle 90% of the bracket."""
    try:
        if lo > 0 and f_lo > 0 and f_hi > f_lo:
            k = math.log(f_hi / f_lo) / math.log(hi / lo)
            guess = lo * (budget / f_lo) ** (1.0 / k)
        else:
            guess = hi * math.sqrt(budget / f_hi)
    except (ValueError, ZeroDivisionError, OverflowError):
        guess = math.nan
    margin = 0.05 * (hi - lo)
    return guess if lo + margin <= guess <= hi - margin else (lo + hi) / 2


def next_token_kl(
    model: LoadedModel,
    prompts: Sequence[str],
    base: Tensor,
    steerings: Sequence[object],
    *,
    system_prompt: str | None = None,
    batch_size: int = 16,
) -> float:
    """Mean KL(base || steered) of the next-token distributions after each prompt, in nats;
    `base` is the unsteered last_logits of the same prompts."""
    with steer(model, list(steerings)):  # type: ignore[arg-type]
        steered = next_token_logits(
            model, prompts, system_prompt=system_prompt, batch_size=batch_size
        )
    return mean_next_token_kl(base, steered)


def first_token_probs(
    model: LoadedModel,
    prompts: Sequence[str],
    token_ids: Sequence[int],
    steerings: Sequence[object] = (),
    *,
    system_prompt: str | None = None,
    batch_size: int = 16,
) -> np.ndarray:
    """First-token refusal probability of each prompt under `steerings`: [n]."""
    with steer(model, list(steerings)):  # type: ignore[arg-type]
        logits = next_token_logits(
            model, prompts, system_prompt=system_prompt, batch_size=batch_size
        )
    return np.asarray(first_token_refusal_prob(logits, token_ids).cpu().numpy())


def sources(cfg: Config) -> tuple[str, ...]:
    """The rows of the transfer matrix: unsteered, the pooled direction, each family's (none
    when the direction prompts have fewer than two families of `min_family`: the family cases
    then say why, and the rest of the map runs)."""
    try:
        groups, _ = family_groups(direction_prompts(cfg), cfg.generalisation.min_family)
    except ConfigError:
        return (NONE, POOLED)
    return (NONE, POOLED, *groups)


def equal_kl_settings(cfg: Config) -> tuple[str, ...]:
    """The equal-KL comparison's cases: one per sweep layer x intervention."""
    return tuple(f"layer{layer}-{kind}" for layer in cfg.sweep.layers
                 for kind in cfg.sweep.interventions)  # fmt: skip


def scaled_to(vector: Tensor, norm: float) -> Tensor:
    """`vector` rescaled to `norm` (equal-norm family directions at a fixed alpha)."""
    return vector * (norm / float(vector.norm()))


def stack(directions: Mapping[str, Direction]) -> Tensor:
    """The directions' vectors as rows [k, d], in the mapping's order."""
    return torch.stack([d.vector for d in directions.values()])
