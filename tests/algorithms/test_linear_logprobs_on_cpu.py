import math

import pytest
import torch

from rlhf.algorithms import token_logprobs
from rlhf.algorithms.linear_logprobs import linear_token_logprobs


def _case(dtype, K=23, H=8, V=40, seed=0):
    g = torch.Generator().manual_seed(seed)
    hidden = torch.randn(K, H, generator=g).to(dtype).requires_grad_()
    weight = (torch.randn(V, H, generator=g) / 2).to(dtype).requires_grad_()
    labels = torch.randint(0, V, (K,), generator=g)
    labels[[2, 9]] = -100
    return hidden, weight, labels


def _reference(hidden, weight, labels, temperature):
    """log_softmax of the full logits in float64, 0 at labels < 0."""
    z = hidden.double() @ weight.double().T / temperature
    lp = torch.log_softmax(z, -1).gather(-1, labels.clamp(min=0)[:, None]).squeeze(-1)
    return torch.where(labels >= 0, lp, 0.0)


# chunk sizes: one position per block, blocks that do not divide K, one block for all
@pytest.mark.parametrize("chunk_size", [1, 5, 64])
@pytest.mark.parametrize("temperature", [1.0, 0.6])
def test_values_and_both_gradients_equal_the_full_logits(chunk_size, temperature):
    hidden, weight, labels = _case(torch.float32)
    lp = linear_token_logprobs(hidden, weight, labels, temperature=temperature, chunk_size=chunk_size)
    ref = _reference(hidden, weight, labels, temperature)
    assert lp.dtype == torch.float32 and lp.shape == labels.shape
    assert torch.allclose(lp.double(), ref, atol=1e-5)
    assert torch.all(lp[labels < 0] == 0)
    upstream = torch.randn(labels.shape, generator=torch.Generator().manual_seed(1))
    got = torch.autograd.grad((lp * upstream).sum(), (hidden, weight))
    want = torch.autograd.grad((ref * upstream.double()).sum(), (hidden, weight))
    for g, w in zip(got, want):
        assert g.dtype == torch.float32
        assert torch.allclose(g, w, atol=1e-5)
    # positions with a negative label get no gradient
    assert torch.all(got[0][labels < 0] == 0)


def test_equals_token_logprobs_of_the_logits_in_bf16():
    """The model's dtype: the same bf16 matmul as the output layer, so the same log-probs as
    token_logprobs on that layer's bf16 logits; the gradients match to bf16 rounding."""
    hidden, weight, labels = _case(torch.bfloat16, K=50, H=16, V=300)
    labels = labels.clamp(min=0)
    fused = linear_token_logprobs(hidden, weight, labels, chunk_size=7)
    via_logits = token_logprobs((hidden @ weight.T)[None], labels[None])[0]
    assert torch.allclose(fused, via_logits, atol=1e-6)
    upstream = torch.randn(labels.shape, generator=torch.Generator().manual_seed(2))
    got = torch.autograd.grad((fused * upstream).sum(), (hidden, weight))
    want = torch.autograd.grad((via_logits * upstream).sum(), (hidden, weight))
    for g, w in zip(got, want):
        assert g.dtype == torch.bfloat16
        assert (g.float() - w.float()).abs().max() <= 0.02 * w.float().abs().max()


def test_hand_value():
    """Two tokens, hidden [1, 0] and weight rows [1, 0], [0, 1]: logits (1, 0), so
    log p(token 0) = 1 - log(e + 1) and log p(token 1) = -log(e + 1)."""
    hidden = torch.tensor([[1.0, 0.0], [1.0, 0.0]])
    weight = torch.eye(2)
    lp = linear_token_logprobs(hidden, weight, torch.tensor([0, 1]))
    expected = torch.tensor([1 - math.log(math.e + 1), -math.log(math.e + 1)])
    assert torch.allclose(lp, expected, atol=1e-6)
    # at temperature 2 the logits are (0.5, 0)
    lp_t = linear_token_logprobs(hidden, weight, torch.tensor([0, 1]), temperature=2.0)
    assert torch.allclose(lp_t, torch.tensor([0.5 - math.log(math.exp(0.5) + 1), -math.log(math.exp(0.5) + 1)]))


def test_frozen_weight_gets_no_gradient_and_hidden_still_does():
    """LoRA keeps the output layer frozen: only the hidden states' gradient is formed."""
    hidden, weight, labels = _case(torch.float32)
    weight = weight.detach()
    lp = linear_token_logprobs(hidden, weight, labels, chunk_size=4)
    (g,) = torch.autograd.grad(lp.sum(), hidden)
    (want,) = torch.autograd.grad(_reference(hidden, weight, labels, 1.0).sum(), hidden)
    assert torch.allclose(g, want, atol=1e-5)


def test_shape_and_argument_errors():
    hidden, weight, labels = _case(torch.float32)
    with pytest.raises(ValueError, match=r"hidden \[K, H\] and weight \[V, H\]"):
        linear_token_logprobs(hidden[None], weight, labels)
    with pytest.raises(ValueError, match=r"hidden \[K, H\] and weight \[V, H\]"):
        linear_token_logprobs(hidden, weight[:, :3], labels)
    with pytest.raises(ValueError, match=r"labels \[K\]"):
        linear_token_logprobs(hidden, weight, labels[:3])
    with pytest.raises(ValueError, match="temperature"):
        linear_token_logprobs(hidden, weight, labels, temperature=0.0)
    with pytest.raises(ValueError, match="chunk_size"):
        linear_token_logprobs(hidden, weight, labels, chunk_size=0)
