"""Masked reductions over tensors of the same shape as their mask (bool or 0/1).

Masked-out entries are selected away with `torch.where`, not multiplied by 0, so padding
that holds inf or NaN (e.g. -inf log-probs) never leaks into a value or a gradient. A mask
that sums to zero gives 0, never NaN.
"""

from __future__ import annotations

import torch


def _select(x: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    return torch.where(mask != 0, x, torch.zeros((), dtype=x.dtype, device=x.device))


def masked_sum(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    kept = _select(x, mask)
    return kept.sum() if dim is None else kept.sum(dim)


def masked_mean(x: torch.Tensor, mask: torch.Tensor, dim=None) -> torch.Tensor:
    count = (mask != 0).sum() if dim is None else (mask != 0).sum(dim)
    return masked_sum(x, mask, dim) / count.clamp(min=1).to(x.dtype)


def masked_var(x: torch.Tensor, mask: torch.Tensor, dim=None, *, unbiased: bool = True) -> torch.Tensor:
    """Variance over the masked entries; unbiased (n - 1) when n > 1, else the biased value."""
    mean = masked_mean(x, mask, dim)
    if dim is not None:
        mean = mean.unsqueeze(dim)
    var = masked_mean((x - mean) ** 2, mask, dim)
    if not unbiased:
        return var
    n = ((mask != 0).sum() if dim is None else (mask != 0).sum(dim)).to(x.dtype)
    return torch.where(n > 1, var * n / (n - 1).clamp(min=1), var)


def masked_whiten(x: torch.Tensor, mask: torch.Tensor, shift_mean: bool = True, eps: float = 1e-8) -> torch.Tensor:
    """(x - mean) / sqrt(var + eps) over all masked entries (unbiased var); with
    `shift_mean=False` the mean is added back (scale only). Masked-out entries become 0."""
    mean, var = masked_mean(x, mask), masked_var(x, mask)
    out = (x - mean) * torch.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return _select(out, mask)
