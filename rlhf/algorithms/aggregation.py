"""Loss aggregation: one function, one explicit mode. GRPO, Dr. GRPO and DAPO differ here.

How each weights sequences of different lengths (L_i tokens in sequence i):
- token-mean (DAPO eq. 12): every token weighs the same, so a long sequence weighs L_i
  times a one-token one; long wrong answers are penalised in proportion to their length.
- seq-mean-token-mean (GRPO eq. 3): every sequence weighs the same; a token of a long
  sequence weighs 1/L_i, so long wrong answers are punished less per token (length bias).
- seq-mean-token-sum: the sum over a sequence's tokens, averaged over sequences; long
  sequences dominate and the scale grows with length.
- seq-mean-token-sum-norm (Dr. GRPO): the token sum divided by a constant length, so
  every token weighs the same and the scale does not depend on the batch.

`num_tokens` / `num_seqs` default to the local counts; passing the GLOBAL counts of a batch
split into micro-batches and data-parallel shards makes the shard values add up to the value
of the whole batch.
"""

from __future__ import annotations

import torch

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")


def aggregate_loss(loss_BR: torch.Tensor, mask_BR: torch.Tensor, mode: str, *, num_tokens=None, num_seqs=None,
                   norm_len=None) -> torch.Tensor:
    if mode not in AGG_MODES:
        raise ValueError(f"unknown loss aggregation {mode!r}; valid: {', '.join(AGG_MODES)}")
    mask = mask_BR.to(loss_BR.dtype)
    token_sums = (loss_BR * mask).sum(1)
    if mode == "token-mean":
        total = mask.sum() if num_tokens is None else num_tokens
        return token_sums.sum() / max(float(total), 1.0)
    seqs = (mask.sum(1) > 0).sum() if num_seqs is None else num_seqs
    seqs = max(float(seqs), 1.0)
    if mode == "seq-mean-token-mean":
        return (token_sums / mask.sum(1).clamp(min=1)).sum() / seqs
    if mode == "seq-mean-token-sum":
        return token_sums.sum() / seqs
    return token_sums.sum() / (seqs * float(norm_len or loss_BR.shape[1]))
