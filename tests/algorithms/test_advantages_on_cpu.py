import math

import pytest
import torch

from rlhf.algorithms import ADVANTAGE_ESTIMATORS, get_advantage_estimator, masked_whiten, register_advantage


def _est(name, **kw):
    return get_advantage_estimator(name)(**kw)


def _random_grouped_batch(seed, G=3, n=4, R=6):
    g = torch.Generator().manual_seed(seed)
    scores = torch.randint(0, 3, (G * n,), generator=g).float()  # ties are common, as with 0/1 rewards
    lengths = torch.randint(0, R + 1, (G * n,), generator=g)  # includes empty responses
    mask = (torch.arange(R)[None, :] < lengths[:, None]).float()
    return scores, mask


# ---- hand-computed values ------------------------------------------------------------------

def test_grpo_hand_values():
    # group [1, 0]: mean 0.5, unbiased std sqrt(((0.5)^2 + (0.5)^2) / 1) = 0.70711 -> +-0.5/0.70711 = +-0.70711
    # group [1, 1]: all equal -> 0 (0 / (0 + eps))
    mask = torch.ones(4, 3)
    adv, ret = _est("grpo", response_mask_BR=mask, scores_B=torch.tensor([1.0, 0, 1, 1]), group_size=2, eps=1e-12)
    assert torch.allclose(adv[:, 0], torch.tensor([0.70711, -0.70711, 0, 0]), atol=1e-5)
    assert torch.equal(adv[:, :1].expand(4, 3), adv)  # broadcast over tokens
    assert torch.equal(ret, adv)  # no critic: the returns are the advantages


def test_grpo_group_of_four_uses_unbiased_std():
    # [1, 1, 1, 0]: mean 0.75, deviations (.25, .25, .25, -.75), sum of squares 0.75,
    # unbiased var 0.75/3 = 0.25 -> std 0.5 -> advantages (0.5, 0.5, 0.5, -1.5)
    adv, _ = _est("grpo", response_mask_BR=torch.ones(4, 1), scores_B=torch.tensor([1.0, 1, 1, 0]), group_size=4,
                  eps=0.0)
    assert adv[:, 0].tolist() == pytest.approx([0.5, 0.5, 0.5, -1.5])


def test_drgrpo_and_rloo_hand_values():
    s = torch.tensor([3.0, 1.0, 2.0])  # mean 2
    dr, _ = _est("drgrpo", response_mask_BR=torch.ones(3, 1), scores_B=s, group_size=3)
    assert dr[:, 0].tolist() == [1.0, -1.0, 0.0]
    # leave-one-out baselines: (1+2)/2 = 1.5, (3+2)/2 = 2.5, (3+1)/2 = 2 -> 1.5, -1.5, 0
    rl, _ = _est("rloo", response_mask_BR=torch.ones(3, 1), scores_B=s, group_size=3)
    assert rl[:, 0].tolist() == [1.5, -1.5, 0.0]


def test_reinforce_pp_hand_values():
    # scores 1, 0, 2, 5 on 2, 1, 3, 1 valid tokens: gamma 1 -> every token's return is its score.
    # token returns: 1,1, 0, 2,2,2, 5 -> mean 13/7, unbiased var = sum (x - 13/7)^2 / 6
    mask = torch.tensor([[1.0, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 0]])
    adv, ret = _est("reinforce_pp", response_mask_BR=mask, scores_B=torch.tensor([1.0, 0, 2, 5]), group_size=2)
    tokens = [1, 1, 0, 2, 2, 2, 5]
    mean = 13 / 7
    std = math.sqrt(sum((x - mean) ** 2 for x in tokens) / 6)
    assert ret.tolist() == [[1, 1, 0], [0, 0, 0], [2, 2, 2], [5, 0, 0]]
    assert adv[0, 0].item() == pytest.approx((1 - mean) / std, abs=1e-5)
    assert adv[3, 0].item() == pytest.approx((5 - mean) / std, abs=1e-5)
    assert (adv[mask == 0] == 0).all() and abs(adv[mask > 0].mean()) < 1e-6


