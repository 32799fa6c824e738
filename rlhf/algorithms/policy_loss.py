"""Policy losses, one registry, plus the truncated importance-sampling correction."""

from __future__ import annotations

from typing import Callable

import torch

from rlhf.algorithms.aggregation import aggregate_loss
from rlhf.algorithms.masked import masked_mean

POLICY_LOSSES: dict[str, Callable] = {}


def register_policy_loss(name: str):
    def wrap(fn):
        if name in POLICY_LOSSES:
            raise ValueError(f"policy loss {name!r} is already registered")
        POLICY_LOSSES[name] = fn
        return fn
    return wrap


def get_policy_loss(name: str) -> Callable:
    if name not in POLICY_LOSSES:
        raise ValueError(f"unknown policy loss {name!r}; valid: {', '.join(sorted(POLICY_LOSSES))}")
    return POLICY_LOSSES[name]


@register_policy_loss("ppo")
def ppo_policy_loss(logprobs_BR, old_logprobs_BR, advantages_BR, response_mask_BR, *, eps_low=0.2, eps_high=0.2,
                    dual_clip=None, agg_mode="token-mean", num_tokens=None, num_seqs=None, norm_len=None,
                    is_weights_BR=None):
    """Clipped surrogate (Schulman et al. 2017, eq. 7) with decoupled clip ranges
    (DAPO eq. 10: ratio in [1 - eps_low, 1 + eps_high]) and optional dual clip (Ye et al. 2020,
    eq. 5: for A < 0 the loss is bounded by -c * A). Returns (loss, metrics)."""
    mask = response_mask_BR.float()
    log_ratio = (logprobs_BR - old_logprobs_BR).clamp(-20.0, 20.0)
    ratio = torch.exp(log_ratio)
    adv = advantages_BR
    unclipped = -adv * ratio
    clipped = -adv * ratio.clamp(1 - eps_low, 1 + eps_high)
    loss_BR = torch.maximum(unclipped, clipped)
    dual_active = torch.zeros_like(mask, dtype=torch.bool)
    if dual_clip is not None:
        bound = -adv * dual_clip
        dual_active = (adv < 0) & (loss_BR > bound)
        loss_BR = torch.where(adv < 0, torch.minimum(loss_BR, bound), loss_BR)
    if is_weights_BR is not None:
        loss_BR = loss_BR * is_weights_BR.detach()
    loss = aggregate_loss(loss_BR, mask, agg_mode, num_tokens=num_tokens, num_seqs=num_seqs, norm_len=norm_len)
    with torch.no_grad():
        valid = mask > 0
        r = ratio[valid] if valid.any() else torch.ones(1)
        metrics = {
            "clipfrac_high": float(masked_mean(((ratio > 1 + eps_high) & (adv > 0)).float(), mask)),
            "clipfrac_low": float(masked_mean(((ratio < 1 - eps_low) & (adv < 0)).float(), mask)),
            "dual_clip_frac": float(masked_mean(dual_active.float(), mask)),
            # k3 estimate of KL(pi_old || pi): unbiased and non-negative (Schulman 2020)
            "approx_kl": float(masked_mean(torch.exp(-log_ratio) - 1 + log_ratio, mask)),
            "ratio_mean": float(r.mean()), "ratio_max": float(r.max()), "ratio_min": float(r.min()),
        }
    return loss, metrics


def truncated_is_weights(old_logprobs_BR, rollout_logprobs_BR, response_mask_BR, *, cap=2.0, level="token",
                         mode="truncate"):
    """Importance weights pi_old / pi_rollout for samples drawn by another engine or a stale
    policy (truncated IS, Espeholt et al. 2018; "Your efficient RL framework secretly brings
    you off-policy RL training", Yao et al. 2025). `truncate` caps the weight at `cap`,
    `mask` zeroes weights above it; `sequence` uses the product over the sequence. Detached."""
    if level not in ("token", "sequence") or mode not in ("truncate", "mask"):
        raise ValueError(f"level must be token|sequence and mode truncate|mask, got {level!r}, {mode!r}")
    mask = response_mask_BR.float()
    with torch.no_grad():
        log_w = (old_logprobs_BR - rollout_logprobs_BR) * mask
        if level == "sequence":
            log_w = log_w.sum(1, keepdim=True).expand_as(mask)
        w = torch.exp(log_w.clamp(max=20.0))
        over = w > cap
        w = w.clamp(max=cap) if mode == "truncate" else torch.where(over, torch.zeros_like(w), w)
        w = w * mask
        metrics = {"is_mean": float(masked_mean(w, mask)), "is_capped_frac": float(masked_mean(over.float(), mask)),
                   "logprob_abs_diff_mean": float(masked_mean((old_logprobs_BR - rollout_logprobs_BR).abs(), mask))}
    return w, metrics
