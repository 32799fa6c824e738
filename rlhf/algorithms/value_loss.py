"""Critic loss for PPO."""

from __future__ import annotations

import torch

from rlhf.algorithms.aggregation import aggregate_loss
from rlhf.algorithms.masked import masked_mean


def value_loss(values_BR, old_values_BR, returns_BR, response_mask_BR, *, clip_eps=0.2, agg_mode="token-mean",
               num_tokens=None, num_seqs=None, norm_len=None):
    """PPO clipped value loss (Schulman et al. 2017, as in OpenAI baselines' ppo2):
        l_t = 0.5 * max((V_t - R_t)^2, (V_old_t + clip(V_t - V_old_t, -eps, eps) - R_t)^2),
    the critic's counterpart of the policy clip: it cannot move a value more than eps from the
    one it had at rollout time by making the loss smaller. `clip_eps=None` gives the plain
    0.5 (V - R)^2. Aggregated by `aggregate_loss(agg_mode, ...)`. Metrics: vf_clipfrac (the
    clipped term is the larger one), value_mean."""
    keep_BR = response_mask_BR != 0
    zero = torch.zeros((), dtype=values_BR.dtype, device=values_BR.device)
    values_BR = torch.where(keep_BR, values_BR, zero)
    old_BR = torch.where(keep_BR, old_values_BR.detach().to(values_BR.dtype), zero)
    returns_BR = torch.where(keep_BR, returns_BR.detach().to(values_BR.dtype), zero)
    err_BR = (values_BR - returns_BR) ** 2
    if clip_eps is None:
        loss_BR, clipped_BR = 0.5 * err_BR, torch.zeros_like(keep_BR)
    else:
        v_clipped_BR = old_BR + (values_BR - old_BR).clamp(-clip_eps, clip_eps)
        err_clipped_BR = (v_clipped_BR - returns_BR) ** 2
        loss_BR, clipped_BR = 0.5 * torch.maximum(err_BR, err_clipped_BR), err_clipped_BR > err_BR
    loss = aggregate_loss(loss_BR, keep_BR, agg_mode, num_tokens=num_tokens, num_seqs=num_seqs, norm_len=norm_len)
    with torch.no_grad():
        values = torch.stack([masked_mean(clipped_BR.float(), keep_BR),
                              masked_mean(values_BR.detach().float(), keep_BR)]).tolist()
    return loss, dict(zip(("vf_clipfrac", "value_mean"), values))