def test_reinforce_pp_discount_and_group_baseline():
    # one sequence of 3 tokens, score 1 at the last token, gamma 0.5: returns 0.25, 0.5, 1
    _, ret = _est("reinforce_pp", response_mask_BR=torch.ones(1, 3), scores_B=torch.tensor([1.0]), gamma=0.5)
    assert ret.tolist() == [[0.25, 0.5, 1.0]]
    # group baseline: [1, 0] -> [0.5, -0.5] before whitening; [2, 2] -> [0, 0]
    mask = torch.ones(4, 1)
    _, ret = _est("reinforce_pp", response_mask_BR=mask, scores_B=torch.tensor([1.0, 0, 2, 2]), group_size=2,
                  group_baseline=True)
    assert ret[:, 0].tolist() == [0.5, -0.5, 0.0, 0.0]
    # per-token rewards (e.g. a KL penalty) add to the outcome: r = [-0.1, -0.1] + [0, 1] -> returns 0.8, 0.9
    _, ret = _est("reinforce_pp", response_mask_BR=torch.ones(1, 2), scores_B=torch.tensor([1.0]),
                  token_rewards_BR=torch.tensor([[-0.1, -0.1]]))
    assert ret[0].tolist() == pytest.approx([0.8, 0.9])


def test_gae_hand_value_with_discount():
    # one sequence, 2 tokens, r = [0, 1], V = [0.5, 0.2], gamma 0.9, lam 0.5, V after the end = 0:
    # delta_1 = 1 + 0.9*0 - 0.2 = 0.8 ; delta_0 = 0 + 0.9*0.2 - 0.5 = -0.32
    # A_1 = 0.8 ; A_0 = -0.32 + 0.9*0.5*0.8 = 0.04 ; returns = A + V = 0.54, 1.0
    adv, ret = _est("gae", response_mask_BR=torch.ones(1, 2), token_rewards_BR=torch.tensor([[0.0, 1]]),
                    values_BR=torch.tensor([[0.5, 0.2]]), gamma=0.9, lam=0.5)
    assert torch.allclose(adv, torch.tensor([[0.04, 0.8]]), atol=1e-6)
    assert torch.allclose(ret, torch.tensor([[0.54, 1.0]]), atol=1e-6)


# ---- invariants ----------------------------------------------------------------------------

def test_gae_lambda1_gamma1_equals_returns_minus_values():
    g = torch.Generator().manual_seed(1)
    rewards, values = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    mask = torch.tensor([[1.0] * 6, [1.0] * 4 + [0] * 2, [1.0] * 1 + [0] * 5])
    adv, ret = _est("gae", response_mask_BR=mask, token_rewards_BR=rewards, values_BR=values, gamma=1.0, lam=1.0)
    reward_to_go = torch.flip(torch.cumsum(torch.flip(rewards * mask, [1]), 1), [1])
    assert torch.allclose(adv, (reward_to_go - values) * mask, atol=1e-5)
    assert torch.allclose(ret, reward_to_go * mask, atol=1e-5)


def test_gae_skips_masked_tokens_inside_a_response():
    # a hole (e.g. tool output) in the middle: same advantages as the sequence without it
    g = torch.Generator().manual_seed(3)
    r, v = torch.randn(1, 5, generator=g), torch.randn(1, 5, generator=g)
    holey = torch.tensor([[1.0, 1, 0, 0, 1]])
    adv, ret = _est("gae", response_mask_BR=holey, token_rewards_BR=r, values_BR=v, gamma=0.9, lam=0.8)
    idx = torch.tensor([0, 1, 4])
    adv_c, ret_c = _est("gae", response_mask_BR=torch.ones(1, 3), token_rewards_BR=r[:, idx], values_BR=v[:, idx],
                        gamma=0.9, lam=0.8)
    assert torch.allclose(adv[:, idx], adv_c, atol=1e-6) and torch.allclose(ret[:, idx], ret_c, atol=1e-6)
    assert (adv[:, 2:4] == 0).all() and (ret[:, 2:4] == 0).all()


def test_gae_matches_a_loop_on_random_batches():
    for seed in range(3):
        g = torch.Generator().manual_seed(seed)
        _, mask = _random_grouped_batch(seed)
        r, v = torch.randn(*mask.shape, generator=g), torch.randn(*mask.shape, generator=g)
        gamma, lam = 0.95, 0.7
        adv, ret = _est("gae", response_mask_BR=mask, token_rewards_BR=r, values_BR=v, gamma=gamma, lam=lam)
        for i in range(mask.shape[0]):
            L = int(mask[i].sum())
            a_next = 0.0
            for t in reversed(range(L)):
                v_next = v[i, t + 1].item() if t + 1 < L else 0.0
                a_next = r[i, t].item() + gamma * v_next - v[i, t].item() + gamma * lam * a_next
                assert adv[i, t].item() == pytest.approx(a_next, abs=1e-5)
                assert ret[i, t].item() == pytest.approx(a_next + v[i, t].item(), abs=1e-5)
            assert (adv[i, L:] == 0).all()


