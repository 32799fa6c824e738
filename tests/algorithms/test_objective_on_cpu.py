"""The RL objective of a policy update (`rl_objective`): policy loss, truncated importance
weights against the rollout engine and the KL-to-reference term, checked by hand."""

import math
import subprocess
import sys

import pytest
import torch

from rlhf.algorithms import PolicyLossSettings, ppo_policy_loss, rl_objective

LOG = math.log


def test_ppo_plus_k3_kl_term_by_hand():
    # old = 0, so ratio = exp(lp) = [0.5, 1, 1.5]; A = [1, -1, 1]; eps = 0.2 -> clip to [0.8, 1.2]
    #   t0: max(-1 * 0.5, -1 * 0.8)  = -0.5   (A > 0, ratio below the range: unclipped)
    #   t1: max( 1 * 1.0,  1 * 1.0)  =  1.0
    #   t2: max(-1 * 1.5, -1 * 1.2)  = -1.2   (A > 0, ratio above 1.2: clipped, no gradient)
    #   token-mean: (-0.5 + 1 - 1.2) / 3 = -0.7 / 3
    # KL to ref = 0: log r = ref - lp = [log 2, 0, -log 1.5], r = [2, 1, 2/3]
    #   k3 = r - 1 - log r = [1 - log 2, 0, log 1.5 - 1/3]; token-mean of the three
    #   loss = pg + 0.1 * kl
    lp = torch.tensor([[LOG(0.5), 0.0, LOG(1.5)]], dtype=torch.float64, requires_grad=True)
    old, ref = torch.zeros(1, 3, dtype=torch.float64), torch.zeros(1, 3, dtype=torch.float64)
    adv, mask = torch.tensor([[1.0, -1.0, 1.0]], dtype=torch.float64), torch.ones(1, 3)
    settings = PolicyLossSettings(kl_coef=0.1, kl_estimator="k3")
    loss, m = rl_objective(lp, old, adv, mask, settings, num_tokens=3.0, num_seqs=1.0, ref_logprobs_BR=ref)
    pg = -0.7 / 3
    kl = ((1 - LOG(2)) + 0.0 + (LOG(1.5) - 1 / 3)) / 3
    assert m["actor/pg_loss"] == pytest.approx(pg, rel=1e-9)
    assert m["actor/kl_loss"] == pytest.approx(kl, rel=1e-6)  # k3 is computed in float32
    assert loss.item() == pytest.approx(pg + 0.1 * kl, rel=1e-6)
    assert m["actor/clipfrac_high"] == pytest.approx(1 / 3) and m["actor/clipfrac_low"] == 0.0
    assert (m["actor/ratio_min"], m["actor/ratio_mean"], m["actor/ratio_max"]) == pytest.approx((0.5, 1.0, 1.5))
    # approx_kl: mean of ratio - 1 - log ratio over the three tokens
    assert m["actor/approx_kl"] == pytest.approx(((0.5 - 1 - LOG(0.5)) + 0 + (1.5 - 1 - LOG(1.5))) / 3)
    assert not any(k.startswith("offpolicy/") for k in m)
    # d/d lp, divided by 3 tokens: the surrogate's -A * ratio where unclipped (t0: -0.5, t1: 1, t2: 0,
    # clipped) plus 0.1 * d k3 / d lp = 0.1 * (1 - r) = 0.1 * [-1, 0, 1/3]
    loss.backward()
    expected = [(-0.5 - 0.1) / 3, 1.0 / 3, (0.1 / 3) / 3]
    assert lp.grad[0].tolist() == pytest.approx(expected, rel=1e-6)


def test_global_token_count_scales_the_micro_batch_value():
    # the same micro-batch as one half of a 6-token mini-batch: token-mean divides by 6, not 3
    lp = torch.tensor([[LOG(0.5), 0.0, LOG(1.5)]], dtype=torch.float64)
    args = (lp, torch.zeros_like(lp), torch.tensor([[1.0, -1.0, 1.0]], dtype=torch.float64), torch.ones(1, 3))
    alone, _ = rl_objective(*args, PolicyLossSettings(), num_tokens=3.0, num_seqs=1.0)
    half, _ = rl_objective(*args, PolicyLossSettings(), num_tokens=6.0, num_seqs=2.0)
    assert half.item() == pytest.approx(alone.item() / 2) == pytest.approx(-0.7 / 6)


