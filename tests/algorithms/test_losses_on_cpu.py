import math

import pytest
import torch

from rlhf.algorithms import (AGG_MODES, aggregate_loss, entropy_from_logits, get_policy_loss, ppo_policy_loss,
                             truncated_is_weights, value_loss)


def test_ratio_one_gives_minus_advantage():
    lp = torch.tensor([[-1.0, -2.0]])
    loss, m = ppo_policy_loss(lp, lp.clone(), torch.tensor([[0.5, 0.5]]), torch.ones(1, 2))
    assert math.isclose(loss.item(), -0.5, abs_tol=1e-7) and m["ratio_mean"] == 1.0


def _grad_at(ratio: float, adv: float, **kw):
    lp = torch.tensor([[math.log(ratio)]], requires_grad=True)
    loss, m = ppo_policy_loss(lp, torch.zeros(1, 1), torch.tensor([[adv]]), torch.ones(1, 1), **kw)
    loss.backward()
    return loss.item(), lp.grad.item(), m


def test_clip_higher_is_asymmetric():
    kw = dict(eps_low=0.2, eps_high=0.28)
    # A>0, ratio 1.25 is inside 1.28 -> still learning: loss -1.25, grad -ratio = -1.25
    loss, grad, _ = _grad_at(1.25, 1.0, **kw)
    assert math.isclose(loss, -1.25, rel_tol=1e-6) and math.isclose(grad, -1.25, rel_tol=1e-6)
    # A>0, ratio 1.3 > 1.28 -> clipped: loss -1.28, zero gradient
    loss, grad, m = _grad_at(1.3, 1.0, **kw)
    assert math.isclose(loss, -1.28, rel_tol=1e-6) and grad == 0 and m["clipfrac_high"] == 1.0
    # A>0, ratio 0.7 < 0.8 is NOT clipped for positive advantages
    _, grad, _ = _grad_at(0.7, 1.0, **kw)
    assert grad != 0
    # A<0, ratio 0.75 < 0.8 -> clipped: loss = max(0.75, 0.8) = 0.8, zero gradient
    loss, grad, m = _grad_at(0.75, -1.0, **kw)
    assert math.isclose(loss, 0.8, rel_tol=1e-6) and grad == 0 and m["clipfrac_low"] == 1.0
    # A<0, ratio 1.3 > 1.28 is NOT clipped for negative advantages: loss 1.3, gradient flows
    loss, grad, _ = _grad_at(1.3, -1.0, **kw)
    assert math.isclose(loss, 1.3, rel_tol=1e-6) and grad > 0


def test_dual_clip_bounds_negative_advantage_loss():
    # A = -1, ratio 5: PPO loss max(5, 1.28) = 5; dual clip c=3 bounds it at 3 with zero gradient
    loss, grad, m = _grad_at(5.0, -1.0, eps_low=0.2, eps_high=0.28, dual_clip=3.0)
    assert math.isclose(loss, 3.0, rel_tol=1e-6) and grad == 0 and m["dual_clip_frac"] == 1.0
    loss, _, _ = _grad_at(2.0, -1.0, dual_clip=3.0)  # under the bound: unchanged
    assert math.isclose(loss, 2.0, rel_tol=1e-6)


def test_token_mean_vs_seq_mean_on_unequal_lengths():
    # seq 1: 1 token of loss 4 ; seq 2: 3 tokens of loss 1
    loss = torch.tensor([[4.0, 0, 0], [1, 1, 1]])
    mask = torch.tensor([[1.0, 0, 0], [1, 1, 1]])
    assert aggregate_loss(loss, mask, "token-mean").item() == pytest.approx(7 / 4)  # (4+3)/4 tokens
    assert aggregate_loss(loss, mask, "seq-mean-token-mean").item() == pytest.approx(2.5)  # (4/1 + 3/3)/2
    assert aggregate_loss(loss, mask, "seq-mean-token-sum").item() == pytest.approx(3.5)  # (4 + 3)/2
    assert aggregate_loss(loss, mask, "seq-mean-token-sum-norm", norm_len=10).item() == pytest.approx(0.35)


