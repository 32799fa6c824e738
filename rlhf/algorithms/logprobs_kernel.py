"""`token_logprobs` as two Triton kernels: the GPU path for logits on a CUDA device.

The block-wise path of `rlhf.algorithms.logprobs` keeps memory flat but, being a sequence of
PyTorch ops, moves each fp32 block through memory about ten times (copy, max, subtract, exp,
sum; the same again in backward). These kernels read the bf16 logits once per pass instead:
the forward pass keeps a running max and sum over each row (online log-sum-exp, per lane, reduced
once at the end) and saves one fp32 number per position; the backward pass writes the gradient
    d log p(y) / d logits_v = (onehot(y)_v - softmax(z)_v) * grad / T
straight into a tensor of the logits' dtype, or over the logits themselves when the caller owns
them (`overwrite=True`: nothing else reads them after the backward pass), which saves a
logits-sized tensor at the step's peak (10 GB at 32,768 positions of a 152k vocabulary). Same results as the block-wise path to fp32
rounding (tests/algorithms/test_logprobs_kernel_on_cpu.py, through Triton's interpreter).
Triton's own cross-entropy kernels (Liger's) return bf16 losses and read counts back to the
host, so they are not used here: a PPO ratio needs the log-prob in fp32, and a host read
stalls the GPU once per micro-batch.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

_BLOCK_V = 4096  # vocabulary entries per iteration: 8 KiB of bf16 per program and load


@triton.jit
def _forward_kernel(logits_ptr, labels_ptr, lse_ptr, logp_ptr, T, stride_b, stride_t, V, temperature,
                    BLOCK_V: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    base = logits_ptr + (row // T) * stride_b + (row % T) * stride_t
    # per-lane running max and sum: one cross-lane reduction at the end instead of per block
    m = tl.full([BLOCK_V], float("-inf"), tl.float32)
    s = tl.zeros([BLOCK_V], tl.float32)
    for start in range(0, V, BLOCK_V):
        cols = start + tl.arange(0, BLOCK_V)
        z = tl.load(base + cols, mask=cols < V, other=float("-inf")).to(tl.float32) / temperature
        m_new = tl.maximum(m, z)
        shift = tl.where(m_new == float("-inf"), 0.0, m_new)  # a lane at -inf so far: exp(-inf) = 0, not nan
        s = s * tl.exp(m - shift) + tl.exp(z - shift)
        m = m_new
    top = tl.max(m, 0)
    top = tl.where(top == float("-inf"), 0.0, top)
    lse = top + tl.log(tl.sum(s * tl.exp(m - top), 0))
    label = tl.load(labels_ptr + row)
    picked = tl.load(base + tl.maximum(label, 0)).to(tl.float32) / temperature
    tl.store(lse_ptr + row, lse)
    tl.store(logp_ptr + row, tl.where(label >= 0, picked - lse, 0.0))


@triton.jit
def _backward_kernel(logits_ptr, labels_ptr, lse_ptr, grad_ptr, out_ptr, T, stride_b, stride_t, out_stride_b,
                     out_stride_t, V, temperature, BLOCK_V: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK_V + tl.arange(0, BLOCK_V)
    inside = cols < V
    base = logits_ptr + (row // T) * stride_b + (row % T) * stride_t
    z = tl.load(base + cols, mask=inside, other=float("-inf")).to(tl.float32) / temperature
    g = tl.load(grad_ptr + row)  # 0 where the label is masked
    p = tl.exp(z - tl.load(lse_ptr + row))
    d = (tl.where(cols == tl.load(labels_ptr + row), 1.0, 0.0) - p) * (g / temperature)
    out = out_ptr + (row // T) * out_stride_b + (row % T) * out_stride_t
    tl.store(out + cols, d.to(out_ptr.dtype.element_ty), mask=inside)


def _rows(logits_BTV: torch.Tensor) -> torch.Tensor:
    """The logits with a unit vocabulary stride (the kernels walk rows by batch and time strides)."""
    return logits_BTV if logits_BTV.stride(-1) == 1 else logits_BTV.contiguous()


class KernelTokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits_BTV, labels_BT, temperature, overwrite=False):
        logits_BTV = _rows(logits_BTV)
        B, T, V = logits_BTV.shape
        labels_N = labels_BT.reshape(-1).to(torch.int64).contiguous()
        lse_N = torch.empty(B * T, dtype=torch.float32, device=logits_BTV.device)
        logp_N = torch.empty_like(lse_N)
        if B * T:
            _forward_kernel[(B * T,)](logits_BTV, labels_N, lse_N, logp_N, T, logits_BTV.stride(0),
                                      logits_BTV.stride(1), V, temperature, BLOCK_V=_BLOCK_V, num_warps=8)
        ctx.save_for_backward(logits_BTV, labels_N, lse_N)
        ctx.temperature, ctx.overwrite, ctx.done = temperature, overwrite, False
        return logp_N.view(B, T)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_BT):
        logits_BTV, labels_N, lse_N = ctx.saved_tensors
        if ctx.overwrite and ctx.done:
            raise RuntimeError("token_logprobs(overwrite=True): a second backward pass through logits already "
                               "overwritten by their gradient")
        ctx.done = True
        B, T, V = logits_BTV.shape
        grad_N = torch.where(labels_N >= 0, grad_BT.reshape(-1).float(), 0.0).contiguous()
        # each program reads its block of logits before it writes the same block: in place is safe
        out_BTV = logits_BTV if ctx.overwrite else torch.empty((B, T, V), dtype=logits_BTV.dtype,
                                                               device=logits_BTV.device)
        if B * T:
            _backward_kernel[(B * T, triton.cdiv(V, _BLOCK_V))](
                logits_BTV, labels_N, lse_N, grad_N, out_BTV, T, logits_BTV.stride(0), logits_BTV.stride(1),
                out_BTV.stride(0), out_BTV.stride(1), V, ctx.temperature, BLOCK_V=_BLOCK_V, num_warps=8)
        return out_BTV, None, None, None