def test_group_estimators_match_a_loop_on_random_batches():
    for seed in range(5):
        n = 4
        s, mask = _random_grouped_batch(seed, n=n)
        out = {name: _est(name, response_mask_BR=mask, scores_B=s, group_size=n, eps=1e-6)[0]
               for name in ("grpo", "drgrpo", "rloo")}
        for i in range(len(s)):
            grp = s[(i // n) * n:(i // n + 1) * n].tolist()
            mean = sum(grp) / n
            std = math.sqrt(sum((x - mean) ** 2 for x in grp) / (n - 1))
            others = (sum(grp) - s[i].item()) / (n - 1)
            expected = {"grpo": (s[i].item() - mean) / (std + 1e-6), "drgrpo": s[i].item() - mean,
                        "rloo": s[i].item() - others}
            for name, value in expected.items():
                assert torch.allclose(out[name][i], value * mask[i], atol=1e-5), (name, seed, i)


def test_reinforce_pp_matches_a_loop_on_random_batches():
    for seed in range(3):
        n = 4
        s, mask = _random_grouped_batch(seed, n=n)
        for baseline in (False, True):
            adv, _ = _est("reinforce_pp", response_mask_BR=mask, scores_B=s, group_size=n, group_baseline=baseline)
            per_seq = [s[i].item() - (s[(i // n) * n:(i // n + 1) * n].mean().item() if baseline else 0)
                       for i in range(len(s))]
            tokens = [per_seq[i] for i in range(len(s)) for _ in range(int(mask[i].sum()))]
            mean = sum(tokens) / len(tokens)
            std = math.sqrt(sum((x - mean) ** 2 for x in tokens) / (len(tokens) - 1))
            for i in range(len(s)):
                want = (per_seq[i] - mean) / math.sqrt(std ** 2 + 1e-8) * mask[i]
                assert torch.allclose(adv[i], want, atol=1e-4), (seed, baseline, i)


def test_identical_rewards_give_zero_advantage_and_masked_stays_zero():
    mask = torch.tensor([[1.0, 0], [1, 1]])
    for name in ("grpo", "drgrpo", "rloo"):
        adv, ret = _est(name, response_mask_BR=mask, scores_B=torch.tensor([0.3, 0.3]), group_size=2)
        assert torch.count_nonzero(adv) == 0 and torch.count_nonzero(ret) == 0


def test_outputs_are_finite_with_empty_rows_and_a_group_of_one():
    mask = torch.zeros(2, 3)
    for name in ("grpo", "drgrpo", "reinforce_pp"):
        adv, ret = _est(name, response_mask_BR=mask, scores_B=torch.tensor([1.0, 0.0]), group_size=1)
        assert torch.isfinite(adv).all() and torch.isfinite(ret).all() and torch.count_nonzero(adv) == 0


def test_masked_whiten():
    x = torch.tensor([[1.0, 2, 3], [4, 100, 100]])
    mask = torch.tensor([[1.0, 1, 1], [1, 0, 0]])
    w = masked_whiten(x, mask)  # over 1, 2, 3, 4: mean 2.5, unbiased var 5/3
    assert torch.allclose(w[0], (x[0] - 2.5) / math.sqrt(5 / 3), atol=1e-5) and (w[1, 1:] == 0).all()


# ---- errors --------------------------------------------------------------------------------

def test_registry_errors():
    with pytest.raises(ValueError, match="already registered"):
        register_advantage("grpo")(lambda **kw: None)
    with pytest.raises(ValueError, match="valid: drgrpo, gae, grpo, reinforce_pp, rloo"):
        get_advantage_estimator("ppo2")
    assert set(ADVANTAGE_ESTIMATORS) == {"grpo", "drgrpo", "rloo", "reinforce_pp", "gae"}


def test_missing_inputs_raise_clear_errors():
    mask = torch.ones(2, 2)
    with pytest.raises(ValueError, match="'grpo' needs scores_B"):
        _est("grpo", response_mask_BR=mask)
    with pytest.raises(ValueError, match="'gae' needs token_rewards_BR and values_BR; missing: values_BR"):
        _est("gae", response_mask_BR=mask, token_rewards_BR=mask)
    with pytest.raises(ValueError, match="rloo' needs group_size >= 2"):
        _est("rloo", response_mask_BR=mask, scores_B=torch.ones(2), group_size=1)
    with pytest.raises(ValueError, match="groups of 3"):
        _est("grpo", response_mask_BR=torch.ones(4, 2), scores_B=torch.ones(4), group_size=3)
    with pytest.raises(ValueError, match="one entry per row"):
        _est("drgrpo", response_mask_BR=mask, scores_B=torch.ones(4), group_size=2)
    with pytest.raises(ValueError, match="needs scores_B or token_rewards_BR"):
        _est("reinforce_pp", response_mask_BR=mask)
