import math

import pytest
import torch

from rlhf.algorithms import (AGG_MODES, POLICY_LOSSES, aggregate_loss, get_policy_loss, ppo_policy_loss,
                             register_policy_loss, truncated_is_weights, value_loss)


def _grad_at(ratio: float, adv: float, **kw):
    """Loss, d loss / d logprob and metrics for one token with pi/pi_old = ratio."""
    lp = torch.tensor([[math.log(ratio)]], requires_grad=True)
    loss, m = ppo_policy_loss(lp, torch.zeros(1, 1), torch.tensor([[adv]]), torch.ones(1, 1), **kw)
    loss.backward()
    return loss.item(), lp.grad.item(), m


# ---- PPO surrogate -------------------------------------------------------------------------

def test_ratio_one_gives_minus_advantage():
    # ratio 1 everywhere: loss_t = -A_t; token-mean over 3 valid tokens = -(0.5 + 0.5 + 2)/3 = -1
    lp = torch.tensor([[-1.0, -2.0, -0.5]])
    loss, m = ppo_policy_loss(lp, lp.clone(), torch.tensor([[0.5, 0.5, 2.0]]), torch.ones(1, 3))
    assert loss.item() == pytest.approx(-1.0)
    assert m["ratio_mean"] == m["ratio_max"] == m["ratio_min"] == 1.0 and m["approx_kl"] == 0.0
    assert m["clipfrac_low"] == m["clipfrac_high"] == m["dual_clip_frac"] == 0.0


def test_clip_higher_is_asymmetric_and_gradient_is_exactly_zero_when_clipped():
    kw = dict(eps_low=0.2, eps_high=0.28)
    # A>0, ratio 1.25 inside 1.28: loss -A*ratio = -1.25, d/dlogp = -A*ratio = -1.25
    loss, grad, m = _grad_at(1.25, 1.0, **kw)
    assert loss == pytest.approx(-1.25) and grad == pytest.approx(-1.25) and m["clipfrac_high"] == 0
    # A>0, ratio 1.3 > 1.28: loss -1.28, gradient exactly 0
    loss, grad, m = _grad_at(1.3, 1.0, **kw)
    assert loss == pytest.approx(-1.28) and grad == 0.0 and m["clipfrac_high"] == 1.0
    # A>0, ratio 0.7 < 0.8 is NOT clipped for a positive advantage: loss -0.7, grad -0.7
    loss, grad, m = _grad_at(0.7, 1.0, **kw)
    assert loss == pytest.approx(-0.7) and grad == pytest.approx(-0.7) and m["clipfrac_low"] == 0
    # A<0, ratio 0.75 < 0.8: loss max(0.75, 0.8) = 0.8, gradient exactly 0
    loss, grad, m = _grad_at(0.75, -1.0, **kw)
    assert loss == pytest.approx(0.8) and grad == 0.0 and m["clipfrac_low"] == 1.0
    # A<0, ratio 1.3 > 1.28 is NOT clipped for a negative advantage: loss 1.3, grad +1.3
    loss, grad, m = _grad_at(1.3, -1.0, **kw)
    assert loss == pytest.approx(1.3) and grad == pytest.approx(1.3) and m["clipfrac_high"] == 0
    # A<0, ratio 0.85 inside [0.8, 1.28]: unclipped
    loss, grad, _ = _grad_at(0.85, -2.0, **kw)
    assert loss == pytest.approx(1.7) and grad == pytest.approx(1.7)


def test_dual_clip_bounds_negative_advantage_loss():
    # A = -1, ratio 5: PPO loss max(5, 0.8) = 5; dual clip c = 3 bounds it at -c*A = 3, gradient 0
    loss, grad, m = _grad_at(5.0, -1.0, eps_low=0.2, eps_high=0.28, dual_clip=3.0)
    assert loss == pytest.approx(3.0) and grad == 0.0 and m["dual_clip_frac"] == 1.0
    # ratio 2 < c: unchanged (loss 2, gradient 2)
    loss, grad, m = _grad_at(2.0, -1.0, dual_clip=3.0)
    assert loss == pytest.approx(2.0) and grad == pytest.approx(2.0) and m["dual_clip_frac"] == 0.0
    # positive advantages are untouched by the dual clip: A = 1, ratio 5 -> -1.2 (upper clip)
    loss, _, m = _grad_at(5.0, 1.0, dual_clip=3.0)
    assert loss == pytest.approx(-1.2) and m["dual_clip_frac"] == 0.0
    with pytest.raises(ValueError, match="dual_clip must be a constant > 1"):
        _grad_at(1.0, 1.0, dual_clip=0.5)


