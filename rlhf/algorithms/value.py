"""Critic loss and policy entropy."""

from __future__ import annotations

import torch

from rlhf.algorithms.aggregation import aggregate_loss
from rlhf.algorithms.masked import masked_mean


def value_loss(values_BR, old_values_BR, returns_BR, response_mask_BR, *, clip_eps=0.2, agg_mode="token-mean",
               num_tokens=None, num_seqs=None, norm_len=None):
    """PPO clipped value loss: 0.5 * max((V - R)^2, (clip(V, V_old +- eps) - R)^2)."""
    mask = response_mask_BR.float()
    clipped = old_values_BR + (values_BR - old_values_BR).clamp(-clip_eps, clip_eps)
    err, err_clipped = (values_BR - returns_BR) ** 2, (clipped - returns_BR) ** 2
    loss_BR = 0.5 * torch.maximum(err, err_clipped)
    loss = aggregate_loss(loss_BR, mask, agg_mode, num_tokens=num_tokens, num_seqs=num_seqs, norm_len=norm_len)
    with torch.no_grad():
        metrics = {"vf_clipfrac": float(masked_mean((err_clipped > err).float(), mask)),
                   "value_mean": float(masked_mean(values_BR, mask))}
    return loss, metrics


def entropy_from_logits(logits_BTV: torch.Tensor) -> torch.Tensor:
    """H = logsumexp(z) - sum softmax(z) z, per position, in fp32."""
    z = logits_BTV.float()
    p = torch.softmax(z, dim=-1)
    return torch.logsumexp(z, dim=-1) - (p * z).sum(-1)
