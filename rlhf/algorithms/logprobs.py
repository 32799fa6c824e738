"""Per-token log-probabilities and entropies from logits, a block of positions at a time.

A full fp32 log-softmax over a 152k vocabulary (Qwen2.5) is 0.6 MB per position: 8 x 4096
positions take 20 GB, and autograd keeps it (and, for bf16 logits, an fp32 copy of them) for
the backward pass. Here the only large temporary is one fp32 scratch block of
chunk_size x V, reused block after block, in the forward AND the backward pass: both are
custom autograd functions that save only the logits (which the model's output holds anyway)
and one fp32 number per position, and recompute the softmax block by block in backward.
Blocks are slices of the [B, T, V] input, so a strided view such as `logits[:, :-1]` is
never copied whole either. Measured: benchmarks/logprobs_memory.py.
"""

from __future__ import annotations

from typing import Iterator

import torch

_NEG = torch.finfo(torch.float32).min  # stands in for -inf where it multiplies a zero probability

# Default block: as many positions as fit in 2**25 fp32 values (128 MiB): 220 positions of a
# 152k vocabulary, the whole batch of a small one. Big enough to keep a GPU busy per kernel.
_BLOCK_ELEMENTS = 2 ** 25


def _positions_per_block(vocab: int, chunk_size) -> int:
    if chunk_size is None:
        return max(1, _BLOCK_ELEMENTS // max(vocab, 1))
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    return chunk_size


def _blocks(B: int, T: int, chunk_size: int) -> Iterator[tuple[slice, slice]]:
    """(batch slice, time slice) pairs covering [B, T], at most chunk_size positions each."""
    if T >= chunk_size:
        for b in range(B):
            for t in range(0, T, chunk_size):
                yield slice(b, b + 1), slice(t, min(t + chunk_size, T))
    else:
        rows = chunk_size // max(T, 1)
        for b in range(0, B, rows):
            yield slice(b, min(b + rows, B)), slice(0, T)


def _logsumexp_(z: torch.Tensor) -> torch.Tensor:
    """logsumexp over the last dim, overwriting `z` (a scratch buffer) with exp(z - max)."""
    m = z.amax(-1, keepdim=True)
    m = torch.where(torch.isfinite(m), m, 0.0)  # an all -inf row: exp(-inf) = 0, not nan
    return (m + z.sub_(m).exp_().sum(-1, keepdim=True).log()).squeeze(-1)


class _Scratch:
    """One fp32 buffer of chunk_size x V reused by every block: the only large temporary
    (re-allocating it per block costs page faults on CPU)."""

    def __init__(self, like: torch.Tensor, chunk_size: int):
        B, T, V = like.shape
        self.buf = torch.empty(min(chunk_size, max(B * T, 1)) * V, dtype=torch.float32, device=like.device)

    def scaled(self, block: torch.Tensor, temperature: float) -> torch.Tensor:
        return _scaled_into(self.buf[:block.numel()].view(block.shape), block, temperature)


def _scaled_into(out: torch.Tensor, block: torch.Tensor, temperature: float) -> torch.Tensor:
    out.copy_(block)
    return out.div_(temperature) if temperature != 1.0 else out


class _TokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits_BTV, labels_BT, temperature, chunk_size):
        B, T, _ = logits_BTV.shape
        valid_BT = labels_BT >= 0
        safe_BT = labels_BT.clamp(min=0)
        picked_BT = logits_BTV.gather(-1, safe_BT[..., None]).squeeze(-1).float() / temperature
        lse_BT = torch.zeros((B, T), dtype=torch.float32, device=logits_BTV.device)
        scratch = _Scratch(logits_BTV, chunk_size)
        for bs, ts in _blocks(B, T, chunk_size):
            lse_BT[bs, ts] = _logsumexp_(scratch.scaled(logits_BTV[bs, ts], temperature))
        ctx.save_for_backward(logits_BTV, safe_BT, valid_BT, lse_BT)
        ctx.temperature, ctx.chunk_size = temperature, chunk_size
        return torch.where(valid_BT, picked_BT - lse_BT, 0.0)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_BT):
        logits_BTV, safe_BT, valid_BT, lse_BT = ctx.saved_tensors
        T_ = ctx.temperature
        grad_BT = torch.where(valid_BT, grad_BT.float(), 0.0)
        grad_BTV = torch.empty(logits_BTV.shape, dtype=logits_BTV.dtype, device=logits_BTV.device)
        # fp32 logits: work in the gradient tensor itself, no scratch at all
        scratch = None if logits_BTV.dtype == torch.float32 else _Scratch(logits_BTV, ctx.chunk_size)
        B, T, _ = logits_BTV.shape
        for bs, ts in _blocks(B, T, ctx.chunk_size):
            block, g = logits_BTV[bs, ts], grad_BT[bs, ts, None]
            gz = scratch.scaled(block, T_) if scratch is not None else _scaled_into(grad_BTV[bs, ts], block, T_)
            # d log p(y) / dz = onehot(y) - softmax(z); dz / dlogits = 1 / temperature
            gz.sub_(lse_BT[bs, ts, None]).exp_().mul_(-g).scatter_add_(-1, safe_BT[bs, ts, None], g)
            if T_ != 1.0:
                gz.div_(T_)
            if scratch is not None:
                grad_BTV[bs, ts] = gz
        return grad_BTV, None, None, None


