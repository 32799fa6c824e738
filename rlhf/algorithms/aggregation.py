"""Loss aggregation: per-token losses [B, R] to one scalar, by one explicit mode. GRPO,
Dr. GRPO and DAPO differ exactly here. With L_i valid tokens in sequence i and N sequences:

- token-mean (DAPO eq. 12): sum_{i,t} l_it / sum_i L_i. Every token weighs the same, so a
  sequence weighs in proportion to its length: a long wrong answer is pushed down L_i times
  as hard as a one-token one.
- seq-mean-token-mean (GRPO, DeepSeekMath eq. 3): (1/N) sum_i (1/L_i) sum_t l_it. Every
  sequence weighs the same, so a token of a long sequence weighs 1/L_i: long wrong answers
  are punished less per token, the length bias Dr. GRPO points out.
- seq-mean-token-sum: (1/N) sum_{i,t} l_it. Long sequences dominate and the loss scale grows
  with the response length.
- seq-mean-token-sum-norm (Dr. GRPO): (1/(N * L_norm)) sum_{i,t} l_it with a constant L_norm
  (the generation budget). Every token weighs the same and the scale does not move with the
  lengths a batch happens to have.

`num_tokens` / `num_seqs` default to this call's own counts (a sequence counts when it has at
least one valid token). Passing the GLOBAL counts of the batch to every micro-batch on every
data-parallel rank makes the value additive: the per-shard values sum to the whole batch's.
"""

from __future__ import annotations

import torch

from rlhf.algorithms.choices import check_choice

AGG_MODES = ("token-mean", "seq-mean-token-mean", "seq-mean-token-sum", "seq-mean-token-sum-norm")


def _denominator(count, like: torch.Tensor) -> torch.Tensor:
    # A zero count (all tokens masked) gives a zero loss, not 0/0.
    return torch.as_tensor(count, dtype=like.dtype, device=like.device).clamp(min=1)


def aggregate_loss(loss_BR: torch.Tensor, mask_BR: torch.Tensor, mode: str, *, num_tokens=None, num_seqs=None,
                   norm_len=None) -> torch.Tensor:
    """Scalar loss from per-token `loss_BR` over the valid tokens of `mask_BR` (bool or 0/1).
    Masked entries are selected away (never multiplied), so inf/NaN padding cannot leak."""
    check_choice("loss aggregation mode", mode, AGG_MODES)
    keep_BR = mask_BR != 0
    token_sums_B = torch.where(keep_BR, loss_BR, torch.zeros((), dtype=loss_BR.dtype, device=loss_BR.device)).sum(1)
    if mode == "token-mean":
        return token_sums_B.sum() / _denominator(keep_BR.sum() if num_tokens is None else num_tokens, token_sums_B)
    seqs = _denominator(keep_BR.any(1).sum() if num_seqs is None else num_seqs, token_sums_B)
    if mode == "seq-mean-token-mean":
        lengths_B = keep_BR.sum(1).clamp(min=1).to(token_sums_B.dtype)
        return (token_sums_B / lengths_B).sum() / seqs
    if mode == "seq-mean-token-sum":
        return token_sums_B.sum() / seqs
    norm_len = loss_BR.shape[1] if norm_len is None else norm_len
    if not norm_len > 0:
        raise ValueError(f"norm_len must be positive, got {norm_len!r}")
    return token_sums_B.sum() / (seqs * float(norm_len))
