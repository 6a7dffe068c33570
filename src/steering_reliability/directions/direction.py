"""The Direction value and the statistics every builder records about it."""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor

from steering_reliability.errors import DirectionError, suggest

# What alpha = 1 means (config `direction.alpha_scale`).
ALPHA_SCALES: tuple[str, ...] = ("raw", "unit", "resid_norm")


@dataclass(frozen=True, eq=False)
class Direction:
    """A steering direction at one residual site, with the numbers that say how stable it is.

    `vector` is the raw mean difference (alpha = 1 under alpha_scale "raw"). Identity equality:
    compare `key` (or the tensors) when two directions must be the same. Treat the tensor as
    read-only; `scaled` and `unit` return new tensors.
    """

    method: str
    layer: int
    hook_point: str
    position: str  # "first_prefix" / "prefix_mean" / a token index from the end such as "-1"
    vector: Tensor  # [d_model], fp32
    norm: float
    mean_resid_norm: float  # mean per-token residual norm at this site over the tokens read
    split_half_cosine: float  # cosine between the directions of the first and second half
    batch_cosines: tuple[float, ...]  # cosine of each batch's direction to `vector`
    n_prompts: int
    key: str = ""  # cache key; "" until published by the cache
    meta: Mapping[str, Any] = field(default_factory=dict)

    @property
    def unit(self) -> Tensor:
        """vector / norm: [d_model]."""
        if not self.norm > 0:
            raise DirectionError(
                "a zero direction has no unit vector", field="norm", value=self.norm
            )
        return self.vector / self.norm

    def scaled(self, alpha_scale: str) -> Tensor:
        """The vector that alpha = 1 adds: raw mean difference, unit vector, or unit x residual norm.

        resid_norm exists because a unit vector against residual norms of 50-600 does nothing:
        alpha then reads as a fraction of the site's typical residual norm.
        """
        if alpha_scale == "raw":
            return self.vector
        if alpha_scale == "unit":
            return self.unit
        if alpha_scale == "resid_norm":
            return self.unit * self.mean_resid_norm
        raise DirectionError(
            "unknown alpha scale",
            field="alpha_scale",
            value=alpha_scale,
            expected=f"one of {list(ALPHA_SCALES)}",
            hint=suggest(alpha_scale, ALPHA_SCALES),
        )

    def summary(self) -> dict[str, Any]:
        """Plain numbers for logs, meta.json and tables."""
        return {
            "method": self.method,
            "layer": self.layer,
            "hook_point": self.hook_point,
            "position": self.position,
            "norm": self.norm,
            "mean_resid_norm": self.mean_resid_norm,
            "split_half_cosine": self.split_half_cosine,
            "batch_cosines": list(self.batch_cosines),
            "n_prompts": self.n_prompts,
            "key": self.key,
        }


def cosine(a: Tensor, b: Tensor) -> float:
    """Cosine similarity of two [d] vectors; NaN when either is zero."""
    na, nb = float(a.norm()), float(b.norm())
    if na == 0.0 or nb == 0.0:
        return math.nan
    return max(-1.0, min(1.0, float(a @ b) / (na * nb)))


def chunks(n: int, size: int) -> list[slice]:
    """Consecutive slices of `size` (the last may be shorter) covering range(n)."""
    return [slice(i, min(i + size, n)) for i in range(0, n, size)]


def make_direction(
    *,
    method: str,
    layer: int,
    hook_point: str,
    position: str,
    diffs: Tensor | None = None,
    groups: tuple[Tensor, Tensor] | None = None,
    mean_resid_norm: float,
    batch_size: int,
    meta: Mapping[str, Any] | None = None,
) -> Direction:
    """Build a Direction from per-prompt differences [n, d] or two groups ([n_a, d], [n_b, d]).

    Paired differences: v = mean(diffs); halves and batches are slices of the prompts in order.
    Two groups (difference in means): v = mean(a) - mean(b); halves and batches slice each group.
    Refuses a zero or non-finite vector rather than returning it.
    """
    if diffs is not None and groups is None:
        n = diffs.shape[0]
        v = diffs.mean(0)
        half = n // 2
        split = cosine(diffs[:half].mean(0), diffs[half:].mean(0)) if half > 0 else math.nan
        batch = tuple(cosine(diffs[s].mean(0), v) for s in chunks(n, batch_size))
    elif groups is not None and diffs is None:
        a, b = groups
        n = a.shape[0] + b.shape[0]
        v = a.mean(0) - b.mean(0)
        ha, hb = a.shape[0] // 2, b.shape[0] // 2
        split = (
            cosine(a[:ha].mean(0) - b[:hb].mean(0), a[ha:].mean(0) - b[hb:].mean(0))
            if ha > 0 and hb > 0
            else math.nan
        )
        pairs = zip(chunks(a.shape[0], batch_size), chunks(b.shape[0], batch_size), strict=False)
        batch = tuple(cosine(a[sa].mean(0) - b[sb].mean(0), v) for sa, sb in pairs)
    else:
        raise TypeError("give exactly one of diffs or groups")
    norm = float(v.norm())
    if not math.isfinite(norm) or norm == 0.0:
        raise DirectionError(
            f"the {method} direction at layer {layer} ({hook_point}, {position}) is "
            f"{'zero' if norm == 0.0 else 'not finite'}",
            field="position",
            value=position,
            hint="read at a position where the two sets of inputs differ (at resid_pre of "
            "layer 0 the residual is the token embedding: template tokens are identical)",
        )
    return Direction(
        method=method,
        layer=int(layer),
        hook_point=hook_point,
        position=position,
        vector=v.detach().to(torch.float32).cpu().clone(),
        norm=norm,
        mean_resid_norm=float(mean_resid_norm),
        split_half_cosine=split,
        batch_cosines=batch,
        n_prompts=int(n),
        meta=dict(meta or {}),
    )
