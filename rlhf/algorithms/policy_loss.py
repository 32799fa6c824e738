"""Policy losses (one registry) and the truncated importance-sampling correction.

A registered policy loss is called as
    fn(logprobs_BR, old_logprobs_BR, advantages_BR, response_mask_BR, **hparams) -> (loss, metrics)
with `agg_mode`, `num_tokens`, `num_seqs`, `norm_len` forwarded to `aggregate_loss`.
"""

from __future__ import annotations

import math

import torch

from rlhf.algorithms.aggregation import aggregate_loss
from rlhf.algorithms.choices import check_choice
from rlhf.algorithms.masked import masked_mean
from rlhf.algorithms.registry import Registry

POLICY_LOSSES = Registry("policy loss")
register_policy_loss = POLICY_LOSSES.register
get_policy_loss = POLICY_LOSSES.get

IS_LEVELS = ("token", "sequence")
IS_MODES = ("truncate", "mask")

# Log-ratios are clamped to +-20 before exp() so the ratio stays finite; a token that far off
# is clipped (or has a vanishing gradient) anyway.
_MAX_LOG_RATIO = 20.0


@register_policy_loss("ppo")
def ppo_policy_loss(logprobs_BR, old_logprobs_BR, advantages_BR, response_mask_BR, *, eps_low=0.2, eps_high=0.2,
                    dual_clip=None, agg_mode="token-mean", num_tokens=None, num_seqs=None, norm_len=None,
                    is_weights_BR=None):
    """PPO clipped surrogate (Schulman et al. 2017, eq. 7) as a per-token loss
        l_t = max(-A_t rho_t, -A_t clip(rho_t, 1 - eps_low, 1 + eps_high)),  rho_t = pi/pi_old,
    with decoupled clip ranges (DAPO, Yu et al. 2025, eq. 10, "clip-higher"): for A > 0 the
    ratio is clipped only above 1 + eps_high, for A < 0 only below 1 - eps_low, and in the
    clipped region the gradient is exactly 0. Dual clip (Ye et al. 2020, "Mastering Complex
    Control in MOBA Games with Deep RL"): for A < 0, l_t = min(l_t, -c A_t) with c > 1, so a
    huge ratio on a bad token cannot blow up the loss. `is_weights_BR` (detached) multiplies the
    per-token loss (see `truncated_is_weights`). Aggregated by `aggregate_loss(agg_mode, ...)`.

    Metrics (python floats, over valid tokens): clipfrac_low (A < 0 and rho < 1 - eps_low),
    clipfrac_high (A > 0 and rho > 1 + eps_high), dual_clip_frac, approx_kl = mean of the k3
    estimator rho - 1 - log rho of KL(pi_old || pi) (Schulman 2020; unbiased, >= 0 on samples
    of pi_old), ratio_mean / ratio_max / ratio_min."""
    if not (0 <= eps_low < 1 and eps_high >= 0):
        raise ValueError(f"need 0 <= eps_low < 1 and eps_high >= 0, got eps_low={eps_low}, eps_high={eps_high}")
    if dual_clip is not None and not dual_clip > 1:
        raise ValueError(f"dual_clip must be a constant > 1 (or None), got {dual_clip!r}")
    keep_BR = response_mask_BR != 0
    zero = torch.zeros((), dtype=logprobs_BR.dtype, device=logprobs_BR.device)
    # Padding may hold -inf/NaN log-probs: select it away before exp() so no NaN reaches a gradient.
    log_ratio_BR = torch.where(keep_BR, logprobs_BR - old_logprobs_BR, zero).clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    adv_BR = torch.where(keep_BR, advantages_BR.detach().to(log_ratio_BR.dtype), zero)
    ratio_BR = torch.exp(log_ratio_BR)
    loss_BR = torch.maximum(-adv_BR * ratio_BR, -adv_BR * ratio_BR.clamp(1 - eps_low, 1 + eps_high))
    dual_BR = torch.zeros_like(keep_BR)
    if dual_clip is not None:
        bound_BR = -adv_BR * dual_clip
        dual_BR = (adv_BR < 0) & (loss_BR > bound_BR)
        loss_BR = torch.where(adv_BR < 0, torch.minimum(loss_BR, bound_BR), loss_BR)
    if is_weights_BR is not None:
        loss_BR = loss_BR * torch.where(keep_BR, is_weights_BR.detach().to(loss_BR.dtype), zero)
    loss = aggregate_loss(loss_BR, keep_BR, agg_mode, num_tokens=num_tokens, num_seqs=num_seqs, norm_len=norm_len)

    with torch.no_grad():
        ratio, lr = ratio_BR.detach(), log_ratio_BR.detach()
        any_valid = keep_BR.any()
        # one device->host copy for all metrics
        values = torch.stack([
            masked_mean(((ratio < 1 - eps_low) & (adv_BR < 0)).float(), keep_BR),
            masked_mean(((ratio > 1 + eps_high) & (adv_BR > 0)).float(), keep_BR),
            masked_mean(dual_BR.float(), keep_BR),
            masked_mean((ratio - 1 - lr).float(), keep_BR),
            torch.where(any_valid, masked_mean(ratio.float(), keep_BR), 1.0),
            torch.where(any_valid, torch.where(keep_BR, ratio, -math.inf).max().float(), 1.0),
            torch.where(any_valid, torch.where(keep_BR, ratio, math.inf).min().float(), 1.0),
        ]).tolist()
    names = ("clipfrac_low", "clipfrac_high", "dual_clip_frac", "approx_kl", "ratio_mean", "ratio_max", "ratio_min")
    return loss, dict(zip(names, values))


