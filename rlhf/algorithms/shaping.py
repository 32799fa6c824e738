"""DAPO's soft overlong punishment (Yu et al. 2025, eq. 13)."""

from __future__ import annotations

import torch


def overlong_penalty(lengths_B: torch.Tensor, *, max_len: int, cache_len: int, penalty_factor: float = 1.0):
    """0 for |y| <= L_max - L_cache; ((L_max - L_cache) - |y|) / L_cache in the cache zone
    (a linear ramp from 0 to -1); -1 beyond L_max. Scaled by `penalty_factor`."""
    if not 0 < cache_len <= max_len:
        raise ValueError(f"need 0 < cache_len <= max_len, got cache_len={cache_len}, max_len={max_len}")
    L = lengths_B.float()
    expected = max_len - cache_len
    ramp = (expected - L) / cache_len
    penalty = torch.where(L <= expected, torch.zeros_like(L), torch.where(L <= max_len, ramp, -torch.ones_like(L)))
    return penalty * penalty_factor
