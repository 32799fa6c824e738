"""Reward shaping: DAPO's soft overlong punishment."""

from __future__ import annotations

import torch


def overlong_penalty(lengths_B: torch.Tensor, *, max_len: int, cache_len: int,
                     penalty_factor: float = 1.0) -> torch.Tensor:
    """DAPO (Yu et al. 2025, eq. 13), added to the task reward:
        0                                  if L <= L_max - L_cache
        ((L_max - L_cache) - L) / L_cache  if L_max - L_cache < L <= L_max   (0 down to -1)
        -1                                 if L > L_max
    times `penalty_factor`; float32 penalty_B. Responses truncated at the budget get -1 rather
    than a reward for an answer they never finished; the ramp gives a gradient towards
    shorter answers before the cliff."""
    if not 0 < cache_len <= max_len:
        raise ValueError(f"need 0 < cache_len <= max_len, got cache_len={cache_len}, max_len={max_len}")
    L_B = lengths_B.float()
    expected = max_len - cache_len
    ramp_B = (expected - L_B) / cache_len
    penalty_B = torch.where(L_B <= expected, 0.0, torch.where(L_B <= max_len, ramp_B, -1.0))
    return penalty_B * penalty_factor
