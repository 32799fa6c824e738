"""Advantage estimators, one registry. Every estimator is called the same way:

    fn(*, response_mask_BR, scores_B=None, group_size=1, token_rewards_BR=None, values_BR=None,
       **hparams) -> (advantages_BR, returns_BR)

Rows are grouped contiguously: rows [g*n, (g+1)*n) are the n = group_size samples of prompt g.
Outcome estimators broadcast one advantage per sequence over its response tokens and return
it as the returns too (there is no critic to fit). Known hparams: eps (1e-6), gamma (1.0),
lam (1.0), group_baseline (False); an estimator ignores the ones it does not use, so one
call site can serve every estimator. Outputs are float32 and exactly 0 at masked positions.
"""

from __future__ import annotations

import torch

from rlhf.algorithms.masked import masked_whiten
from rlhf.algorithms.registry import Registry

ADVANTAGE_ESTIMATORS = Registry("advantage estimator")
get_advantage_estimator = ADVANTAGE_ESTIMATORS.get


def register_advantage(name: str, needs_critic: bool = False):
    """Registers an estimator; `needs_critic`: it reads `values_BR` from a learned critic (so only
    a recipe that trains one may select it)."""
    def wrap(fn):
        fn.needs_critic = needs_critic
        return ADVANTAGE_ESTIMATORS.register(name)(fn)
    return wrap


def estimator_needs_critic(name: str) -> bool:
    return getattr(get_advantage_estimator(name), "needs_critic", False)


def _grouped_scores(name: str, scores_B, group_size: int, response_mask_BR: torch.Tensor) -> torch.Tensor:
    """scores_G_N (one row per prompt), after checking every input the estimator needs."""
    if scores_B is None:
        raise ValueError(f"advantage estimator {name!r} needs scores_B (one reward per sequence)")
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    if scores_B.dim() != 1 or scores_B.numel() != response_mask_BR.shape[0]:
        raise ValueError(f"scores_B must have one entry per row of response_mask_BR "
                         f"({response_mask_BR.shape[0]}), got shape {tuple(scores_B.shape)}")
    if scores_B.numel() % group_size:
        raise ValueError(f"{scores_B.numel()} scores do not split into groups of {group_size}")
    return scores_B.float().view(-1, group_size)


def _broadcast(adv_B: torch.Tensor, response_mask_BR: torch.Tensor):
    adv_BR = torch.where(response_mask_BR != 0, adv_B[:, None], torch.zeros((), device=adv_B.device))
    return adv_BR, adv_BR


@register_advantage("grpo")
def grpo_advantages(*, response_mask_BR, scores_B=None, group_size=1, eps=1e-6, **_):
    """GRPO outcome supervision (Shao et al. 2024, DeepSeekMath, section 4.1.2):
    A_i = (r_i - mean(r_group)) / (std(r_group) + eps), with the unbiased std (torch.std,
    divisor n - 1) as TRL and verl compute it; the paper does not say which. A group of
    equal rewards, and a group of one, gets 0."""
    g_GN = _grouped_scores("grpo", scores_B, group_size, response_mask_BR)
    std_G1 = g_GN.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(g_GN[:, :1])
    return _broadcast(((g_GN - g_GN.mean(1, keepdim=True)) / (std_G1 + eps)).view(-1), response_mask_BR)


@register_advantage("drgrpo")
def drgrpo_advantages(*, response_mask_BR, scores_B=None, group_size=1, **_):
    """Dr. GRPO (Liu et al. 2025, "Understanding R1-Zero-like training", Figure 1):
    A_i = r_i - mean(r_group); the std division is dropped because it up-weights groups that
    are nearly all right or all wrong. Its constant-length normalisation is the
    `seq-mean-token-sum-norm` aggregation, not part of the advantage."""
    g_GN = _grouped_scores("drgrpo", scores_B, group_size, response_mask_BR)
    return _broadcast((g_GN - g_GN.mean(1, keepdim=True)).view(-1), response_mask_BR)


@register_advantage("rloo")
def rloo_advantages(*, response_mask_BR, scores_B=None, group_size=1, **_):
    """RLOO (Ahmadian et al. 2024, "Back to Basics", section 3; Kool et al. 2019):
    A_i = r_i - (1/(n-1)) sum_{j != i} r_j, an unbiased leave-one-out baseline."""
    g_GN = _grouped_scores("rloo", scores_B, group_size, response_mask_BR)
    if group_size < 2:
        raise ValueError("advantage estimator 'rloo' needs group_size >= 2 (a leave-one-out baseline)")
    baseline_GN = (g_GN.sum(1, keepdim=True) - g_GN) / (group_size - 1)
    return _broadcast((g_GN - baseline_GN).view(-1), response_mask_BR)


