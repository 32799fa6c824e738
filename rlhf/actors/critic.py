"""Critic role for PPO: a value model (`load_value_model`, initialised from a reward model or
from the policy) trained with the clipped value loss on a `DeepSpeedRank`."""

from __future__ import annotations

import torch

from rlhf.actors.deepspeed_rank import DeepSpeedRank
from rlhf.algorithms import value_loss
from rlhf.metrics import combine_shards, mean_dicts
from rlhf.models import load_value_model, position_ids_from_mask, token_values


class Critic(DeepSpeedRank):
    def _load_model(self):
        return load_value_model(self.model_path, self.dtype, self.device)

    def _values(self, mb: dict) -> torch.Tensor:
        """V(s_t) for every response token t [B, R]: the head at the token before it."""
        attn = mb["attention_mask_BT"].to(self.device)
        inputs = {"input_ids": mb["input_ids_BT"].to(self.device), "attention_mask": attn,
                  "position_ids": position_ids_from_mask(attn)}
        R = mb["response_mask_BR"].shape[1]
        return token_values(self.engine, inputs)[:, -R - 1:-1]

    @torch.no_grad()
    def values(self, batch: dict) -> torch.Tensor:
        self.engine.eval()
        return torch.cat([self._values(mb).cpu() for mb in self._micro(batch)])

    def train_values(self, minibatches: list[dict], counts: list[dict], clip_eps: float, agg_mode: str) -> dict:
        """One optimizer step per mini-batch, with the same global normalisers as the policy."""
        self.engine.train()
        steps = []
        for shard, count in zip(minibatches, counts):
            micro = []
            for mb in self._micro(shard):
                loss, m = value_loss(self._values(mb), mb["values_BR"].to(self.device),
                                     mb["returns_BR"].to(self.device), mb["response_mask_BR"].to(self.device),
                                     clip_eps=clip_eps, agg_mode=agg_mode, **count)
                grad_norm = self._backward_and_step(loss)
                micro.append({f"critic/{k}": v for k, v in m.items()} | {"critic/vf_loss": loss.item()})
            steps.append(combine_shards(micro) | {"critic/grad_norm": grad_norm})
        return mean_dicts(steps) | {"critic/skipped_steps": self._take_skips()}
