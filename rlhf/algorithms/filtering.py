"""DAPO dynamic sampling (Yu et al. 2025, eq. 11): keep a group only if its rewards differ."""

from __future__ import annotations

import torch


def groups_with_signal(scores_B: torch.Tensor, group_size: int, tol: float = 1e-6) -> torch.Tensor:
    """keep_G: True where the group's rewards are not all equal (0 < #correct < G). A group
    whose rewards are all equal has zero advantage everywhere: no gradient, only noise."""
    if scores_B.numel() % group_size:
        raise ValueError(f"{scores_B.numel()} scores do not form groups of {group_size}")
    g = scores_B.float().view(-1, group_size)
    return (g.max(1).values - g.min(1).values) > tol
