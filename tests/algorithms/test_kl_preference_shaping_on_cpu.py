import math

import pytest
import torch

from rlhf.algorithms import (AdaptiveKLController, FixedKLController, bradley_terry_loss, dpo_loss,
                             groups_with_signal, kl_estimate, masked_mean, masked_sum, masked_var,
                             overlong_penalty)

# ---- KL estimators -------------------------------------------------------------------------


def test_kl_estimators_hand_values():
    # pi(y) = 0.5, pi_ref(y) = 0.25: log r = log(0.25 / 0.5) = -log 2 = -0.693147
    lp, ref = torch.tensor([[math.log(0.5)]]), torch.tensor([[math.log(0.25)]])
    assert kl_estimate(lp, ref, "k1").item() == pytest.approx(math.log(2))  # -log r = 0.693147
    assert kl_estimate(lp, ref, "k2").item() == pytest.approx(0.5 * math.log(2) ** 2)  # 0.240227
    assert kl_estimate(lp, ref, "k3").item() == pytest.approx(0.5 - 1 + math.log(2))  # r - 1 - log r = 0.193147
    # the other direction, pi_ref(y) = 1 > pi(y) = 0.5: log r = log 2
    lp, ref = torch.tensor([[math.log(0.5)]]), torch.tensor([[0.0]])
    assert kl_estimate(lp, ref, "k1").item() == pytest.approx(-math.log(2))  # k1 can be negative
    assert kl_estimate(lp, ref, "k3").item() == pytest.approx(2 - 1 - math.log(2))  # 0.306853


def test_k3_is_non_negative_zero_at_equality_and_clamped():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(100, 7, generator=g) * 3
    assert (kl_estimate(x, torch.randn(100, 7, generator=g) * 3, "k3") >= 0).all()
    assert torch.equal(kl_estimate(x, x, "k3"), torch.zeros(100, 7))
    # log r = 50: exp(50) - 51 is far above the clamp of 10
    assert kl_estimate(torch.tensor([[-50.0]]), torch.tensor([[0.0]]), "k3").item() == 10.0
    assert kl_estimate(torch.tensor([[-50.0]]), torch.tensor([[0.0]]), "k3", clamp=3.0).item() == 3.0


def test_k3_gradient_matches_the_formula():
    # d k3 / d logp = d (r - 1 - log r) / d logp with log r = ref - logp: -r + 1
    lp = torch.tensor([[math.log(0.5)]], requires_grad=True)
    kl_estimate(lp, torch.tensor([[math.log(0.25)]]), "k3").sum().backward()
    assert lp.grad.item() == pytest.approx(1 - 0.5)


def test_unknown_kl_kind_lists_valid_kinds():
    with pytest.raises(ValueError, match="unknown KL estimator 'k4'; valid: k1, k2, k3"):
        kl_estimate(torch.zeros(1, 1), torch.zeros(1, 1), "k4")


def test_kl_controllers():
    fixed = FixedKLController(0.1)
    fixed.update(5.0, 10)
    assert fixed.value == 0.1
    ctl = AdaptiveKLController(0.1, target=6.0, horizon=10000)
    ctl.update(7.2, 100)  # error 7.2/6 - 1 = 0.2 -> 0.1 * (1 + 0.2 * 100/10000) = 0.1002: up when KL > target
    assert ctl.value == pytest.approx(0.1002)
    ctl.update(60.0, 100)  # error 9 is clipped to 0.2 -> 0.1002 * 1.002
    assert ctl.value == pytest.approx(0.1002 * 1.002)
    before = ctl.value
    ctl.update(3.0, 100)  # error -0.5 clipped to -0.2 -> down by 0.2%
    assert ctl.value == pytest.approx(before * 0.998)
    ctl.update(6.0, 100)  # on target: unchanged
    assert ctl.value == pytest.approx(before * 0.998)


# ---- preference losses ---------------------------------------------------------------------