def test_metrics_are_fractions_of_valid_tokens():
    # 4 valid tokens: ratios 1.5 (A>0, clipped high), 0.5 (A<0, clipped low), 1.0, 1.0; one masked token
    lp = torch.log(torch.tensor([[1.5, 0.5, 1.0, 1.0, 9.0]]))
    mask = torch.tensor([[1.0, 1, 1, 1, 0]])
    _, m = ppo_policy_loss(lp, torch.zeros(1, 5), torch.tensor([[1.0, -1.0, 1.0, -1.0, 1.0]]), mask)
    assert m["clipfrac_high"] == 0.25 and m["clipfrac_low"] == 0.25
    assert m["ratio_max"] == pytest.approx(1.5) and m["ratio_min"] == pytest.approx(0.5)
    assert m["ratio_mean"] == pytest.approx(1.0)
    # k3 of KL(pi_old || pi): rho - 1 - log rho, averaged: (0.5 - log 1.5 + (-0.5) - log 0.5) / 4
    assert m["approx_kl"] == pytest.approx((0.5 - math.log(1.5) - 0.5 - math.log(0.5)) / 4, abs=1e-6)
    assert all(isinstance(v, float) for v in m.values())


def test_is_weights_scale_the_loss_and_are_detached():
    lp = torch.zeros(1, 2, requires_grad=True)
    w = torch.tensor([[2.0, 0.0]], requires_grad=True)
    loss, _ = ppo_policy_loss(lp, lp.detach(), torch.ones(1, 2), torch.ones(1, 2), is_weights_BR=w)
    assert loss.item() == pytest.approx(-1.0)  # (-1*2 + -1*0) / 2 tokens
    loss.backward()
    assert w.grad is None and lp.grad.tolist() == [[-1.0, 0.0]]


def test_policy_loss_registry():
    assert get_policy_loss("ppo") is ppo_policy_loss and "ppo" in POLICY_LOSSES
    with pytest.raises(ValueError, match="unknown policy loss 'vanilla'; valid: ppo"):
        get_policy_loss("vanilla")
    with pytest.raises(ValueError, match="policy loss 'ppo' is already registered"):
        register_policy_loss("ppo")(ppo_policy_loss)


# ---- aggregation ---------------------------------------------------------------------------

def test_token_mean_vs_seq_mean_on_unequal_lengths():
    # seq 1: 1 token of loss 4 ; seq 2: 3 tokens of loss 1 each
    loss = torch.tensor([[4.0, 0, 0], [1, 1, 1]])
    mask = torch.tensor([[1.0, 0, 0], [1, 1, 1]])
    # token-mean: (4 + 1+1+1) / 4 tokens = 1.75 -> the long sequence carries 3/7 of the loss
    assert aggregate_loss(loss, mask, "token-mean").item() == pytest.approx(1.75)
    # seq-mean-token-mean: (4/1 + 3/3) / 2 seqs = 2.5 -> each sequence carries half
    assert aggregate_loss(loss, mask, "seq-mean-token-mean").item() == pytest.approx(2.5)
    # seq-mean-token-sum: (4 + 3) / 2 seqs = 3.5
    assert aggregate_loss(loss, mask, "seq-mean-token-sum").item() == pytest.approx(3.5)
    # seq-mean-token-sum-norm: (4 + 3) / (2 seqs * 10) = 0.35 ; default norm_len = R = 3 -> 7/6
    assert aggregate_loss(loss, mask, "seq-mean-token-sum-norm", norm_len=10).item() == pytest.approx(0.35)
    assert aggregate_loss(loss, mask, "seq-mean-token-sum-norm").item() == pytest.approx(7 / 6)


def test_token_weights_per_mode():
    # gradient of the aggregate w.r.t. each token's loss = the weight each mode gives that token
    loss = torch.zeros(2, 4, requires_grad=True)
    mask = torch.tensor([[1.0, 0, 0, 0], [1, 1, 1, 1]])
    for mode, short, long in (("token-mean", 1 / 5, 1 / 5), ("seq-mean-token-mean", 1 / 2, 1 / 8),
                              ("seq-mean-token-sum", 1 / 2, 1 / 2)):
        (g,) = torch.autograd.grad(aggregate_loss(loss, mask, mode), loss)
        assert g[0, 0].item() == pytest.approx(short) and g[1, 0].item() == pytest.approx(long), mode
        assert (g[0, 1:] == 0).all()


