"""Reference role: the frozen initial policy, scoring log-probs for the KL term."""

from __future__ import annotations

import torch

from rlhf.actors.runtime import setup_process
from rlhf.models import load_causal_lm, resolve_dtype, response_logprobs, sequence_logps


class Reference:
    def __init__(self, model_path: str, dtype: str = "auto", seed: int = 0, threads: int = 0):
        self.device = setup_process(seed, threads)
        self.model = load_causal_lm(model_path, resolve_dtype(dtype), self.device).eval()
        self.model.requires_grad_(False)

    @torch.no_grad()
    def logprobs(self, batch: dict, temperature: float = 1.0, micro_batch_size: int = 64) -> torch.Tensor:
        R = batch["response_mask_BR"].shape[1]
        out = []
        for i in range(0, batch["input_ids_BT"].shape[0], micro_batch_size):
            ids = batch["input_ids_BT"][i:i + micro_batch_size].to(self.device)
            mask = batch["attention_mask_BT"][i:i + micro_batch_size].to(self.device)
            out.append(response_logprobs(self.model, ids, mask, R, temperature).cpu())
        return torch.cat(out)

    @torch.no_grad()
    def sequence_logps(self, batch: dict) -> torch.Tensor:
        """Summed response log-probs per example of a sequence batch (DPO)."""
        return sequence_logps(self.model, batch, self.device).cpu()