def test_dpo_is_log2_when_policy_equals_reference():
    x = torch.tensor([-3.0, -5.0])
    loss, m = dpo_loss(x, x - 1, x, x - 1, beta=0.1)  # h = 0 -> -log sigma(0) = log 2
    assert loss.item() == pytest.approx(math.log(2))
    assert m["rewards_margin"] == 0 and m["rewards_chosen"] == 0 and m["rewards_accuracy"] == 0


def test_dpo_variants_hand_values():
    pw, pl, rw, rl = torch.tensor([-1.0]), torch.tensor([-3.0]), torch.tensor([-2.0]), torch.tensor([-2.0])
    # h = (-1 - -2) - (-3 - -2) = 1 - (-1) = 2 ; beta 0.5 -> beta h = 1 -> -log sigma(1) = log(1 + e^-1) = 0.313262
    loss, m = dpo_loss(pw, pl, rw, rl, beta=0.5)
    assert loss.item() == pytest.approx(math.log(1 + math.exp(-1)))
    assert m["rewards_chosen"] == pytest.approx(0.5) and m["rewards_rejected"] == pytest.approx(-0.5)
    assert m["rewards_accuracy"] == 1.0 and m["rewards_margin"] == pytest.approx(1.0)
    # IPO: (h - 1/(2 beta))^2 = (2 - 1/(2*0.5))^2 = (2 - 1)^2 = 1 ; with beta 0.1: (2 - 5)^2 = 9
    assert dpo_loss(pw, pl, rw, rl, beta=0.5, loss_type="ipo")[0].item() == pytest.approx(1.0)
    assert dpo_loss(pw, pl, rw, rl, beta=0.1, loss_type="ipo")[0].item() == pytest.approx(9.0)
    # label smoothing 0.1: 0.9 * log(1 + e^-1) + 0.1 * log(1 + e^1) = 0.281936 + 0.131326 = 0.413262
    smooth, _ = dpo_loss(pw, pl, rw, rl, beta=0.5, label_smoothing=0.1)
    assert smooth.item() == pytest.approx(0.9 * math.log(1 + math.exp(-1)) + 0.1 * math.log(1 + math.exp(1)))
    # reference-free: h = -1 - (-3) = 2 as well (the reference margin happened to be 0)
    free, _ = dpo_loss(pw, pl, None, None, beta=0.5, reference_free=True)
    assert free.item() == pytest.approx(loss.item())


def test_dpo_gradient_pushes_chosen_up_and_rejected_down():
    pw, pl = torch.tensor([-2.0], requires_grad=True), torch.tensor([-2.0], requires_grad=True)
    loss, _ = dpo_loss(pw, pl, torch.tensor([-2.0]), torch.tensor([-2.0]), beta=0.1)
    loss.backward()
    # d/dh -log sigma(beta h) at h = 0 = -beta/2 = -0.05
    assert pw.grad.item() == pytest.approx(-0.05) and pl.grad.item() == pytest.approx(0.05)


def test_dpo_errors():
    x = torch.zeros(1)
    with pytest.raises(ValueError, match="unknown DPO loss type 'hinge'; valid: sigmoid, ipo"):
        dpo_loss(x, x, x, x, loss_type="hinge")
    with pytest.raises(ValueError, match="needs reference log-probs"):
        dpo_loss(x, x, None, None)
    with pytest.raises(ValueError, match="label_smoothing applies to loss_type='sigmoid' only"):
        dpo_loss(x, x, x, x, loss_type="ipo", label_smoothing=0.1)


def test_bradley_terry():
    loss, m = bradley_terry_loss(torch.tensor([2.0, 0.0]), torch.tensor([1.0, 1.0]))
    # -log sigma(1) = 0.313262 and -log sigma(-1) = 1.313262, mean 0.813262
    assert loss.item() == pytest.approx((math.log(1 + math.exp(-1)) + math.log(1 + math.exp(1))) / 2)
    assert m["accuracy"] == 0.5 and m["margin"] == 0
    # margin 1 on a reward gap of 1: -log sigma(0) = log 2
    with_margin, _ = bradley_terry_loss(torch.tensor([2.0]), torch.tensor([1.0]), margin_B=torch.tensor([1.0]))
    assert with_margin.item() == pytest.approx(math.log(2))


