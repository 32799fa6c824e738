import math

import pytest
import torch

from rlhf.algorithms import (AdaptiveKLController, FixedKLController, bradley_terry_loss, dpo_loss,
                             groups_with_signal, kl_estimate, overlong_penalty, token_logprobs)


def test_kl_estimators_hand_values():
    lp, ref = torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.25)]])
    # log r = log(0.25/0.5) = -log 2
    assert kl_estimate(lp, ref, "k1").item() == pytest.approx(math.log(2))
    assert kl_estimate(lp, ref, "k2").item() == pytest.approx(0.5 * math.log(2) ** 2)
    assert kl_estimate(lp, ref, "k3").item() == pytest.approx(0.5 - 1 + math.log(2))  # r - 1 - log r
    x = torch.randn(100, 7)
    assert (kl_estimate(x, torch.randn(100, 7), "k3") >= 0).all()
    assert torch.equal(kl_estimate(x, x, "k3"), torch.zeros(100, 7))
    with pytest.raises(ValueError, match="k1, k2, k3"):
        kl_estimate(x, x, "k4")


def test_k3_is_clamped():
    assert kl_estimate(torch.tensor([[-50.0]]), torch.tensor([[0.0]]), "k3").item() == 10.0


def test_kl_controllers():
    fixed = FixedKLController(0.1)
    fixed.update(5.0, 10)
    assert fixed.value == 0.1
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    ctl.update(12.0, 100)  # error clipped to 0.2: 0.1 * (1 + 0.2*100/10000) = 0.1002
    assert ctl.value == pytest.approx(0.1002)
    ctl.update(3.0, 100)  # error -0.5 -> -0.2
    assert ctl.value == pytest.approx(0.1002 * 0.998)


@pytest.mark.parametrize("dtype,tol", [(torch.float32, 1e-5), (torch.bfloat16, 2e-2)])
def test_chunked_logprobs_equal_naive(dtype, tol):
    g = torch.Generator().manual_seed(0)
    logits = (torch.randn(3, 7, 50, generator=g) * 3).to(dtype).requires_grad_()
    labels = torch.randint(0, 50, (3, 7), generator=g)
    chunked = token_logprobs(logits, labels, temperature=0.7, chunk_rows=4)
    naive = torch.log_softmax(logits.float() / 0.7, -1).gather(-1, labels[..., None]).squeeze(-1)
    assert chunked.dtype == torch.float32 and torch.allclose(chunked, naive, atol=tol)
    (g1,) = torch.autograd.grad(chunked.sum(), logits)
    (g2,) = torch.autograd.grad(naive.sum(), logits)
    assert torch.allclose(g1.float(), g2.float(), atol=tol)


def test_dpo_is_log2_when_policy_equals_reference():
    x = torch.tensor([-3.0, -5.0])
    loss, m = dpo_loss(x, x - 1, x, x - 1, beta=0.1)
    assert loss.item() == pytest.approx(math.log(2)) and m["rewards_margin"] == 0


def test_dpo_variants_hand_values():
    pw, pl, rw, rl = torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0])
    # h = (-1+2) - (-3+2) = 2 ; beta 0.5 -> beta h = 1
    loss, m = dpo_loss(pw, pl, rw, rl, beta=0.5)
    assert loss.item() == pytest.approx(-math.log(1 / (1 + math.exp(-1))))
    assert m["rewards_chosen"] == pytest.approx(0.5) and m["rewards_rejected"] == pytest.approx(-0.5)
    assert m["rewards_accuracy"] == 1.0 and m["rewards_margin"] == pytest.approx(1.0)
    ipo, _ = dpo_loss(pw, pl, rw, rl, beta=0.5, loss_type="ipo")  # (2 - 1/(2*0.5))^2 = 1
    assert ipo.item() == pytest.approx(1.0)
    smooth, _ = dpo_loss(pw, pl, rw, rl, beta=0.5, label_smoothing=0.1)
    sig = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    assert smooth.item() == pytest.approx(-0.9 * math.log(sig(1)) - 0.1 * math.log(sig(-1)))
    free, _ = dpo_loss(pw, pl, rw, rl, beta=0.5, reference_free=True)  # h = -1 - -3 = 2 as well
    assert free.item() == pytest.approx(loss.item())


def test_bradley_terry():
    loss, m = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]))
    # -log sigma(1) and -log sigma(-1), averaged
    expected = (math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1))) / 2
    assert loss.item() == pytest.approx(expected) and m["accuracy"] == 0.5 and m["margin"] == 0
    with_margin, _ = bradley_terry_loss(torch.tensor([2.0]), torch.tensor([1.0]), margin_B=torch.tensor([1.0]))
    assert with_margin.item() == pytest.approx(math.log(2))


def test_overlong_penalty_table():
    # L_max 20, L_cache 4: no penalty up to 16, ramp 17..20, -1 beyond
    lengths = torch.tensor([10, 16, 17, 18, 20, 21, 40])
    got = overlong_penalty(lengths, max_len=20, cache_len=4)
    assert got.tolist() == pytest.approx([0, 0, -0.25, -0.5, -1.0, -1.0, -1.0])
    assert overlong_penalty(lengths, max_len=20, cache_len=4, penalty_factor=0.5)[3].item() == -0.25


def test_groups_with_signal():
    keep = groups_with_signal(torch.tensor([1.0, 1, 1, 0, 1, 0, 0.5, 0.5]), 2)
    assert keep.tolist() == [False, True, True, False]
    assert groups_with_signal(torch.tensor([1.0, 0]), 1).tolist() == [False, False]
