"""Per-token log-probabilities straight from the final hidden states and the output layer's
weight, never forming the [positions x vocabulary] logits.

`token_logprobs` needs the logits the model's output layer produced: K x V values in the model's
dtype, kept for the backward pass, plus their gradient of the same size (12,000 response positions
of a 152k vocabulary: 3.7 GB each in bf16). Here the logits of one block of positions at a time
are computed, reduced to one logsumexp per position and dropped; the backward pass recomputes them
block by block and turns them into the gradients of the hidden states and of the weight at once.
The price is the output layer's forward matmul done twice (about a third more output-layer
FLOPs). On a CUDA device with Triton the blocks are larger (2**30 logits, 2 GiB in bf16) and stay
in the model's dtype: the log-prob kernels of `rlhf.algorithms.logprobs_kernel` reduce them and
write their gradient in place (`KernelLinearTokenLogprobs`). Measured against the logits path:
benchmarks/output_layer_logprobs.py.
"""

from __future__ import annotations

import torch

from rlhf.algorithms.logprobs import _logsumexp_, kernel_available

# Default block: as many positions as fit in 2**26 fp32 logits (256 MiB): 441 positions of a 152k
# vocabulary. Larger than token_logprobs' block: each block of the backward pass also adds a full
# V x H product into the weight's gradient, so fewer blocks means less of that traffic.
_BLOCK_ELEMENTS = 2 ** 26
_KERNEL_BLOCK_ELEMENTS = 2 ** 30  # bf16 logits of the kernel path: no fp32 copy, so a larger block fits


def _block_logits(hidden_cH: torch.Tensor, weight_VH: torch.Tensor, temperature: float) -> torch.Tensor:
    z = (hidden_cH @ weight_VH.T).float()  # the matmul runs in the model's dtype, as the output layer would
    return z.div_(temperature) if temperature != 1.0 else z


class _LinearTokenLogprobs(torch.autograd.Function):
    @staticmethod
    def forward(ctx, hidden_KH, weight_VH, labels_K, temperature, chunk):
        valid_K = labels_K >= 0
        safe_K = labels_K.clamp(min=0)
        K = hidden_KH.shape[0]
        picked_K = torch.zeros(K, dtype=torch.float32, device=hidden_KH.device)
        lse_K = torch.zeros_like(picked_K)
        for s in range(0, K, chunk):
            z = _block_logits(hidden_KH[s:s + chunk], weight_VH, temperature)
            picked_K[s:s + chunk] = z.gather(-1, safe_K[s:s + chunk, None]).squeeze(-1)
            lse_K[s:s + chunk] = _logsumexp_(z)
        ctx.save_for_backward(hidden_KH, weight_VH, safe_K, valid_K, lse_K)
        ctx.temperature, ctx.chunk = temperature, chunk
        return torch.where(valid_K, picked_K - lse_K, 0.0)

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad_K):
        hidden_KH, weight_VH, safe_K, valid_K, lse_K = ctx.saved_tensors
        T_, chunk = ctx.temperature, ctx.chunk
        grad_K = torch.where(valid_K, grad_K.float(), 0.0)
        want_h, want_w = ctx.needs_input_grad[0], ctx.needs_input_grad[1]
        grad_h = torch.empty_like(hidden_KH) if want_h else None
        # the weight's gradient sums over every block: accumulate it in fp32 whatever the model's dtype
        grad_w = torch.zeros(weight_VH.shape, dtype=torch.float32, device=weight_VH.device) if want_w else None
        for s in range(0, hidden_KH.shape[0], chunk):
            h, g = hidden_KH[s:s + chunk], grad_K[s:s + chunk, None]
            # d log p(y) / dz = onehot(y) - softmax(z); dz / dlogits = 1 / temperature
            gz = _block_logits(h, weight_VH, T_).sub_(lse_K[s:s + chunk, None]).exp_().mul_(-g)
            gz.scatter_add_(-1, safe_K[s:s + chunk, None], g)
            gz = (gz.div_(T_) if T_ != 1.0 else gz).to(hidden_KH.dtype)
            if want_h:
                grad_h[s:s + chunk] = gz @ weight_VH
            if want_w and grad_w.dtype == h.dtype:
                grad_w.addmm_(gz.T, h)  # in place: no V x H temporary
            elif want_w:
                grad_w.add_(gz.T @ h)  # the product in the model's dtype, the sum in fp32
        return grad_h, (grad_w.to(weight_VH.dtype) if want_w else None), None, None, None


def linear_token_logprobs(hidden_KH: torch.Tensor, weight_VH: torch.Tensor, labels_K: torch.Tensor, *,
                          temperature: float = 1.0, chunk_size: int | None = None,
                          kernel: bool | None = None) -> torch.Tensor:
    """logprobs_K (float32) of `labels_K` under softmax(hidden_KH @ weight_VH.T / temperature),
    equal to `token_logprobs` of those logits, gradients of the hidden states and the weight
    included, without materialising the logits (see the module docstring). At most `chunk_size`
    positions are processed at once (None: 2**26 / V of them, 2**30 / V with the kernels). Labels
    < 0 get log-prob 0 and no gradient. `kernel`: the Triton kernels reduce each block (None:
    where `kernel_available`)."""
    if hidden_KH.dim() != 2 or weight_VH.dim() != 2 or hidden_KH.shape[1] != weight_VH.shape[1]:
        raise ValueError(f"need hidden [K, H] and weight [V, H], got {tuple(hidden_KH.shape)} and "
                         f"{tuple(weight_VH.shape)}")
    if labels_K.shape != hidden_KH.shape[:1]:
        raise ValueError(f"need labels [K] for hidden [K, H], got {tuple(labels_K.shape)}")
    if not temperature > 0:
        raise ValueError(f"temperature must be positive, got {temperature!r}")
    if kernel is None:
        kernel = kernel_available(hidden_KH)
    if chunk_size is None:
        chunk_size = max(1, (_KERNEL_BLOCK_ELEMENTS if kernel else _BLOCK_ELEMENTS) // max(weight_VH.shape[0], 1))
    elif not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be a positive int or None, got {chunk_size!r}")
    if kernel:
        from rlhf.algorithms.logprobs_kernel import KernelLinearTokenLogprobs

        return KernelLinearTokenLogprobs.apply(hidden_KH, weight_VH, labels_K, float(temperature), chunk_size)
    return _LinearTokenLogprobs.apply(hidden_KH, weight_VH, labels_K, float(temperature), chunk_size)