def _last_token_index(keep_BR: torch.Tensor) -> torch.Tensor:
    R = keep_BR.shape[1]
    return (R - 1) - keep_BR.flip(1).int().argmax(1)


def _reward_to_go(rewards_BR: torch.Tensor, keep_BR: torch.Tensor, gamma: float) -> torch.Tensor:
    """G_t = sum_{k >= t, valid} gamma^(#valid tokens between) r_k; masked tokens are skipped."""
    if gamma == 1.0:  # no discount: a reversed cumulative sum (rewards are 0 where masked)
        return torch.where(keep_BR, rewards_BR.flip(1).cumsum(1).flip(1), 0.0)
    out_BR = torch.zeros_like(rewards_BR)
    running_B = torch.zeros_like(rewards_BR[:, 0])
    for t in reversed(range(rewards_BR.shape[1])):
        running_B = torch.where(keep_BR[:, t], rewards_BR[:, t] + gamma * running_B, running_B)
        out_BR[:, t] = torch.where(keep_BR[:, t], running_B, 0.0)
    return out_BR


@register_advantage("reinforce_pp")
def reinforce_pp_advantages(*, response_mask_BR, scores_B=None, group_size=1, token_rewards_BR=None, gamma=1.0,
                            group_baseline=False, **_):
    """REINFORCE++ (Hu 2025, arXiv:2501.03262, section 3): returns G_t = sum_k gamma^(k-t) r_k,
    advantages = the returns whitened over every valid token of the batch passed in (so call
    it on the whole step's batch). Rewards: `scores_B` at each sequence's last valid token
    plus optional per-token `token_rewards_BR` (e.g. a KL penalty). `group_baseline=True`
    subtracts the group mean from scores_B first (REINFORCE++-baseline)."""
    if scores_B is None and token_rewards_BR is None:
        raise ValueError("advantage estimator 'reinforce_pp' needs scores_B or token_rewards_BR")
    keep_BR = response_mask_BR != 0
    rewards_BR = torch.zeros(keep_BR.shape, dtype=torch.float32, device=keep_BR.device)
    if token_rewards_BR is not None:
        rewards_BR = torch.where(keep_BR, token_rewards_BR.float(), 0.0)
    if scores_B is not None:
        g_GN = _grouped_scores("reinforce_pp", scores_B, group_size, response_mask_BR)
        if group_baseline:
            g_GN = g_GN - g_GN.mean(1, keepdim=True)
        outcome_B = torch.where(keep_BR.any(1), g_GN.reshape(-1), 0.0)
        rewards_BR = rewards_BR.scatter_add(1, _last_token_index(keep_BR)[:, None], outcome_B[:, None])
    elif group_baseline:
        raise ValueError("advantage estimator 'reinforce_pp' with group_baseline=True needs scores_B")
    returns_BR = _reward_to_go(rewards_BR, keep_BR, gamma)
    return masked_whiten(returns_BR, keep_BR), returns_BR


@register_advantage("gae", needs_critic=True)
def gae_advantages(*, response_mask_BR, token_rewards_BR=None, values_BR=None, gamma=1.0, lam=1.0, **_):
    """GAE (Schulman et al. 2016, eq. 16): A_t = sum_l (gamma*lam)^l delta_{t+l} with
    delta_t = r_t + gamma V_{t+1} - V_t. The value after the last valid token is 0 (the
    episode ends there); masked tokens inside a response (e.g. tool output) are skipped, so
    the recursion links each valid token to the next valid one. Returns = A + V, the critic's
    targets (Schulman et al. 2017)."""
    if token_rewards_BR is None or values_BR is None:
        missing = [n for n, v in (("token_rewards_BR", token_rewards_BR), ("values_BR", values_BR)) if v is None]
        raise ValueError(f"advantage estimator 'gae' needs token_rewards_BR and values_BR; "
                         f"missing: {', '.join(missing)}")
    keep_BR = response_mask_BR != 0
    rewards_BR = torch.where(keep_BR, token_rewards_BR.float(), 0.0)
    values_BR = torch.where(keep_BR, values_BR.detach().float(), 0.0)
    adv_BR = torch.zeros_like(rewards_BR)
    next_value_B = torch.zeros_like(rewards_BR[:, 0])
    next_adv_B = torch.zeros_like(next_value_B)
    for t in reversed(range(rewards_BR.shape[1])):
        delta_B = rewards_BR[:, t] + gamma * next_value_B - values_BR[:, t]
        adv_B = delta_B + gamma * lam * next_adv_B
        keep_B = keep_BR[:, t]
        next_adv_B = torch.where(keep_B, adv_B, next_adv_B)
        next_value_B = torch.where(keep_B, values_BR[:, t], next_value_B)
        adv_BR[:, t] = torch.where(keep_B, adv_B, 0.0)
    return adv_BR, torch.where(keep_BR, adv_BR + values_BR, 0.0)
