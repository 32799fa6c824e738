"""The RL objective a policy update minimises, one micro-batch at a time: the registered
policy loss, optionally weighted by truncated importance sampling against the rollout
engine, plus an optional KL-to-reference term. The trainer only computes log-probs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from rlhf.algorithms.aggregation import aggregate_loss
from rlhf.algorithms.kl import kl_estimate
from rlhf.algorithms.policy_loss import get_policy_loss, truncated_is_weights


@dataclass
class PolicyLossSettings:
    name: str = "ppo"
    eps_low: float = 0.2
    eps_high: float = 0.2
    dual_clip: Optional[float] = None
    agg_mode: str = "token-mean"
    norm_len: int = 16  # constant length of Dr.GRPO's seq-mean-token-sum-norm
    kl_coef: float = 0.0
    kl_estimator: str = "k3"
    temperature: float = 1.0  # of the trainer's log-probs (the objective takes them computed)
    rollout_is: Optional[dict] = None  # truncated IS vs the rollout engine: {cap, level, mode}; None: off


def rl_objective(logprobs_BR, old_logprobs_BR, advantages_BR, response_mask_BR, settings: PolicyLossSettings, *,
                 num_tokens, num_seqs, ref_logprobs_BR=None, rollout_logprobs_BR=None):
    """(loss, metrics) of one micro-batch. `num_tokens` / `num_seqs` are the GLOBAL counts of
    the mini-batch (see `aggregate_loss`), so the values of every micro-batch on every rank
    add up to the mini-batch's loss. `rollout_logprobs_BR` is needed when `settings.rollout_is`
    is set (weights pi_old / pi_rollout), `ref_logprobs_BR` when `settings.kl_coef` > 0.

    Metrics: the policy loss's own as `actor/<name>`, the importance weights' as
    `offpolicy/<name>`, `actor/pg_loss` (the policy loss alone) and `actor/kl_loss` (the
    aggregated KL estimate, before `kl_coef`)."""
    norms = dict(num_tokens=num_tokens, num_seqs=num_seqs, norm_len=settings.norm_len)
    extra, is_metrics = {}, {}
    if settings.rollout_is is not None:  # pi_old / pi_rollout, truncated
        if rollout_logprobs_BR is None:
            raise ValueError("settings.rollout_is needs rollout_logprobs_BR: sample with SamplingSettings(logprobs=True)")
        extra["is_weights_BR"], is_metrics = truncated_is_weights(
            old_logprobs_BR, rollout_logprobs_BR, response_mask_BR, **settings.rollout_is)
    value, metrics = get_policy_loss(settings.name)(
        logprobs_BR, old_logprobs_BR, advantages_BR, response_mask_BR, eps_low=settings.eps_low,
        eps_high=settings.eps_high, dual_clip=settings.dual_clip, agg_mode=settings.agg_mode, **extra, **norms)
    metrics = {f"actor/{k}": v for k, v in metrics.items()}
    metrics |= {f"offpolicy/{k}": v for k, v in is_metrics.items()}
    metrics["actor/pg_loss"] = value.item()
    if settings.kl_coef > 0:
        if ref_logprobs_BR is None:
            raise ValueError("settings.kl_coef > 0 needs ref_logprobs_BR")
        kl = aggregate_loss(kl_estimate(logprobs_BR, ref_logprobs_BR, settings.kl_estimator), response_mask_BR,
                            settings.agg_mode, **norms)
        value = value + settings.kl_coef * kl
        metrics["actor/kl_loss"] = kl.item()
    return value, metrics