def truncated_is_weights(old_logprobs_BR, rollout_logprobs_BR, response_mask_BR, *, cap=2.0, level="token",
                         mode="truncate"):
    """Importance weights w = pi_old / pi_rollout for tokens sampled by another engine (e.g.
    vLLM in bf16) than the one that scores pi_old: truncated importance sampling (Espeholt et
    al. 2018, IMPALA: V-trace's truncated ratio min(rho_bar, pi/mu), here rho_bar = cap; Yao
    et al. 2025, "Your efficient RL framework secretly brings you off-policy RL training").
    level "token": one weight per token; "sequence": the product over the sequence,
    exp(sum of log-ratios), on every token of it. mode "truncate": min(w, cap); "mask": w, but
    0 where w > cap. Detached; 0 at masked positions. Metrics: is_mean (mean final weight),
    is_capped_frac (fraction of tokens whose weight exceeded cap), logprob_abs_diff_mean
    (mean |log pi_old - log pi_rollout| per token)."""
    check_choice("importance-sampling level", level, IS_LEVELS)
    check_choice("importance-sampling mode", mode, IS_MODES)
    if not cap > 0:
        raise ValueError(f"cap must be positive, got {cap!r}")
    keep_BR = response_mask_BR != 0
    with torch.no_grad():
        diff_BR = torch.where(keep_BR, old_logprobs_BR.float() - rollout_logprobs_BR.float(), 0.0)
        log_w_BR = diff_BR if level == "token" else diff_BR.sum(1, keepdim=True).expand_as(diff_BR)
        log_cap = math.log(cap)
        over_BR = log_w_BR > log_cap
        w_BR = torch.exp(log_w_BR.clamp(max=log_cap))  # min(w, cap) computed in log space: no overflow
        if mode == "mask":
            w_BR = torch.where(over_BR, 0.0, w_BR)
        w_BR = torch.where(keep_BR, w_BR, 0.0)
        values = torch.stack([masked_mean(w_BR, keep_BR), masked_mean(over_BR.float(), keep_BR),
                              masked_mean(diff_BR.abs(), keep_BR)]).tolist()
    return w_BR, dict(zip(("is_mean", "is_capped_frac", "logprob_abs_diff_mean"), values))
