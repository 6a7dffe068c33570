"""How far an intervention moves the model on benign text: KL to the baseline and CE.

Both average over *every* masked (completion) position, not the first token only: a
steered model can match the first token and still drift badly later.
Shapes: logits [batch, time, vocab], targets and mask [batch, time], results [batch].
Position t of the logits is the distribution for targets[:, t] (shift before calling).
Everything runs in float64 log-space (log_softmax), so large or -inf logits stay finite.
"""

from __future__ import annotations

import torch

from steering_reliability.errors import InputError

__all__ = ["cross_entropy", "kl_divergence"]


def _mask(mask: torch.Tensor | None, shape: tuple[int, ...], device: torch.device) -> torch.Tensor:
    """Boolean [batch, time] mask; all positions when None."""
    if mask is None:
        return torch.ones(shape, dtype=torch.bool, device=device)
    if tuple(mask.shape) != shape:
        raise InputError(
            "mask shape does not match the logits",
            field="mask",
            value=tuple(mask.shape),
            expected=f"shape {shape} ([batch, time], true at completion tokens)",
        )
    return mask.to(device=device, dtype=torch.bool)


def _masked_mean(values: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Mean of values[b, t] over mask[b, t] per row; NaN for a row with no masked position."""
    total = torch.where(mask, values, torch.zeros_like(values)).sum(dim=-1)
    return total / mask.sum(dim=-1).to(values.dtype)


def _check_logits(name: str, logits: torch.Tensor) -> None:
    if logits.ndim != 3 or logits.shape[-1] == 0:
        raise InputError(
            f"{name} must be [batch, time, vocab]",
            field=name,
            value=tuple(logits.shape),
            expected="a 3-d tensor with a non-empty vocabulary axis",
        )


def kl_divergence(
    base_logits: torch.Tensor,
    steered_logits: torch.Tensor,
    mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """Mean over masked positions of KL(base || steered) in nats, per sequence: [batch] >= 0."""
    _check_logits("base_logits", base_logits)
    _check_logits("steered_logits", steered_logits)
    if base_logits.shape != steered_logits.shape:
        raise InputError(
            "base and steered logits differ in shape",
            value=(tuple(base_logits.shape), tuple(steered_logits.shape)),
            expected="the same [batch, time, vocab] (same prompts, same completion tokens)",
        )
    logp = torch.log_softmax(base_logits.to(torch.float64), dim=-1)
    logq = torch.log_softmax(steered_logits.to(torch.float64), dim=-1)
    p = logp.exp()
    # Tokens the baseline never emits (p = 0) contribute 0, even where q = 0 too.
    terms = torch.where(p > 0, p * (logp - logq), torch.zeros_like(p))
    per_token = terms.sum(dim=-1).clamp_min(0.0)  # rounding can dip a hair below 0
    m = _mask(mask, tuple(per_token.shape), per_token.device)
    return _masked_mean(per_token, m)


def cross_entropy(
    logits: torch.Tensor, targets: torch.Tensor, mask: torch.Tensor | None = None
) -> torch.Tensor:
    """Mean token cross-entropy (nats) of `targets` under `logits` over masked positions: [batch].

    Use it with the baseline's own completion as targets and the steered logits: the cost
    of the intervention on text the unsteered model would have written.
    """
    _check_logits("logits", logits)
    if tuple(targets.shape) != tuple(logits.shape[:2]):
        raise InputError(
            "targets shape does not match the logits",
            field="targets",
            value=tuple(targets.shape),
            expected=f"shape {tuple(logits.shape[:2])} ([batch, time] token ids)",
        )
    m = _mask(mask, tuple(targets.shape), logits.device)
    vocab = logits.shape[-1]
    tgt = targets.to(device=logits.device, dtype=torch.long)
    out_of_range = m & ((tgt < 0) | (tgt >= vocab))
    if bool(out_of_range.any()):
        raise InputError(
            "target ids outside the vocabulary at masked positions",
            field="targets",
            value=tgt[out_of_range][:8].tolist(),
            expected=f"ids in [0, {vocab}) wherever mask is true",
        )
    safe = torch.where(m, tgt, torch.zeros_like(tgt))  # padding (e.g. -100) is never gathered
    logp = torch.log_softmax(logits.to(torch.float64), dim=-1)
    nll = -logp.gather(-1, safe.unsqueeze(-1)).squeeze(-1)
    return _masked_mean(nll, m)


def mean_next_token_kl(base: torch.Tensor, other: torch.Tensor) -> float:
    """Mean KL(base || other) in nats of [n, vocab] next-token logits (`generation.next_token_logits`)."""
    return float(kl_divergence(base[:, None, :], other[:, None, :]).mean())