# ---- DAPO shaping and filtering ------------------------------------------------------------

def test_overlong_penalty_table():
    # L_max 20, L_cache 4: expected length 16.
    #   L:        10   16   17            18            20            21   40
    #   penalty:   0    0   (16-17)/4     (16-18)/4     (16-20)/4     -1   -1
    #            = 0    0   -0.25         -0.5          -1.0          -1   -1
    lengths = torch.tensor([10, 16, 17, 18, 20, 21, 40])
    got = overlong_penalty(lengths, max_len=20, cache_len=4)
    assert got.dtype == torch.float32 and got.tolist() == pytest.approx([0, 0, -0.25, -0.5, -1.0, -1.0, -1.0])
    half = overlong_penalty(lengths, max_len=20, cache_len=4, penalty_factor=0.5)
    assert half.tolist() == pytest.approx([0, 0, -0.125, -0.25, -0.5, -0.5, -0.5])
    with pytest.raises(ValueError, match="0 < cache_len <= max_len"):
        overlong_penalty(lengths, max_len=20, cache_len=0)


def test_groups_with_signal():
    # groups of 2: [1,1] all equal, [1,0] differ, [1,0] differ, [0.5,0.5] equal
    keep = groups_with_signal(torch.tensor([1.0, 1, 1, 0, 1, 0, 0.5, 0.5]), 2)
    assert keep.dtype == torch.bool and keep.tolist() == [False, True, True, False]
    # a float round-off difference is not a signal; a real one is
    assert groups_with_signal(torch.tensor([0.3, 0.1 + 0.2, 0.3, 0.4]), 2).tolist() == [False, True]
    assert groups_with_signal(torch.tensor([1.0, 0]), 1).tolist() == [False, False]  # size 1: never kept
    with pytest.raises(ValueError, match="groups of 3"):
        groups_with_signal(torch.zeros(4), 3)


# ---- masked reductions ---------------------------------------------------------------------

def test_masked_reductions():
    x = torch.tensor([[1.0, 2, float("nan")], [3, float("inf"), 5]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 1]])
    assert masked_sum(x, mask).item() == 11.0  # 1 + 2 + 3 + 5: nan/inf padding ignored
    assert masked_mean(x, mask).item() == 2.75
    assert masked_mean(x, mask, dim=1).tolist() == [1.5, 4.0]
    assert masked_var(x, mask).item() == pytest.approx(2.9166667)  # unbiased var of 1, 2, 3, 5 = 8.75/3
    assert masked_var(x, mask, unbiased=False).item() == pytest.approx(8.75 / 4)
    assert masked_var(x, mask, dim=1).tolist() == pytest.approx([0.5, 2.0])
    empty = torch.zeros(2, 3)
    assert masked_mean(x, empty).item() == 0.0 and masked_mean(x, empty, dim=1).tolist() == [0.0, 0.0]
    assert masked_var(x, empty).item() == 0.0


def test_kl_shaped_rewards_put_the_score_on_the_last_response_token():
    from rlhf.algorithms.kl import kl_shaped_rewards

    kl = torch.tensor([[0.5, 1.0, 2.0], [1.0, 1.0, 1.0], [3.0, 3.0, 3.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 0.0]])
    scores = torch.tensor([1.0, -2.0, 5.0])
    r = kl_shaped_rewards(scores, kl, mask, beta=0.1)
    # row 0: -0.1*0.5, -0.1*1.0 + 1.0 (its last token), masked 0
    # row 1: -0.1, -0.1, -0.1 - 2.0 ; row 2: no response token, so no reward anywhere
    assert torch.allclose(r, torch.tensor([[-0.05, 0.9, 0.0], [-0.1, -0.1, -2.1], [0.0, 0.0, 0.0]]))
