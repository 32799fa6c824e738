"""The Triton log-prob kernels (`rlhf.algorithms.logprobs_kernel`), run by Triton's interpreter
on CPU tensors: values and gradients equal the block-wise path and a naive log_softmax, on the
cases the trainer gives them (strided logits, masked labels, temperatures, vocabularies that are
not a multiple of the kernel's block, bf16)."""

import os

import pytest
import torch

if torch.cuda.is_available():  # the interpreter setting would reach every kernel defined after it
    pytest.skip("on a GPU the compiled kernels are tested (test_logprobs_on_gpu.py)", allow_module_level=True)
os.environ.setdefault("TRITON_INTERPRET", "1")  # read when the kernels are defined, at import
pytest.importorskip("triton")
if os.environ["TRITON_INTERPRET"] != "1":
    pytest.skip("TRITON_INTERPRET is set to something else in this environment", allow_module_level=True)

import rlhf.algorithms.logprobs_kernel as kernel_module  # noqa: E402
from rlhf.algorithms import token_logprobs  # noqa: E402


def _naive(logits, labels, temperature):
    lp = torch.log_softmax(logits.float() / temperature, -1).gather(-1, labels.clamp(min=0)[..., None]).squeeze(-1)
    return torch.where(labels >= 0, lp, 0.0)


# tol: against the naive fp32 log_softmax; grtol: gradients against the block path, relative
# (bf16: one step of its 8-bit mantissa, as fp32 sums in another order may round either way)
@pytest.mark.parametrize("dtype,tol,grtol", [(torch.float32, 1e-5, 1e-5), (torch.bfloat16, 1e-2, 2 ** -7)])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_kernels_equal_the_block_path_values_and_gradients(dtype, tol, grtol, temperature, monkeypatch):
    monkeypatch.setattr(kernel_module, "_BLOCK_V", 64)  # V = 150: two full blocks and a partial one
    g = torch.Generator().manual_seed(0)
    full = (torch.randn(2, 10, 150, generator=g) * 4).to(dtype).requires_grad_()
    logits = full[:, :-1]  # strided in time, as a causal LM's caller passes it
    labels = torch.randint(0, 150, (2, 9), generator=g)
    labels[0, 3] = labels[1, 0] = -100  # masked: log-prob 0, no gradient
    upstream = torch.randn(labels.shape, generator=g)

    def run(kernel: bool):
        lp = token_logprobs(logits, labels, temperature=temperature, kernel=kernel)
        (grad,) = torch.autograd.grad((lp * upstream).sum(), full)
        return lp, grad

    (lp_k, g_k), (lp_b, g_b) = run(True), run(False)
    naive = _naive(logits, labels, temperature)
    assert lp_k.dtype == torch.float32 and lp_k.shape == labels.shape
    assert torch.allclose(lp_k, lp_b, atol=1e-5) and torch.allclose(lp_k, naive, atol=tol)
    assert lp_k[0, 3] == 0 and lp_k[1, 0] == 0
    assert g_k.dtype == dtype
    assert torch.allclose(g_k.float(), g_b.float(), rtol=grtol, atol=1e-6)
    assert g_k[0, 3].abs().max() == 0 and g_k[:, -1].abs().max() == 0  # masked row; the unread last position
    assert g_k.abs().max() > 0.05  # a gradient that could have been wrong
    # rows of a softmax gradient sum to zero: onehot and probabilities both sum to 1
    assert g_k.float().sum(-1).abs().max() < 2 * tol


@pytest.mark.parametrize("strided", [False, True])
def test_overwrite_puts_the_same_gradient_in_the_logits_memory(strided, monkeypatch):
    monkeypatch.setattr(kernel_module, "_BLOCK_V", 64)
    g = torch.Generator().manual_seed(1)
    base = torch.randn(3, 8, 150, generator=g).to(torch.bfloat16)
    labels = torch.randint(0, 150, (3, 7), generator=g)
    labels[2, 5] = -100
    upstream = torch.randn(labels.shape, generator=g)

    def run(overwrite: bool):
        full = base.clone().requires_grad_()
        owned = full * 1  # a non-leaf the call owns, as the output layer's logits are
        logits = owned[:, :-1] if strided else owned[:, 1:].contiguous()
        lp = token_logprobs(logits, labels, temperature=0.8, kernel=True, overwrite=overwrite)
        (grad,) = torch.autograd.grad((lp * upstream).sum(), logits)
        return lp, grad, logits

    (lp_o, g_o, logits_o), (lp_n, g_n, logits_n) = run(True), run(False)
    assert torch.equal(lp_o, lp_n) and torch.equal(g_o, g_n)
    assert g_o.data_ptr() == logits_o.data_ptr() and torch.equal(logits_o, g_o)  # no second tensor
    assert g_n.data_ptr() != logits_n.data_ptr() and not torch.equal(logits_n, g_n)
    assert g_o[2, 5].abs().max() == 0 and g_o.abs().max() > 0.05


