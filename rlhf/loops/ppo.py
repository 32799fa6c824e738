"""The PPO step (Ouyang et al. 2022 / Stiennon et al. 2020 recipe) on the shared RL loop:
per-token rewards -beta * KL(pi_old || pi_ref) plus the sequence score at its last token,
GAE over a learned critic (Schulman et al. 2016), whitened advantages, the clipped policy
loss and the clipped value loss over `trainer.epochs` x `trainer.mini_batches` updates.
beta is fixed or adapted towards `algorithm.kl_target` (Ziegler et al. 2019)."""

from __future__ import annotations

import dataclasses

import torch

from rlhf.algorithms import AdaptiveKLController, FixedKLController, get_advantage_estimator, kl_estimate
from rlhf.algorithms.kl import kl_shaped_rewards
from rlhf.algorithms.masked import masked_mean, masked_whiten
from rlhf.batch import update_shards
from rlhf.loops.rl import RLLoop
from rlhf.metrics import combine_shards


class PPOLoop(RLLoop):
    def __init__(self, cfg, roles, *args, **kwargs):
        super().__init__(cfg, roles, *args, **kwargs)
        a = cfg.algorithm
        self.kl_ctl = AdaptiveKLController(a.kl_coef, a.kl_target, a.kl_horizon) if a.kl_controller == "adaptive" \
            else FixedKLController(a.kl_coef)
        self._extra: dict = {}

    def values(self, batch: dict) -> torch.Tensor:
        with self.timer.timed("values"):
            return self._score(self.roles.critic, batch, lambda c, mbs: c.values.remote(mbs))

    def prepare(self, batch: dict, scores: torch.Tensor) -> dict:
        a, mask = self.cfg.algorithm, batch["response_mask_BR"]
        batch["old_logprobs_BR"] = self.old_logprobs(batch)
        ref = self.reference_logprobs(batch)
        batch["values_BR"] = self.values(batch)
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

    def loss_settings(self):
        # the KL is in the reward; with kl_penalty=loss it is also a loss term
        settings = super().loss_settings()
        return settings if self.cfg.algorithm.kl_penalty == "loss" else dataclasses.replace(settings, kl_coef=0.0)

    def update(self, batch: dict) -> dict:
        metrics = super().update(batch)
        t = self.cfg.trainer
        per_rank, counts = update_shards(batch, len(self.roles.critic), t.mini_batches, t.epochs,
                                         self.cfg.micro_batch_tokens(), self.tokenizer.pad_token_id)
        c = self.cfg.critic
        with self.timer.timed("critic"):
            critic = self.roles.critic.scatter(
                lambda cr, shards: cr.train_values.remote(shards, counts, c.value_clip, self.cfg.algorithm.loss_agg),
                per_rank)
        return metrics | combine_shards(critic) | self._extra

    def state_dict(self) -> dict:
        return super().state_dict() | {"kl_coef": self.kl_ctl.value}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.kl_ctl.value = state["kl_coef"]
