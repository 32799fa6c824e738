"""The PPO step (Ouyang et al. 2022 / Stiennon et al. 2020 recipe) on the shared RL loop:
per-token rewards -beta * KL(pi_old || pi_ref) plus the sequence score at its last token,
GAE over a learned critic (Schulman et al. 2016), whitened advantages, the clipped policy
loss and the clipped value loss over `trainer.epochs` x `trainer.mini_batches` updates.
beta is fixed or adapted towards `algorithm.kl_target` (Ziegler et al. 2019)."""

from __future__ import annotations

import torch

from rlhf.algorithms import AdaptiveKLController, FixedKLController, get_advantage_estimator, kl_estimate
from rlhf.algorithms.masked import masked_mean, masked_whiten
from rlhf.batch import split_rows, trim_padding
from rlhf.metrics import combine_shards
from rlhf.recipes.rl import RLLoop


def kl_shaped_rewards(scores_B: torch.Tensor, kl_BR: torch.Tensor, mask_BR: torch.Tensor, beta: float):
    """r_t = -beta * KL_t on every response token, plus the score on the last one."""
    keep = mask_BR > 0
    rewards = torch.where(keep, -beta * kl_BR, 0.0)
    positions = torch.arange(mask_BR.shape[1]).expand_as(mask_BR)
    last = torch.where(keep, positions, -1).max(1).values
    has = last >= 0
    rewards[has.nonzero(as_tuple=True)[0], last[has]] += scores_B[has]
    return rewards


class PPOLoop(RLLoop):
    def __init__(self, cfg, roles, *args, **kwargs):
        super().__init__(cfg, roles, *args, **kwargs)
        a = cfg.algorithm
        if roles.critic is None or roles.reference is None:
            raise ValueError("PPO needs a critic (algorithm.adv_estimator=gae) and a reference (algorithm.kl_coef > 0)")
        self.kl_ctl = AdaptiveKLController(a.kl_coef, a.kl_target, a.kl_horizon) if a.kl_controller == "adaptive" \
            else FixedKLController(a.kl_coef)
        self._extra: dict = {}

    def prepare(self, batch: dict, scores: torch.Tensor) -> dict:
        a, temp, r = self.cfg.algorithm, self.cfg.rollout.temperature, self.roles
        mask = batch["response_mask_BR"]
        with self._timed("old_logprobs"):
            batch["old_logprobs_BR"] = torch.cat(r.trainers.scatter(
                lambda tr, s: tr.logprobs.remote(trim_padding(s), temp), split_rows(batch, len(r.trainers))))
        with self._timed("reference"):
            (ref,) = r.reference.each(lambda x: x.logprobs.remote(batch, temp))
        with self._timed("values"):
            batch["values_BR"] = torch.cat(r.critic.scatter(
                lambda c, s: c.values.remote(trim_padding(s)), split_rows(batch, len(r.critic))))
        kl_BR = kl_estimate(batch["old_logprobs_BR"], ref, a.kl_estimator) * mask
        rewards = kl_shaped_rewards(scores, kl_BR, mask, self.kl_ctl.value)
        adv, returns = get_advantage_estimator(a.adv_estimator)(
            response_mask_BR=mask, token_rewards_BR=rewards, values_BR=batch["values_BR"], scores_B=scores,
            group_size=self.cfg.rollout.n, gamma=a.gamma, lam=a.lam)
        batch["advantages_BR"], batch["returns_BR"] = masked_whiten(adv, mask > 0), returns
        seq_kl = float(kl_BR.sum(1).mean())
        self._extra = {"ppo/kl_coef": self.kl_ctl.value, "ppo/kl_per_seq": seq_kl,
                       "ppo/value_mean": float(masked_mean(batch["values_BR"], mask > 0)),
                       "ppo/return_mean": float(masked_mean(returns, mask > 0))}
        self.kl_ctl.update(seq_kl, n_steps=len(scores))
        return batch

    def update(self, batch: dict) -> dict:
        metrics = super().update(batch)
        per_rank, counts = self.shards(batch, len(self.roles.critic))
        c = self.cfg.critic
        with self._timed("critic"):
            critic = self.roles.critic.scatter(
                lambda cr, shards: cr.train_values.remote(shards, counts, c.value_clip, self.cfg.algorithm.loss_agg),
                per_rank)
        return metrics | combine_shards(critic) | self._extra

    def state_dict(self) -> dict:
        return super().state_dict() | {"kl_coef": self.kl_ctl.value}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.kl_ctl.value = state["kl_coef"]