@pytest.mark.parametrize("mode", AGG_MODES)
@pytest.mark.parametrize("parts", [2, 3])
def test_shards_with_global_counts_add_up(mode, parts):
    g = torch.Generator().manual_seed(2)
    loss = torch.randn(6, 5, generator=g)
    mask = (torch.rand(6, 5, generator=g) > 0.4).float()
    mask[0] = 0  # a fully masked row
    mask[3, 0] = 1  # and a row with a single token at least
    full = aggregate_loss(loss, mask, mode, norm_len=7)
    counts = dict(num_tokens=int(mask.sum()), num_seqs=int((mask.sum(1) > 0).sum()), norm_len=7)
    step = 6 // parts
    shards = [aggregate_loss(loss[i:i + step], mask[i:i + step], mode, **counts) for i in range(0, 6, step)]
    assert len(shards) == parts and torch.allclose(full, sum(shards), atol=1e-6)


@pytest.mark.parametrize("mode", AGG_MODES)
def test_ppo_loss_and_gradient_add_up_over_shards(mode):
    g = torch.Generator().manual_seed(5)
    lp = (torch.randn(6, 4, generator=g) * 0.3).requires_grad_()
    old, adv = torch.randn(6, 4, generator=g) * 0.3, torch.randn(6, 4, generator=g)
    mask = (torch.rand(6, 4, generator=g) > 0.3).float()
    kw = dict(eps_low=0.2, eps_high=0.28, dual_clip=3.0, agg_mode=mode, norm_len=4)
    full, _ = ppo_policy_loss(lp, old, adv, mask, **kw)
    (g_full,) = torch.autograd.grad(full, lp)
    counts = dict(num_tokens=mask.sum(), num_seqs=(mask.sum(1) > 0).sum())
    total, g_sum = 0.0, torch.zeros_like(lp)
    for rows in (slice(0, 2), slice(2, 4), slice(4, 6)):
        part, _ = ppo_policy_loss(lp[rows], old[rows], adv[rows], mask[rows], **kw, **counts)
        total = total + part
        g_sum += torch.autograd.grad(part, lp)[0]
    assert torch.allclose(full, total, atol=1e-6) and torch.allclose(g_full, g_sum, atol=1e-6)


def test_unknown_mode_lists_valid_modes():
    with pytest.raises(ValueError, match="unknown loss aggregation mode 'mean'; valid: token-mean, "):
        aggregate_loss(torch.zeros(1, 1), torch.ones(1, 1), "mean")
    with pytest.raises(ValueError, match="unknown loss aggregation mode"):
        ppo_policy_loss(torch.zeros(1, 1), torch.zeros(1, 1), torch.ones(1, 1), torch.ones(1, 1), agg_mode="sum")


@pytest.mark.parametrize("mode", AGG_MODES)
def test_fully_masked_rows_give_no_nan_even_with_garbage_padding(mode):
    # row 0 fully masked, row 1 half masked; padding holds -inf / nan / huge values
    nan, inf = float("nan"), float("inf")
    lp = torch.tensor([[nan, -inf, 0.0], [-0.5, nan, -inf]], requires_grad=True)
    old = torch.tensor([[-inf, -inf, 50.0], [-0.4, -inf, nan]])
    adv = torch.tensor([[nan, 1.0, inf], [1.0, nan, 2.0]])
    mask = torch.tensor([[0.0, 0, 0], [1, 0, 0]])
    is_w = torch.tensor([[nan, inf, 1.0], [1.0, nan, inf]])
    loss, m = ppo_policy_loss(lp, old, adv, mask, agg_mode=mode, dual_clip=3.0, is_weights_BR=is_w)
    loss.backward()
    assert torch.isfinite(loss) and torch.isfinite(lp.grad).all() and all(math.isfinite(v) for v in m.values())
    assert (lp.grad[0] == 0).all() and (lp.grad[1, 1:] == 0).all()
    # everything masked: loss 0, gradient 0, ratio metrics neutral
    lp2 = torch.zeros(2, 3, requires_grad=True)
    loss, m = ppo_policy_loss(lp2, old, adv, torch.zeros(2, 3), agg_mode=mode)
    loss.backward()
    assert loss.item() == 0.0 and (lp2.grad == 0).all() and m["ratio_mean"] == 1.0
    v = torch.tensor([[nan, 1.0, 2.0]], requires_grad=True)
    vl, vm = value_loss(v, torch.full((1, 3), inf), torch.full((1, 3), nan), torch.zeros(1, 3), agg_mode=mode)
    vl.backward()
    assert vl.item() == 0.0 and torch.isfinite(v.grad).all() and all(math.isfinite(x) for x in vm.values())