@pytest.mark.parametrize("mode", AGG_MODES)
@pytest.mark.parametrize("parts", [2, 3])
def test_shards_with_global_counts_add_up(mode, parts):
    g = torch.Generator().manual_seed(2)
    loss = torch.randn(6, 5, generator=g)
    mask = (torch.rand(6, 5, generator=g) > 0.4).float()
    mask[0] = 0  # a fully masked row
    full = aggregate_loss(loss, mask, mode, norm_len=5)
    counts = dict(num_tokens=mask.sum(), num_seqs=(mask.sum(1) > 0).sum(), norm_len=5)
    step = 6 // parts
    shards = sum(aggregate_loss(loss[i:i + step], mask[i:i + step], mode, **counts) for i in range(0, 6, step))
    assert torch.allclose(full, shards, atol=1e-6)


def test_fully_masked_rows_give_no_nan():
    lp = torch.zeros(2, 3, requires_grad=True)
    mask = torch.zeros(2, 3)
    for mode in AGG_MODES:
        loss, m = ppo_policy_loss(lp, torch.zeros(2, 3), torch.ones(2, 3), mask, agg_mode=mode)
        loss.backward()
        assert torch.isfinite(loss) and torch.isfinite(lp.grad).all() and all(math.isfinite(v) for v in m.values())


def test_truncated_is_weights_hand_values():
    old = torch.tensor([[math.log(0.5), math.log(0.9)]])
    rollout = torch.tensor([[math.log(0.1), math.log(0.9)]])
    w, m = truncated_is_weights(old, rollout, torch.ones(1, 2), cap=2.0)
    # token weights: 0.5/0.1 = 5 -> capped at 2 ; 0.9/0.9 = 1
    assert torch.allclose(w, torch.tensor([[2.0, 1.0]])) and m["is_capped_frac"] == 0.5
    w, _ = truncated_is_weights(old, rollout, torch.ones(1, 2), cap=2.0, mode="mask")
    assert torch.allclose(w, torch.tensor([[0.0, 1.0]]))
    w, _ = truncated_is_weights(old, rollout, torch.ones(1, 2), cap=10.0, level="sequence")
    assert torch.allclose(w, torch.tensor([[5.0, 5.0]]))  # product 5 * 1
    assert m["logprob_abs_diff_mean"] == pytest.approx(math.log(5) / 2)


def test_is_weights_scale_the_loss():
    lp = torch.zeros(1, 2)
    loss, _ = ppo_policy_loss(lp, lp, torch.ones(1, 2), torch.ones(1, 2), is_weights_BR=torch.tensor([[2.0, 0.0]]))
    assert loss.item() == pytest.approx(-1.0)  # (-1*2 + -1*0) / 2 tokens


def test_value_loss_clipping():
    # V=1.0, V_old=0.0, R=1.0, eps 0.2: unclipped err 0, clipped V=0.2 -> err 0.64 -> 0.5*0.64
    loss, m = value_loss(torch.tensor([[1.0]]), torch.tensor([[0.0]]), torch.tensor([[1.0]]), torch.ones(1, 1))
    assert loss.item() == pytest.approx(0.32) and m["vf_clipfrac"] == 1.0


def test_entropy_from_logits():
    assert torch.allclose(entropy_from_logits(torch.zeros(1, 1, 4)), torch.tensor([[math.log(4)]]))
    assert entropy_from_logits(torch.tensor([[[100.0, 0, 0]]])).item() < 1e-6


def test_policy_loss_registry():
    assert get_policy_loss("ppo") is ppo_policy_loss
    with pytest.raises(ValueError, match="valid: ppo"):
        get_policy_loss("vanilla")
