"""Log-probabilities of chosen tokens without a full fp32 log-softmax over the vocabulary.

logp(y_t) = z_t[y_t] / T - logsumexp(z_t / T), computed a block of rows at a time, so the
largest fp32 intermediate is chunk_rows x V instead of B x T x V (152k-vocabulary models:
8 x 4096 x 152064 fp32 is 20 GB; a 1024-row chunk is 0.6 GB).
"""

from __future__ import annotations

import torch


def token_logprobs(logits_BTV: torch.Tensor, labels_BT: torch.Tensor, *, temperature: float = 1.0,
                   chunk_rows: int = 1024) -> torch.Tensor:
    """fp32 log-probs [B, T] of `labels_BT` under `logits_BTV / temperature`; differentiable."""
    B, T, V = logits_BTV.shape
    flat = logits_BTV.reshape(B * T, V)
    labels = labels_BT.reshape(B * T)
    out = []
    for i in range(0, B * T, chunk_rows):
        z = flat[i:i + chunk_rows].float()
        if temperature != 1.0:
            z = z / temperature
        out.append(z.gather(-1, labels[i:i + chunk_rows, None]).squeeze(-1) - torch.logsumexp(z, dim=-1))
    return torch.cat(out).view(B, T) if out else flat.new_zeros((B, T), dtype=torch.float32)
