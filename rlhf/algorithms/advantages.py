"""Advantage estimators, one registry. Every estimator is called the same way:

    fn(*, response_mask_BR, scores_B=None, group_size=1, token_rewards_BR=None, values_BR=None,
       **hparams) -> (advantages_BR, returns_BR)

Rows are grouped contiguously: rows [g*n, (g+1)*n) are the n = group_size samples of prompt g.
Outcome estimators broadcast one advantage per sequence over its response tokens. Known
hparams: eps (1e-6), gamma (1.0), lam (1.0), group_baseline (False); others are ignored.
"""

from __future__ import annotations

from typing import Callable

import torch

from rlhf.algorithms.masked import masked_whiten

ADVANTAGE_ESTIMATORS: dict[str, Callable] = {}


def register_advantage(name: str):
    def wrap(fn):
        if name in ADVANTAGE_ESTIMATORS:
            raise ValueError(f"advantage estimator {name!r} is already registered")
        ADVANTAGE_ESTIMATORS[name] = fn
        return fn
    return wrap


def get_advantage_estimator(name: str) -> Callable:
    if name not in ADVANTAGE_ESTIMATORS:
        raise ValueError(f"unknown advantage estimator {name!r}; valid: {', '.join(sorted(ADVANTAGE_ESTIMATORS))}")
    return ADVANTAGE_ESTIMATORS[name]


def _groups(scores_B, group_size: int, name: str) -> torch.Tensor:
    if scores_B is None:
        raise ValueError(f"advantage estimator {name!r} needs scores_B (one reward per sequence)")
    if scores_B.numel() % group_size:
        raise ValueError(f"{scores_B.numel()} scores do not form groups of {group_size}")
    return scores_B.float().view(-1, group_size)


def _broadcast(adv_B: torch.Tensor, mask_BR: torch.Tensor):
    adv_BR = adv_B[:, None] * mask_BR
    return adv_BR, adv_BR


@register_advantage("grpo")
def grpo_advantages(*, response_mask_BR, scores_B=None, group_size=1, eps=1e-6, **_):
    """GRPO outcome supervision (Shao et al. 2024, section 4.1.2): (r - mean_group) / (std_group + eps),
    std unbiased (torch.std), as in TRL and verl. A group of equal rewards gets 0."""
    g = _groups(scores_B, group_size, "grpo")
    std = g.std(dim=1, keepdim=True) if group_size > 1 else torch.zeros_like(g[:, :1])
    return _broadcast(((g - g.mean(1, keepdim=True)) / (std + eps)).view(-1), response_mask_BR)


@register_advantage("drgrpo")
def drgrpo_advantages(*, response_mask_BR, scores_B=None, group_size=1, **_):
    """Dr. GRPO (Liu et al. 2025, eq. 3): r - mean_group, no std division; its length
    normalisation is the `seq-mean-token-sum-norm` aggregation."""
    g = _groups(scores_B, group_size, "drgrpo")
    return _broadcast((g - g.mean(1, keepdim=True)).view(-1), response_mask_BR)


@register_advantage("rloo")
def rloo_advantages(*, response_mask_BR, scores_B=None, group_size=1, **_):
    """RLOO (Ahmadian et al. 2024, eq. 5): r_i - mean_{j != i} r_j."""
    if group_size < 2:
        raise ValueError("rloo needs group_size >= 2")
    g = _groups(scores_B, group_size, "rloo")
    baseline = (g.sum(1, keepdim=True) - g) / (group_size - 1)
    return _broadcast((g - baseline).view(-1), response_mask_BR)


@register_advantage("reinforce_pp")
def reinforce_pp_advantages(*, response_mask_BR, scores_B=None, group_size=1, group_baseline=False, **_):
    """REINFORCE++ (Hu 2025): returns whitened over the whole batch's tokens; with
    `group_baseline` the group mean is subtracted first (REINFORCE++-baseline)."""
    g = _groups(scores_B, group_size, "reinforce_pp")
    if group_baseline:
        g = g - g.mean(1, keepdim=True)
    returns_BR = g.view(-1)[:, None] * response_mask_BR
    return masked_whiten(returns_BR, response_mask_BR), returns_BR


@register_advantage("gae")
def gae_advantages(*, response_mask_BR, token_rewards_BR=None, values_BR=None, gamma=1.0, lam=1.0, **_):
    """GAE (Schulman et al. 2016, eq. 16): A_t = sum_l (gamma*lam)^l delta_{t+l},
    delta_t = r_t + gamma V_{t+1} - V_t, with V = 0 after the last response token.
    Returns = A + V (the value targets)."""
    if token_rewards_BR is None or values_BR is None:
        raise ValueError("gae needs token_rewards_BR and values_BR")
    mask = response_mask_BR.float()
    values = values_BR.float() * mask
    rewards = token_rewards_BR.float() * mask
    adv = torch.zeros_like(rewards)
    last = torch.zeros_like(rewards[:, 0])
    R = rewards.shape[1]
    for t in reversed(range(R)):
        next_v = values[:, t + 1] if t + 1 < R else torch.zeros_like(last)
        delta = rewards[:, t] + gamma * next_v - values[:, t]
        last = (delta + gamma * lam * last) * mask[:, t]
        adv[:, t] = last
    return adv, (adv + values) * mask
