"""`token_logprobs` as two Triton kernels: the GPU path for logits on a CUDA device.

The block-wise path of `rlhf.algorithms.logprobs` keeps memory flat but, being a sequence of
PyTorch ops, moves each fp32 block through memory about ten times (copy, max, subtract, exp,
sum; the same again in backward). These kernels read the bf16 logits once per pass instead:
the forward pass keeps a running max and sum over each row (online log-sum-exp, per lane, reduced
once at the end) and saves one fp32 number per position; the backward pass writes the gradient
    d log p(y) / d logits_v = (onehot(y)_v - softmax(z)_v) * grad / T
straight into a tensor of the logits' dtype, or over the logits themselves when the caller owns
them (`overwrite=True`: nothing else reads them after the backward pass), which saves a
logits-sized tensor at the step's peak (10 GB at 32,768 positions of a 152k vocabulary). Same
results as the block-wise path to fp32 rounding (tests/algorithms/test_logprobs_kernel_on_cpu.py,
through Triton's interpreter). `KernelLinearTokenLogprobs` runs the same kernels on the output
layer's logits a chunk of positions at a time, never keeping them (the GPU path of
`rlhf.algorithms.linear_logprobs`).
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


def _forward(logits_BTV, labels_N, temperature) -> tuple[torch.Tensor, torch.Tensor]:
    """(lse_N, logp_N) of logits with a unit vocabulary stride."""
    B, T, V = logits_BTV.shape
    lse_N = torch.empty(B * T, dtype=torch.float32, device=logits_BTV.device)
    logp_N = torch.empty_like(lse_N)
    if B * T:
        _forward_kernel[(B * T,)](logits_BTV, labels_N, lse_N, logp_N, T, logits_BTV.stride(0), logits_BTV.stride(1),
                                  V, temperature, BLOCK_V=_BLOCK_V, num_warps=8)
    return lse_N, logp_N


def _backward(logits_BTV, labels_N, lse_N, grad_N, temperature, out_BTV) -> torch.Tensor:
    """d logp / d logits times grad_N, written into `out_BTV` (which may be the logits)."""
    B, T, V = logits_BTV.shape
    if B * T:
        _backward_kernel[(B * T, triton.cdiv(V, _BLOCK_V))](
            logits_BTV, labels_N, lse_N, grad_N, out_BTV, T, logits_BTV.stride(0), logits_BTV.stride(1),
            out_BTV.stride(0), out_BTV.stride(1), V, temperature, BLOCK_V=_BLOCK_V, num_warps=8)
    return out_BTV


def _masked_grad(grad, labels_N) -> torch.Tensor:
    return torch.where(labels_N >= 0, grad.reshape(-1).float(), 0.0).contiguous()


class KernelTokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, logits_BTV, labels_BT, temperature, overwrite=False):
        logits_BTV = _rows(logits_BTV)
        B, T, V = logits_BTV.shape
        labels_N = labels_BT.reshape(-1).to(torch.int64).contiguous()
        lse_N, logp_N = _forward(logits_BTV, labels_N, temperature)
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
        # each program reads its block of logits before it writes the same block: in place is safe
        out_BTV = logits_BTV if ctx.overwrite else torch.empty(logits_BTV.shape, dtype=logits_BTV.dtype,
                                                               device=logits_BTV.device)
        return _backward(logits_BTV, labels_N, lse_N, _masked_grad(grad_BT, labels_N), ctx.temperature,
                         out_BTV), None, None, None


class KernelLinearTokenLogprobs(torch.autograd.Function):
    """`linear_token_logprobs` with the kernels: the logits of `chunk` positions at a time, in the
    model's dtype, formed by one matmul and reduced by the forward kernel, then dropped; backward
    forms them again, turns them into their gradient in place and multiplies it out. One
    chunk's logits are the only vocabulary-sized tensor, for one more output-layer matmul."""

    @staticmethod
    def forward(ctx, hidden_KH, weight_VH, labels_K, temperature, chunk):
        labels_K = labels_K.to(torch.int64).contiguous()
        out = [_forward((hidden_KH[s:s + chunk] @ weight_VH.T)[None], labels_K[s:s + chunk], temperature)
               for s in range(0, hidden_KH.shape[0], chunk)]
        lse_K = torch.cat([lse for lse, _ in out]) if out else hidden_KH.new_zeros(0, dtype=torch.float32)
        ctx.save_for_backward(hidden_KH, weight_VH, labels_K, lse_K)
        ctx.temperature, ctx.chunk = temperature, chunk
        return torch.cat([lp for _, lp in out]) if out else lse_K.clone()

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_K):
        hidden_KH, weight_VH, labels_K, lse_K = ctx.saved_tensors
        grad_K = _masked_grad(grad_K, labels_K)
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden_KH) if want_h else None
        # the weight's gradient sums over the chunks: in fp32, whatever the model's dtype
        grad_w = torch.zeros(weight_VH.shape, dtype=torch.float32, device=weight_VH.device) if want_w else None
        for s in range(0, hidden_KH.shape[0], ctx.chunk):
            h, c = hidden_KH[s:s + ctx.chunk], slice(s, s + ctx.chunk)
            logits = (h @ weight_VH.T)[None]
            gz = _backward(logits, labels_K[c], lse_K[c], grad_K[c], ctx.temperature, logits)[0]
            if want_h:
                grad_h[c] = gz @ weight_VH
            if want_w:
                grad_w.add_(gz.T @ h)
            del logits, gz  # before the next chunk's logits: one chunk alive at a time
        return grad_h, (grad_w.to(weight_VH.dtype) if want_w else None), None, None, None
