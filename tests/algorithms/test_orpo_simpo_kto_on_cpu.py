"""ORPO, SimPO and KTO against hand-computed values and gradients (the papers' formulas)."""

import math

import pytest
import torch

from rlhf.algorithms.preference import kto_loss, orpo_loss, pair_loss, simpo_loss


def _sigmoid(x: float) -> float:
    return 1 / (1 + math.exp(-x))


def test_orpo_value_and_gradient():
    # avg log-probs a_w = -0.5, a_l = -1.0 (Hong et al. 2024, eqs. 4-7)
    # log odds(a) = a - log(1 - e^a):  a_w -> -0.5 - log(1 - 0.606531) = 0.432752
    #                                   a_l -> -1.0 - log(1 - 0.367879) = -0.541325
    # u = 0.974077; L_OR = -log sigma(u) = 0.320300; L = -a_w + 0.1 * L_OR = 0.532030
    a_w = torch.tensor([-0.5], requires_grad=True)
    a_l = torch.tensor([-1.0], requires_grad=True)
    loss, m = orpo_loss(a_w, a_l, lam=0.1)
    assert loss.item() == pytest.approx(0.532030, abs=1e-5)
    assert m["log_odds_ratio"] == pytest.approx(0.974077, abs=1e-5) and m["or_loss"] == pytest.approx(0.3203, abs=1e-4)
    assert m["nll"] == pytest.approx(0.5) and m["rewards_accuracy"] == 1.0
    loss.backward()
    # dL/da_w = -1 - lam * sigma(-u) / (1 - e^{a_w});  dL/da_l = lam * sigma(-u) / (1 - e^{a_l})
    s = _sigmoid(-0.974077)
    assert a_w.grad.item() == pytest.approx(-1 - 0.1 * s / (1 - math.exp(-0.5)), abs=1e-5)
    assert a_l.grad.item() == pytest.approx(0.1 * s / (1 - math.exp(-1.0)), abs=1e-5)


def test_orpo_stays_finite_when_a_response_is_certain():
    loss, m = orpo_loss(torch.tensor([0.0, -1e-9]), torch.tensor([-2.0, -3.0]))
    assert math.isfinite(loss.item()) and all(math.isfinite(v) for v in m.values())


def test_simpo_value_margin_and_gradient():
    # beta = 2, gamma = 1: 2*(-0.5) - 2*(-1.0) - 1 = 0 -> -log sigma(0) = log 2 (Meng et al. 2024, eq. 6)
    a_w = torch.tensor([-0.5], requires_grad=True)
    a_l = torch.tensor([-1.0], requires_grad=True)
    loss, m = simpo_loss(a_w, a_l, beta=2.0, gamma=1.0)
    assert loss.item() == pytest.approx(math.log(2))
    assert (m["rewards_chosen"], m["rewards_rejected"], m["rewards_margin"]) == (-1.0, -2.0, 1.0)
    loss.backward()
    # d/da_w of -log sigma(z) at z = 0 is -sigma(0) * beta = -1; for a_l it is +1
    assert a_w.grad.item() == pytest.approx(-1.0) and a_l.grad.item() == pytest.approx(1.0)
    # the target margin: the same pair with gamma = 0 has loss -log sigma(1) = 0.313262
    assert simpo_loss(a_w, a_l, beta=2.0, gamma=0.0)[0].item() == pytest.approx(0.313262, abs=1e-6)


def test_pair_loss_length_normalises_for_simpo_and_orpo_only():
    logps, lengths = torch.tensor([-2.0]), torch.tensor([4.0])  # avg -0.5
    rej, rej_len = torch.tensor([-3.0]), torch.tensor([3.0])  # avg -1.0
    simpo, _ = pair_loss("simpo", logps, rej, lengths, rej_len, beta=2.0, simpo_gamma=1.0)
    assert simpo.item() == pytest.approx(math.log(2))
    orpo, _ = pair_loss("orpo", logps, rej, lengths, rej_len, orpo_lambda=0.1)
    assert orpo.item() == pytest.approx(0.532030, abs=1e-5)
    # DPO uses the sums and the reference: h = (-2 - -2) - (-3 - -4) = -1; -log sigma(0.1 * -1)
    dpo, _ = pair_loss("sigmoid", logps, rej, lengths, rej_len, torch.tensor([-2.0]), torch.tensor([-4.0]), beta=0.1)
    assert dpo.item() == pytest.approx(-math.log(_sigmoid(-0.1)))
    with pytest.raises(ValueError, match="pairwise loss type 'kto'"):
        pair_loss("kto", logps, rej, lengths, rej_len)


def test_kto_value_reference_point_and_gradient():
    # r = [-3 - -3.5, -4 - -3] = [0.5, -1.0]; mismatched pairs: [-5 - -5.5, -6 - -6] -> z0 = max(0, 0.25)
    # desirable:   v = sigma(0.1 * (0.5 - 0.25)) = sigma(0.025) = 0.506250
    # undesirable: v = sigma(0.1 * (0.25 + 1.0)) = sigma(0.125) = 0.531209
    # L = mean(1 - v) = 0.481271 (Ethayarajh et al. 2024, eq. 8, lambda_d = lambda_u = 1)
    logps = torch.tensor([-3.0, -4.0], requires_grad=True)
    kl_logps = torch.tensor([-5.0, -6.0], requires_grad=True)
    loss, m = kto_loss(logps, torch.tensor([-3.5, -3.0]), torch.tensor([True, False]), kl_logps,
                       torch.tensor([-5.5, -6.0]), beta=0.1)
    assert loss.item() == pytest.approx(0.481271, abs=1e-6)
    assert m["kl"] == pytest.approx(0.25) and m["rewards_desirable"] == pytest.approx(0.05)
    assert m["rewards_undesirable"] == pytest.approx(-0.1)
    loss.backward()
    # dL/dr_1 = -0.5 * beta * v1 (1 - v1); dL/dr_2 = +0.5 * beta * v2 (1 - v2); z0 is not differentiated
    v1, v2 = _sigmoid(0.025), _sigmoid(0.125)
    assert logps.grad.tolist() == pytest.approx([-0.05 * v1 * (1 - v1), 0.05 * v2 * (1 - v2)], abs=1e-7)
    assert kl_logps.grad is None or torch.all(kl_logps.grad == 0)


def test_kto_weights_and_a_negative_kl_estimate():
    # mismatched pairs more likely under the reference: z0 = max(0, -1) = 0
    # one desirable example with r = 0: v = 2 * sigma(0) = 1; L = lambda_d - v = 2 - 1 = 1
    loss, m = kto_loss(torch.tensor([-1.0]), torch.tensor([-1.0]), torch.tensor([True]), torch.tensor([-3.0]),
                       torch.tensor([-2.0]), beta=0.1, lambda_d=2.0, lambda_u=1.0)
    assert m["kl"] == 0.0 and loss.item() == pytest.approx(1.0)
