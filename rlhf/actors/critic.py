"""Critic role for PPO: a value model (`load_value_model`, initialised from a reward model or
from the policy) trained with the clipped value loss on a `DeepSpeedRank`."""

from __future__ import annotations

import torch

from rlhf.actors.deepspeed_rank import DeepSpeedRank
from rlhf.algorithms import value_loss
from rlhf.metrics import combine_shards, mean_dicts
from rlhf.models import load_value_model
from rlhf.scoring import packed_token_values


class Critic(DeepSpeedRank):
    def _load_model(self):
        return load_value_model(self.model_path, self.dtype, self.device)

    @torch.no_grad()
    def values(self, micro_batches: list[dict]) -> list[torch.Tensor]:
        """V(s_t) [b, R] for every response token of each packed micro-batch (`rlhf.packing`)."""
        self.engine.eval()
        return [packed_token_values(self.engine, mb, self.device).cpu() for mb in micro_batches]

    def train_values(self, minibatches: list[list[dict]], counts: list[dict], clip_eps: float, agg_mode: str) -> dict:
        """One optimizer step per mini-batch, with the same global normalisers as the policy."""
        self.engine.train()

        def loss_of(mb):
            mask = mb["response_mask_BR"].to(self.device)
            loss, m = value_loss(packed_token_values(self.engine, mb, self.device), mb["values_BR"].to(self.device),
                                 mb["returns_BR"].to(self.device), mask, clip_eps=clip_eps, agg_mode=agg_mode,
                                 **count)
            metrics = {f"critic/{k}": v for k, v in m.items()} | {"critic/vf_loss": loss.item()}
            return loss, (metrics if bool(mask.any()) else None)

        steps = []
        for micro_batches, count in zip(minibatches, counts):
            grad_norm, metrics = self._accumulate(micro_batches, loss_of)
            steps.append(combine_shards(metrics) | {"critic/grad_norm": grad_norm})
        return mean_dicts(steps) | {"critic/skipped_steps": self._take_skips()}
