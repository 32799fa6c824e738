"""DAPO dynamic sampling: which groups carry a learning signal."""

from __future__ import annotations

import torch


def groups_with_signal(scores_B: torch.Tensor, group_size: int, *, tol: float = 1e-6) -> torch.Tensor:
    """keep_G (bool): True where a group's rewards are not all equal, i.e. max - min > tol
    (DAPO, Yu et al. 2025, eq. 11: 0 < |{correct}| < G). A group of equal rewards has zero
    group-relative advantage everywhere: a forward/backward pass for no gradient, which also
    shrinks the effective batch. A group of size 1 is never kept. Rows are grouped
    contiguously, as in the advantage estimators."""
    if not isinstance(group_size, int) or group_size < 1:
        raise ValueError(f"group_size must be a positive int, got {group_size!r}")
    if scores_B.dim() != 1 or scores_B.numel() % group_size:
        raise ValueError(f"{tuple(scores_B.shape)} scores do not split into groups of {group_size}")
    g_GN = scores_B.float().view(-1, group_size)
    return (g_GN.max(1).values - g_GN.min(1).values) > tol
