"""The chunked log-probs on a CUDA device: values, gradients and peak memory against the
naive log_softmax().gather(). Skipped where there is no GPU."""

import pytest
import torch

from rlhf.algorithms import entropy_from_logits, token_logprobs

pytestmark = [pytest.mark.gpu, pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-4), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
@pytest.mark.parametrize("kernel", [False, True])  # blocks of 48 positions; the Triton kernels
def test_cuda_logprobs_and_entropy_equal_naive(dtype, tol, temperature, kernel):
    g = torch.Generator(device="cuda").manual_seed(0)
    full = (torch.randn(2, 65, 152_064, device="cuda", generator=g) * 3).to(dtype).requires_grad_()
    labels = torch.randint(0, 152_064, (2, 64), device="cuda", generator=g)
    logits = full[:, :-1]  # strided, as a causal LM's caller passes it
    lp = token_logprobs(logits, labels, temperature=temperature, chunk_size=None if kernel else 48, kernel=kernel)
    naive = torch.log_softmax(logits.float() / temperature, -1).gather(-1, labels[..., None]).squeeze(-1)
    assert torch.allclose(lp, naive, atol=tol)
    (g1,) = torch.autograd.grad(lp.sum(), full)
    (g2,) = torch.autograd.grad(naive.sum(), full)
    assert torch.allclose(g1.float(), g2.float(), atol=tol)
    h = entropy_from_logits(logits, temperature=temperature, chunk_size=48)
    logp = torch.log_softmax(logits.float() / temperature, -1)
    h_naive = -(logp.exp() * logp).sum(-1)
    assert torch.allclose(h, h_naive, atol=tol * 10)
    (g1,) = torch.autograd.grad(h.sum(), full)
    (g2,) = torch.autograd.grad(h_naive.sum(), full)
    assert torch.allclose(g1.float(), g2.float(), atol=tol * 10)


def _peak_extra_mb(fn) -> float:
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return (torch.cuda.max_memory_allocated() - base) / 2**20


def test_cuda_training_peak_memory_is_the_gradient_plus_one_block():  # or the kernels' gradient alone
    B, T, V = 4, 1024, 152_064
    logits = torch.randn(B, T, V, device="cuda", dtype=torch.bfloat16)
    labels = torch.randint(0, V, (B, T), device="cuda")

    def train(naive: bool):
        x = logits.detach().requires_grad_()
        lp = (torch.log_softmax(x.float(), -1).gather(-1, labels[..., None]).squeeze(-1) if naive
              else token_logprobs(x, labels))
        lp.sum().backward()

    grad_mb = B * T * V * 2 / 2**20  # the bf16 gradient of the logits, which both must produce
    chunked, naive = _peak_extra_mb(lambda: train(False)), _peak_extra_mb(lambda: train(True))
    assert chunked < grad_mb + 200  # + one 128 MiB fp32 block and small per-position vectors
    assert naive > 3 * grad_mb  # fp32 copy + fp32 log-softmax (+ its gradient) of the whole batch


def test_cuda_overwrite_leaves_the_logits_as_the_only_logits_sized_tensor():
    B, T, V = 4, 1024, 152_064
    source = torch.randn(B, T, V, device="cuda", dtype=torch.bfloat16)
    labels = torch.randint(0, V, (B, T), device="cuda")

    def train(overwrite: bool):
        x = source.detach().requires_grad_()
        logits = x * 1  # formed for the call, as the output layer's are
        grad = torch.autograd.grad(token_logprobs(logits, labels, overwrite=overwrite).sum(), logits)[0]
        assert grad.data_ptr() == logits.data_ptr() if overwrite else grad.data_ptr() != logits.data_ptr()

    logits_mb = B * T * V * 2 / 2**20
    kept, overwritten = _peak_extra_mb(lambda: train(False)), _peak_extra_mb(lambda: train(True))
    assert kept > 1.9 * logits_mb and overwritten < 1.1 * logits_mb  # logits + gradient vs the logits alone


def test_cuda_kernel_linear_logprobs_match_the_logits_and_keep_no_logits():
    from rlhf.algorithms.linear_logprobs import linear_token_logprobs

    K, H, V = 24_576, 1536, 152_064  # a 1.5B micro-batch's response positions: 7 GiB of bf16 logits
    g = torch.Generator(device="cuda").manual_seed(0)
    hidden = (torch.randn(K, H, device="cuda", generator=g) / 4).to(torch.bfloat16).requires_grad_()
    weight = (torch.randn(V, H, device="cuda", generator=g) / 40).to(torch.bfloat16).requires_grad_()
    labels = torch.randint(0, V, (K,), device="cuda", generator=g)

    def run(fused: bool):
        lp = (linear_token_logprobs(hidden, weight, labels, kernel=True) if fused
              else token_logprobs((hidden @ weight.T)[None], labels[None], overwrite=True)[0])
        return (lp, *torch.autograd.grad(lp.sum(), (hidden, weight)))

    (lp_f, gh_f, gw_f), (lp_l, gh_l, gw_l) = run(True), run(False)
    assert torch.allclose(lp_f, lp_l, atol=2e-2)
    assert torch.allclose(gh_f.float(), gh_l.float(), atol=2e-2 * float(gh_l.abs().max()))
    assert torch.allclose(gw_f.float(), gw_l.float(), atol=2e-2 * float(gw_l.abs().max()))
    logits_mb, weight_mb = K * V * 2 / 2**20, V * H * 2 / 2**20
    fused, logits = _peak_extra_mb(lambda: run(True)), _peak_extra_mb(lambda: run(False))
    assert logits > logits_mb
    # one 2 GiB chunk of logits at a time, the weight's gradient in fp32 and its bf16 parts
    assert fused < 2048 + 4 * weight_mb + 256 < logits_mb