def test_truncated_is_weights_and_sequence_mean_by_hand():
    # 2 sequences, the second has one valid token (its padding holds garbage that must not count).
    # ratio = exp(lp - old) = [[1, 2], [0.5, -]]; A = [[1, 1], [-1, -]]; eps = 0.2
    #   (0,0): max(-1, -1)       = -1
    #   (0,1): max(-2, -1.2)     = -1.2  (clipped above)
    #   (1,0): max(0.5, 0.8)     =  0.8  (clipped below)
    # IS weights w = exp(old - rollout) = [[4, 1], [0.5, -]], truncated at cap 2: [[2, 1], [0.5, 0]]
    #   weighted losses: [[-2, -1.2], [0.4, -]]
    # seq-mean-token-mean: ((-2 - 1.2) / 2 + 0.4 / 1) / 2 = (-1.6 + 0.4) / 2 = -0.6
    old = torch.zeros(2, 2, dtype=torch.float64)
    lp = torch.tensor([[0.0, LOG(2)], [LOG(0.5), 5.0]], dtype=torch.float64)
    rollout = torch.tensor([[-LOG(4), 0.0], [LOG(2), 9.0]], dtype=torch.float64)
    adv = torch.tensor([[1.0, 1.0], [-1.0, 3.0]], dtype=torch.float64)
    mask = torch.tensor([[1.0, 1.0], [1.0, 0.0]])
    settings = PolicyLossSettings(agg_mode="seq-mean-token-mean",
                                  rollout_is={"cap": 2.0, "level": "token", "mode": "truncate"})
    loss, m = rl_objective(lp, old, adv, mask, settings, num_tokens=3.0, num_seqs=2.0, rollout_logprobs_BR=rollout)
    assert loss.item() == pytest.approx(-0.6, rel=1e-6)
    assert m["actor/pg_loss"] == pytest.approx(-0.6, rel=1e-6)
    assert m["actor/clipfrac_high"] == pytest.approx(1 / 3) and m["actor/clipfrac_low"] == pytest.approx(1 / 3)
    assert m["offpolicy/is_mean"] == pytest.approx((2 + 1 + 0.5) / 3)
    assert m["offpolicy/is_capped_frac"] == pytest.approx(1 / 3)
    assert m["offpolicy/logprob_abs_diff_mean"] == pytest.approx((LOG(4) + 0 + LOG(2)) / 3)
    assert "actor/kl_loss" not in m


def test_without_kl_and_rollout_correction_it_is_the_policy_loss():
    g = torch.Generator().manual_seed(0)
    lp, old = -torch.rand(4, 6, generator=g) * 3, -torch.rand(4, 6, generator=g) * 3
    adv = torch.randn(4, 6, generator=g)
    mask = (torch.rand(4, 6, generator=g) > 0.3).float()
    settings = PolicyLossSettings(eps_low=0.2, eps_high=0.28, dual_clip=3.0, agg_mode="seq-mean-token-sum-norm",
                                  norm_len=6)
    loss, m = rl_objective(lp, old, adv, mask, settings, num_tokens=17.0, num_seqs=5.0)
    ref_loss, ref_m = ppo_policy_loss(lp, old, adv, mask, eps_low=0.2, eps_high=0.28, dual_clip=3.0,
                                      agg_mode="seq-mean-token-sum-norm", num_tokens=17.0, num_seqs=5.0, norm_len=6)
    assert torch.equal(loss, ref_loss)
    assert m == {f"actor/{k}": v for k, v in ref_m.items()} | {"actor/pg_loss": ref_loss.item()}


def test_missing_reference_or_rollout_logprobs_is_an_error():
    lp = torch.zeros(1, 2)
    args = (lp, lp, torch.ones(1, 2), torch.ones(1, 2))
    with pytest.raises(ValueError, match="ref_logprobs_BR"):
        rl_objective(*args, PolicyLossSettings(kl_coef=0.1), num_tokens=2.0, num_seqs=1.0)
    with pytest.raises(ValueError, match="rollout_logprobs_BR"):
        rl_objective(*args, PolicyLossSettings(rollout_is={"cap": 2.0}), num_tokens=2.0, num_seqs=1.0)


def test_the_algorithms_package_needs_no_ray_deepspeed_or_vllm():
    code = ("import sys\n"
            "for name in ('ray', 'deepspeed', 'vllm'): sys.modules[name] = None  # any import of them fails\n"
            "import rlhf.algorithms, rlhf.algorithms.objective\n")
    subprocess.run([sys.executable, "-c", code], check=True)
