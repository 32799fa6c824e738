import math

import pytest
import torch

import rlhf.algorithms.logprobs as logprobs_module
from rlhf.algorithms import entropy_from_logits, token_logprobs


def _naive_logprobs(logits, labels, temperature=1.0):
    return torch.log_softmax(logits.float() / temperature, -1).gather(-1, labels[..., None]).squeeze(-1)


def _naive_entropy(logits, temperature=1.0):
    logp = torch.log_softmax(logits.float() / temperature, -1)
    return -(logp.exp() * logp).sum(-1)


def _case(dtype, B=3, T=7, V=50, seed=0):
    g = torch.Generator().manual_seed(seed)
    logits = (torch.randn(B, T, V, generator=g) * 3).to(dtype).requires_grad_()
    labels = torch.randint(0, V, (B, T), generator=g)
    return logits, labels


# chunk sizes: 1 position, a block inside one row (4 < T), several whole rows (16 > T)
@pytest.mark.parametrize("chunk_size", [1, 4, 16])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
@pytest.mark.parametrize("temperature", [1.0, 0.7])
def test_chunked_logprobs_equal_naive_values_and_gradients(chunk_size, dtype, tol, temperature):
    logits, labels = _case(dtype)
    chunked = token_logprobs(logits, labels, temperature=temperature, chunk_size=chunk_size)
    naive = _naive_logprobs(logits, labels, temperature)
    assert chunked.dtype == torch.float32 and chunked.shape == labels.shape
    assert torch.allclose(chunked, naive, atol=tol)
    upstream = torch.randn(labels.shape, generator=torch.Generator().manual_seed(1))  # a non-trivial dL/dlogp
    (g_chunked,) = torch.autograd.grad((chunked * upstream).sum(), logits)
    (g_naive,) = torch.autograd.grad((naive * upstream).sum(), logits)
    assert g_chunked.dtype == dtype
    # bf16 gradients are rounded to bf16 in both; compare relative to the gradient scale
    assert torch.allclose(g_chunked.float(), g_naive.float(), atol=tol * max(1.0, g_naive.abs().max().item()))


def test_logprobs_on_a_strided_view_and_through_a_model_like_graph():
    # `logits[:, :-1]` (what a causal LM's caller passes) is not contiguous; the gradient must
    # reach the full tensor and the upstream parameters
    g = torch.Generator().manual_seed(2)
    w = torch.randn(8, 40, generator=g, requires_grad=True)
    h = torch.randn(2, 6, 8, generator=g)
    ids = torch.randint(0, 40, (2, 6), generator=g)
    logits_full = h @ w
    lp = token_logprobs(logits_full[:, :-1], ids[:, 1:], chunk_size=3)
    (g1,) = torch.autograd.grad(lp.sum(), w)
    (g2,) = torch.autograd.grad(_naive_logprobs((h @ w)[:, :-1], ids[:, 1:]).sum(), w)
    assert torch.allclose(g1, g2, atol=1e-5)


def test_negative_labels_are_ignored():
    logits, labels = _case(torch.float32, B=2, T=4, V=10)
    labels[0, 1] = -100
    lp = token_logprobs(logits, labels, chunk_size=3)
    (grad,) = torch.autograd.grad(lp.sum(), logits)
    assert lp[0, 1].item() == 0.0 and (grad[0, 1] == 0).all()
    keep = labels >= 0
    assert torch.allclose(lp[keep], _naive_logprobs(logits, labels.clamp(min=0))[keep], atol=1e-5)


def test_logprobs_hand_value_and_no_grad():
    # uniform logits over 4 tokens: log(1/4) at any temperature
    with torch.no_grad():
        lp = token_logprobs(torch.zeros(1, 2, 4), torch.tensor([[0, 3]]), temperature=0.5)
    assert torch.allclose(lp, torch.full((1, 2), math.log(0.25)))
    # logits (2, 0) at T = 2: softmax of (1, 0) -> log p(0) = 1 - log(e + 1)
    lp = token_logprobs(torch.tensor([[[2.0, 0.0]]]), torch.tensor([[0]]), temperature=2.0)
    assert lp.item() == pytest.approx(1 - math.log(math.e + 1))


def test_logprobs_are_stable_for_huge_logits():
    logits = torch.tensor([[[1e4, 0.0, -1e4]]], requires_grad=True)
    lp = token_logprobs(logits, torch.tensor([[1]]))
    lp.sum().backward()
    assert lp.item() == pytest.approx(-1e4) and torch.isfinite(logits.grad).all()


def test_default_block_size_follows_the_vocabulary(monkeypatch):
    # default blocks hold _BLOCK_ELEMENTS fp32 values: 120 // V=50 -> 2 positions per block
    assert logprobs_module._positions_per_block(152_064, None) == 220
    monkeypatch.setattr(logprobs_module, "_BLOCK_ELEMENTS", 120)
    assert logprobs_module._positions_per_block(50, None) == 2
    logits, labels = _case(torch.float32)
    lp = token_logprobs(logits, labels)
    (g1,) = torch.autograd.grad(lp.sum(), logits)
    naive = _naive_logprobs(logits, labels)
    (g2,) = torch.autograd.grad(naive.sum(), logits)
    assert torch.allclose(lp, naive, atol=1e-5) and torch.allclose(g1, g2, atol=1e-5)
    with torch.inference_mode():
        assert torch.allclose(token_logprobs(logits, labels), naive, atol=1e-5)


def test_shape_errors():
    with pytest.raises(ValueError, match=r"need logits \[B, T, V\] and labels \[B, T\]"):
        token_logprobs(torch.zeros(2, 3, 4), torch.zeros(2, 4, dtype=torch.long))
    with pytest.raises(ValueError, match="temperature must be positive"):
        token_logprobs(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long), temperature=0)
    with pytest.raises(ValueError, match="chunk_size must be a positive int or None"):
        token_logprobs(torch.zeros(2, 3, 4), torch.zeros(2, 3, dtype=torch.long), chunk_size=0)


@pytest.mark.parametrize("chunk_size", [2, 16])
@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 1e-2)])
def test_entropy_equals_naive_values_and_gradients(chunk_size, dtype, tol):
    logits, _ = _case(dtype, seed=4)
    for temperature in (1.0, 0.6):
        h = entropy_from_logits(logits, temperature=temperature, chunk_size=chunk_size)
        naive = _naive_entropy(logits, temperature)
        assert h.dtype == torch.float32 and torch.allclose(h, naive, atol=tol * 10)
        (g1,) = torch.autograd.grad(h.sum(), logits)
        (g2,) = torch.autograd.grad(naive.sum(), logits)
        assert torch.allclose(g1.float(), g2.float(), atol=tol * 10)


def test_entropy_hand_values_and_masked_vocabulary():
    assert torch.allclose(entropy_from_logits(torch.zeros(1, 1, 4)), torch.tensor([[math.log(4)]]))
    assert entropy_from_logits(torch.tensor([[[100.0, 0, 0]]])).item() < 1e-6
    # -inf entries (a masked vocabulary) count as probability 0: uniform over the 2 others -> log 2
    logits = torch.tensor([[[0.0, -math.inf, 0.0, -math.inf]]], requires_grad=True)
    h = entropy_from_logits(logits)
    h.sum().backward()
    assert h.item() == pytest.approx(math.log(2)) and torch.isfinite(logits.grad).all()
