"""Reference role: the frozen initial policy, scoring log-probs for the KL term."""

from __future__ import annotations

import torch

from rlhf.actors.runtime import setup_process
from rlhf.models import load_causal_lm, resolve_dtype
from rlhf.scoring import packed_response_logprobs, sequence_logps
from rlhf.packing import gather_rows, rl_micro_batches


class Reference:
    def __init__(self, model_path: str, dtype: str = "auto", seed: int = 0, threads: int = 0):
        self.device = setup_process(seed, threads)
        self.model = load_causal_lm(model_path, resolve_dtype(dtype), self.device).eval()
        self.model.requires_grad_(False)

    @torch.no_grad()
    def logprobs(self, batch: dict, temperature: float = 1.0, max_tokens: int = 4096) -> torch.Tensor:
        """Log-probs [B, R] of a padded RL batch, scored in packed micro-batches of `max_tokens`."""
        micro_batches, plan = rl_micro_batches(batch, 1, max_tokens, pad_id=0)
        scored = [packed_response_logprobs(self.model, mb, self.device, temperature).cpu() for mb in micro_batches[0]]
        return gather_rows([scored], plan, *batch["response_mask_BR"].shape)

    @torch.no_grad()
    def sequence_logps(self, batch: dict) -> torch.Tensor:
        """Summed response log-probs per example of a sequence batch (DPO)."""
        return sequence_logps(self.model, batch, self.device).cpu()
