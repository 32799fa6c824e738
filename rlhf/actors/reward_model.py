"""Reward models: training one (Bradley-Terry on preference pairs, on a `DeepSpeedRank`) and
serving one as a reward for RL. The model is a transformer with a scalar head
(`load_value_model`); a sequence's reward is the head at its last token."""

from __future__ import annotations

import torch

from rlhf.actors.runtime import setup_process
from rlhf.actors.deepspeed_rank import DeepSpeedRank
from rlhf.algorithms import bradley_terry_loss
from rlhf.data.sequences import model_inputs, pad_batch
from rlhf.models import load_tokenizer, load_value_model, resolve_dtype, uses_flash_attention
from rlhf.scoring import end_positions, token_values


def sequence_rewards(model, batch: dict, device: str) -> torch.Tensor:
    rows, cols = end_positions(batch)
    values = token_values(model, model_inputs(batch, device, flash=uses_flash_attention(model)))
    return values[rows.to(device), cols.to(device)]


class RewardModelTrainer(DeepSpeedRank):
    """One data-parallel rank training a reward model; `model_path` may be a causal LM (the
    head starts from scratch) or a reward model."""

    def _load_model(self):
        return load_value_model(self.model_path, self.dtype, self.device)

    def train_pairs(self, micro_batches: list[dict], num_pairs: int) -> dict:
        """One optimizer step of the Bradley-Terry loss; micro-batch i holds k chosen rows then
        their k rejected rows; `num_pairs` is the step's global pair count."""
        return self._pair_step(micro_batches, num_pairs, "rm",
                               lambda mb: sequence_rewards(self.engine, mb, self.device),
                               lambda i, chosen, rejected: bradley_terry_loss(chosen, rejected))

    @torch.no_grad()
    def rewards(self, batch: dict) -> torch.Tensor:
        self.engine.eval()
        return sequence_rewards(self.engine, batch, self.device).cpu()


class RewardModelScorer:
    """Reward-model role in RL: scores (prompt, completion) pairs with a trained reward model."""

    def __init__(self, model_path: str, dtype: str = "auto", seed: int = 0, threads: int = 0,
                 micro_batch_size: int = 64):
        self.device = setup_process(seed, threads)
        self.model = load_value_model(model_path, resolve_dtype(dtype), self.device).eval()
        self.tokenizer = load_tokenizer(model_path)
        self.micro_batch_size = micro_batch_size

    @torch.no_grad()
    def score(self, prompts: list[str], completions: list[str]) -> list[float]:
        """`prompts` are chat-formatted (as the policy saw them); each completion is closed
        with the end-of-turn token, as the reward model was trained."""
        tok = self.tokenizer
        out = []
        for i in range(0, len(prompts), self.micro_batch_size):
            examples = []
            for p, c in zip(prompts[i:i + self.micro_batch_size], completions[i:i + self.micro_batch_size]):
                p_ids = tok(p, add_special_tokens=False)["input_ids"]
                examples.append((p_ids + tok(c, add_special_tokens=False)["input_ids"] + [tok.eos_token_id],
                                 len(p_ids)))
            out += sequence_rewards(self.model, pad_batch(examples, tok.pad_token_id), self.device).tolist()
        return out