# ---- truncated importance sampling ---------------------------------------------------------

def test_truncated_is_weights_hand_values():
    old = torch.tensor([[math.log(0.5), math.log(0.9), 0.0]])
    rollout = torch.tensor([[math.log(0.1), math.log(0.9), -float("inf")]])
    mask = torch.tensor([[1.0, 1, 0]])
    # token weights: 0.5/0.1 = 5 -> truncated at 2 ; 0.9/0.9 = 1 ; masked -> 0
    w, m = truncated_is_weights(old, rollout, mask, cap=2.0)
    assert torch.allclose(w, torch.tensor([[2.0, 1.0, 0.0]]))
    assert m["is_mean"] == pytest.approx(1.5) and m["is_capped_frac"] == 0.5
    assert m["logprob_abs_diff_mean"] == pytest.approx(math.log(5) / 2)  # (|log 5| + 0) / 2 tokens
    w, m = truncated_is_weights(old, rollout, mask, cap=2.0, mode="mask")  # above cap -> 0
    assert torch.allclose(w, torch.tensor([[0.0, 1.0, 0.0]])) and m["is_mean"] == pytest.approx(0.5)
    # sequence level: product 5 * 1 = 5 on every valid token; under cap 10 -> 5, over cap 2 -> 2 / 0
    w, _ = truncated_is_weights(old, rollout, mask, cap=10.0, level="sequence")
    assert torch.allclose(w, torch.tensor([[5.0, 5.0, 0.0]]))
    w, m = truncated_is_weights(old, rollout, mask, cap=2.0, level="sequence")
    assert torch.allclose(w, torch.tensor([[2.0, 2.0, 0.0]])) and m["is_capped_frac"] == 1.0
    w, _ = truncated_is_weights(old, rollout, mask, cap=2.0, level="sequence", mode="mask")
    assert (w == 0).all()


def test_truncated_is_weights_are_detached_and_validated():
    old = torch.zeros(1, 2, requires_grad=True)
    w, _ = truncated_is_weights(old, torch.full((1, 2), -100.0), torch.ones(1, 2), cap=3.0)
    assert not w.requires_grad and torch.allclose(w, torch.full((1, 2), 3.0))  # exp(100) truncated, no inf
    with pytest.raises(ValueError, match="unknown importance-sampling level 'batch'; valid: token, sequence"):
        truncated_is_weights(old, old, torch.ones(1, 2), level="batch")
    with pytest.raises(ValueError, match="unknown importance-sampling mode 'clip'; valid: truncate, mask"):
        truncated_is_weights(old, old, torch.ones(1, 2), mode="clip")


# ---- value loss ----------------------------------------------------------------------------

def test_value_loss_clipping():
    # V = 1.0, V_old = 0.0, R = 1.0, eps 0.2: unclipped error 0; clipped V = 0.2 -> error 0.64
    # -> 0.5 * max(0, 0.64) = 0.32, and the clipped branch has zero gradient
    v = torch.tensor([[1.0]], requires_grad=True)
    loss, m = value_loss(v, torch.tensor([[0.0]]), torch.tensor([[1.0]]), torch.ones(1, 1))
    loss.backward()
    assert loss.item() == pytest.approx(0.32) and m["vf_clipfrac"] == 1.0 and v.grad.item() == 0.0
    # V = 0.1 inside the clip range, R = 1: 0.5 * 0.81 = 0.405, gradient V - R = -0.9
    v = torch.tensor([[0.1]], requires_grad=True)
    loss, m = value_loss(v, torch.tensor([[0.0]]), torch.tensor([[1.0]]), torch.ones(1, 1))
    loss.backward()
    assert loss.item() == pytest.approx(0.405) and m["vf_clipfrac"] == 0.0 and v.grad.item() == pytest.approx(-0.9)
    assert m["value_mean"] == pytest.approx(0.1)
    # no clipping: 0.5 * (1 - 0)^2 = 0.5 for V = 1, R = 0
    loss, _ = value_loss(torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.tensor([[0.0]]), torch.ones(1, 1),
                         clip_eps=None)
    assert loss.item() == pytest.approx(0.5)
