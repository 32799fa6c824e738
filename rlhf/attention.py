"""Attention on packed rows without a dense mask, for where FlashAttention-2 is not installed.

A packed micro-batch (`rlhf.packing`) is one row whose position ids restart at every sequence.
With SDPA, transformers turns the restarts into a dense [N, N] document mask, and a masked SDPA
cannot use its flash kernel: the whole row's N^2 attention is computed and masked, in memory
that grows with N^2. This backend (`rlhf_varlen`) cuts the row at the restarts instead: on
CUDA into PyTorch's own variable-length flash kernel (`torch.nn.attention.varlen`), elsewhere
into one causal SDPA call per sequence. Anything that is not a packed row (padded batches,
generation with a cache) goes to plain SDPA, so one model serves both.
"""

from __future__ import annotations

import functools
import inspect
import weakref

import torch

NAME = "rlhf_varlen"


def _boundaries(position_ids: torch.Tensor) -> torch.Tensor | None:
    """cu_seqlens [S + 1] (int32) of one packed row, or None if it holds one sequence."""
    pos = position_ids[0]
    starts = (pos == 0).nonzero().flatten()
    if len(starts) <= 1 or int(starts[0]) != 0:
        return None
    return torch.cat([starts, starts.new_tensor([pos.numel()])]).to(torch.int32)


class _RowCache:
    """The boundaries and longest sequence of the packed row a forward is running on. Every layer
    gets the same position-ids tensor, and finding the boundaries waits for the GPU (`nonzero`,
    `int`): once per forward instead of once per layer. Held by a weak reference, so a new
    tensor, even at the same address, is never mistaken for the last one."""

    def __init__(self):
        self.ref, self.value = None, None

    def get(self, position_ids: torch.Tensor) -> tuple[torch.Tensor | None, int]:
        if self.ref is None or self.ref() is not position_ids:
            cu = _boundaries(position_ids)
            longest = int((cu[1:] - cu[:-1]).max()) if cu is not None else 0
            self.ref, self.value = weakref.ref(position_ids), (cu, longest)
        return self.value


_ROWS = _RowCache()


def varlen_attention_forward(module, query, key, value, attention_mask, dropout: float = 0.0,
                             scaling: float | None = None, **kwargs):
    """transformers' attention signature: query [1, H, N, D], key/value [1, Hkv, N, D]; returns
    ([1, N, H, D], None)."""
    from transformers.integrations.sdpa_attention import sdpa_attention_forward

    position_ids = kwargs.get("position_ids")
    packed = (position_ids is not None and query.shape[0] == 1 and kwargs.get("cache") is None
              and query.shape[2] == key.shape[2] == position_ids.shape[-1])
    cu, longest = _ROWS.get(position_ids) if packed else (None, 0)
    if cu is None:
        return sdpa_attention_forward(module, query, key, value, attention_mask, dropout=dropout,
                                      scaling=scaling, **kwargs)
    groups = query.shape[1] // key.shape[1]
    q, k, v = (t[0].transpose(0, 1) for t in (query, key, value))  # [N, heads, D]
    if q.is_cuda:
        out = _cuda_varlen(q, k, v, cu, longest, groups, scaling)
    else:
        out = _padded_segments(q, k, v, cu, groups, scaling)
    return out[None], None  # [1, N, H, D]


def _padded_segments(q, k, v, cu, groups: int, scaling):
    """Off CUDA: the row's sequences stacked as a padded batch [S, heads, T_max, D] for one causal
    SDPA call (padding keys masked out), their outputs gathered back into the row."""
    lengths = cu[1:] - cu[:-1]
    T = int(lengths.max())
    offsets = torch.arange(T, device=q.device)
    index = cu[:-1, None].long() + offsets  # [S, T] positions in the row
    valid = offsets < lengths[:, None]
    index = torch.where(valid, index, 0)
    if groups > 1:  # grouped-query attention: each key/value head serves `groups` query heads
        k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    qs, ks, vs = (t[index].transpose(1, 2) for t in (q, k, v))  # [S, heads, T, D]
    causal = torch.ones(T, T, dtype=torch.bool, device=q.device).tril()
    mask = causal & valid[:, None, None, :]  # padded query rows still see their own first key
    out = torch.nn.functional.scaled_dot_product_attention(qs, ks, vs, attn_mask=mask, scale=scaling)
    return out.transpose(1, 2)[valid]  # [N, heads, D], in row order


@functools.cache
def _varlen_kernel():
    """PyTorch's varlen kernel and the names it takes (looked up once: it is called per layer)."""
    from torch.nn.attention.varlen import varlen_attn

    return varlen_attn, frozenset(inspect.signature(varlen_attn).parameters)


def _cuda_varlen(q, k, v, cu, longest: int, groups: int, scaling):
    """PyTorch's variable-length flash attention, causal (its keyword changed across releases:
    `is_causal`, later a (-1, 0) window), grouped-query heads native where it takes them."""
    varlen_attn, params = _varlen_kernel()
    extra = {"is_causal": True} if "is_causal" in params else {"window_size": (-1, 0)}
    if groups > 1:
        if "enable_gqa" in params:
            extra["enable_gqa"] = True
        else:
            k, v = k.repeat_interleave(groups, dim=1), v.repeat_interleave(groups, dim=1)
    return varlen_attn(q, k, v, cu, cu, longest, longest, scale=scaling, **extra)


def register() -> str:
    """Makes `attn_implementation="rlhf_varlen"` loadable (its masks: SDPA's); returns the name."""
    from transformers import AttentionInterface
    from transformers.masking_utils import AttentionMaskInterface, sdpa_mask

    AttentionInterface.register(NAME, varlen_attention_forward)
    AttentionMaskInterface.register(NAME, sdpa_mask)
    return NAME