def kernel_available(logits: torch.Tensor) -> bool:
    """Whether `token_logprobs` can take the Triton path (`rlhf.algorithms.logprobs_kernel`):
    logits on a CUDA device and Triton installed (it ships with CUDA builds of torch)."""
    if not logits.is_cuda:
        return False
    try:
        import triton  # noqa: F401
    except ImportError:
        return False
    return True


def token_logprobs(logits_BTV: torch.Tensor, labels_BT: torch.Tensor, *, temperature: float = 1.0,
                   chunk_size: int | None = None, kernel: bool | None = None,
                   overwrite: bool = False) -> torch.Tensor:
    """logprobs_BT (float32) of `labels_BT` under softmax(logits_BTV / temperature):
        log p(y_t) = z_t[y_t] / T - logsumexp(z_t / T),
    equal to `log_softmax(logits.float() / T).gather(labels)`, gradient included, without
    materialising it (see the module docstring). At most `chunk_size` positions are processed
    at once (None: 2**25 / V of them, a 128 MiB fp32 block). Labels < 0 (e.g. -100 padding)
    get log-prob 0 and no gradient. `kernel`: the Triton kernels instead of the blocks (None:
    where `kernel_available`, unless a `chunk_size` is given); they need no scratch block at all.
    `overwrite`: the kernels' backward pass writes the gradient over the logits (for a caller
    that reads them no more, e.g. logits formed only for this call); the block path ignores it."""
    if logits_BTV.dim() != 3 or labels_BT.shape != logits_BTV.shape[:2]:
        raise ValueError(f"need logits [B, T, V] and labels [B, T], got {tuple(logits_BTV.shape)} and "
                         f"{tuple(labels_BT.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    if kernel is None:
        kernel = chunk_size is None and kernel_available(logits_BTV)
    if kernel:
        from rlhf.algorithms.logprobs_kernel import KernelTokenLogprobs

        return KernelTokenLogprobs.apply(logits_BTV, labels_BT, float(temperature), overwrite)
    chunk = _positions_per_block(logits_BTV.shape[-1], chunk_size)
    return _TokenLogprobs.apply(logits_BTV, labels_BT, float(temperature), chunk)


class _Entropy(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits_BTV, temperature, chunk_size):
        B, T, _ = logits_BTV.shape
        H_BT = torch.zeros((B, T), dtype=torch.float32, device=logits_BTV.device)
        mean_z_BT = torch.zeros_like(H_BT)
        scratch = _Scratch(logits_BTV, chunk_size)
        for bs, ts in _blocks(B, T, chunk_size):
            z = scratch.scaled(logits_BTV[bs, ts], temperature)
            m = z.amax(-1, keepdim=True)
            y = z.sub_(torch.where(torch.isfinite(m), m, 0.0))  # y = z - max <= 0
            e = torch.exp(y)
            s = e.sum(-1)
            # H = log s - E_p[y]; y = -inf (masked vocabulary) has p = 0: clamp so 0 * y = 0, not nan
            mean_y = e.mul_(y.clamp_(min=_NEG)).sum(-1) / s
            H_BT[bs, ts] = s.log() - mean_y
            mean_z_BT[bs, ts] = m.squeeze(-1) + mean_y
        ctx.save_for_backward(logits_BTV, H_BT, mean_z_BT)
        ctx.temperature, ctx.chunk_size = temperature, chunk_size
        return H_BT

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_BT):
        logits_BTV, H_BT, mean_z_BT = ctx.saved_tensors
        grad_BTV = torch.empty(logits_BTV.shape, dtype=logits_BTV.dtype, device=logits_BTV.device)
        scratch = _Scratch(logits_BTV, ctx.chunk_size)
        B, T, _ = logits_BTV.shape
        for bs, ts in _blocks(B, T, ctx.chunk_size):
            d = scratch.scaled(logits_BTV[bs, ts], ctx.temperature).sub_(mean_z_BT[bs, ts, None])
            # dH/dz_j = -p_j (z_j - E_p[z]), p_j = exp(z_j - lse) = exp(d_j - H); dz/dlogits = 1/T
            gz = torch.exp(d - H_BT[bs, ts, None]).mul_(d.clamp_(min=_NEG)).mul_(-grad_BT[bs, ts, None].float())
            grad_BTV[bs, ts] = gz.div_(ctx.temperature) if ctx.temperature != 1.0 else gz
        return grad_BTV, None, None


def entropy_from_logits(logits_BTV: torch.Tensor, *, temperature: float = 1.0,
                        chunk_size: int | None = None) -> torch.Tensor:
    """entropy_BT (float32) of softmax(logits_BTV / temperature), computed stably as
        H = logsumexp(z) - sum_v softmax(z)_v z_v,
    block by block like `token_logprobs` (no full-vocabulary fp32 copy, forward or backward).
    Vocabulary entries at -inf (masked) contribute 0."""
    if logits_BTV.dim() != 3:
        raise ValueError(f"need logits [B, T, V], got {tuple(logits_BTV.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    return _Entropy.apply(logits_BTV, float(temperature), _positions_per_block(logits_BTV.shape[-1], chunk_size))