def test_overwritten_logits_refuse_a_second_backward():
    logits = torch.randn(1, 4, 70, requires_grad=True) * 1
    lp = token_logprobs(logits, torch.tensor([[1, 2, 3, 4]]), kernel=True, overwrite=True)
    lp.sum().backward(retain_graph=True)
    with pytest.raises(RuntimeError, match="second backward pass"):
        lp.sum().backward()


def test_kernel_log_sum_exp_is_stable_at_large_logits_and_masked_vocabulary(monkeypatch):
    monkeypatch.setattr(kernel_module, "_BLOCK_V", 32)
    logits = torch.full((1, 3, 100), -float("inf"))
    logits[0, 0, :] = 1e4  # exp would overflow without the running max
    logits[0, 1, 40:90] = torch.linspace(-5, 5, 50)  # whole blocks at -inf (a masked vocabulary)
    logits[0, 2, 99] = 0.0  # one finite entry, in the last partial block
    labels = torch.tensor([[7, 60, 99]])
    lp = token_logprobs(logits, labels, kernel=True)
    expected = _naive(logits.detach(), labels, 1.0)
    assert torch.isfinite(lp).all()
    # row 0: log(1/100) from fp32 numbers near 1e4, whose spacing is 1e-3
    assert torch.allclose(lp[0, 1:], expected[0, 1:], atol=1e-5) and abs(float(lp[0, 0] - expected[0, 0])) < 2e-3
    assert float(lp[0, 2]) == 0.0


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_kernel_linear_logprobs_equal_the_logits_path(dtype, tol, temperature, monkeypatch):
    from rlhf.algorithms.linear_logprobs import linear_token_logprobs

    monkeypatch.setattr(kernel_module, "_BLOCK_V", 64)  # V = 150: two full blocks and a partial one
    g = torch.Generator().manual_seed(2)
    hidden = torch.randn(11, 24, generator=g).to(dtype).requires_grad_()
    weight = (torch.randn(150, 24, generator=g) / 2).to(dtype).requires_grad_()
    labels = torch.randint(0, 150, (11,), generator=g)
    labels[4] = -100
    upstream = torch.randn(11, generator=g)

    def grads(lp):
        return torch.autograd.grad((lp * upstream).sum(), (hidden, weight))

    # 4 positions per chunk: three chunks, the last one short
    lp_k = linear_token_logprobs(hidden, weight, labels, temperature=temperature, chunk_size=4, kernel=True)
    lp_b = linear_token_logprobs(hidden, weight, labels, temperature=temperature, chunk_size=4, kernel=False)
    lp_l = token_logprobs((hidden @ weight.T)[None], labels[None], temperature=temperature, kernel=False)[0]
    assert lp_k.dtype == torch.float32 and lp_k[4] == 0
    assert torch.allclose(lp_k, lp_b, atol=tol) and torch.allclose(lp_k, lp_l, atol=tol)
    (gh_k, gw_k), (gh_l, gw_l) = grads(lp_k), grads(lp_l)
    assert gh_k.dtype == dtype and gw_k.dtype == dtype
    scale = max(float(gh_l.abs().max()), float(gw_l.abs().max()))
    assert torch.allclose(gh_k.float(), gh_l.float(), atol=tol * scale)
    assert torch.allclose(gw_k.float(), gw_l.float(), atol=tol * scale)
    assert gw_k.abs().max() > 0.05


def test_kernel_linear_logprobs_of_no_positions():
    from rlhf.algorithms.linear_logprobs import linear_token_logprobs

    hidden, weight = torch.zeros(0, 8, requires_grad=True), torch.randn(70, 8, requires_grad=True)
    lp = linear_token_logprobs(hidden, weight, torch.zeros(0, dtype=torch.long), kernel=True)
    assert lp.shape == (0,)
    lp.sum().backward()
    assert weight.grad.abs().max() == 0


def test_token_logprobs_takes_the_kernel_only_on_cuda():
    from rlhf.algorithms.logprobs import kernel_available

    assert not kernel_available(torch.zeros(1, 1, 4))  # CPU tensors: the block-wise path


def test_the_logprobs_path_setting_is_checked(monkeypatch):
    from rlhf.scoring import logprobs_path

    monkeypatch.setenv("RLHF_LOGPROBS", "blocks")
    assert logprobs_path() == "blocks"
    monkeypatch.setenv("RLHF_LOGPROBS", "triton")
    with pytest.raises(ValueError, match="RLHF_LOGPROBS='triton': expected one of logits, blocks, fused"):
        logprobs_path()
