import pytest
import torch

from rlhf.algorithms import get_advantage_estimator, register_advantage

M = torch.ones(4, 3)


def test_grpo_hand_values():
    # group [1, 0]: mean 0.5, unbiased std = sqrt(0.5) = 0.70711 -> +-0.5/0.70711 = +-0.70711
    # group [1, 1]: all equal -> 0
    adv, _ = get_advantage_estimator("grpo")(response_mask_BR=M, scores_B=torch.tensor([1.0, 0, 1, 1]),
                                            group_size=2, eps=0.0 + 1e-12)
    assert torch.allclose(adv[:, 0], torch.tensor([0.70711, -0.70711, 0, 0]), atol=1e-5)
    assert torch.equal(adv[:, 0:1].expand(4, 3), adv)  # broadcast over tokens


def test_drgrpo_and_rloo_hand_values():
    s = torch.tensor([3.0, 1.0, 2.0])  # mean 2
    dr, _ = get_advantage_estimator("drgrpo")(response_mask_BR=torch.ones(3, 1), scores_B=s, group_size=3)
    assert dr[:, 0].tolist() == [1.0, -1.0, 0.0]
    # leave-one-out baselines: (1+2)/2=1.5, (3+2)/2=2.5, (3+1)/2=2 -> 1.5, -1.5, 0
    rl, _ = get_advantage_estimator("rloo")(response_mask_BR=torch.ones(3, 1), scores_B=s, group_size=3)
    assert rl[:, 0].tolist() == [1.5, -1.5, 0.0]


def test_group_estimators_match_a_loop_on_random_batches():
    g = torch.Generator().manual_seed(0)
    for _ in range(5):
        n, G = 4, 3
        s = torch.randint(0, 2, (n * G,), generator=g).float()
        mask = (torch.rand(n * G, 5, generator=g) > 0.3).float()
        grpo, _ = get_advantage_estimator("grpo")(response_mask_BR=mask, scores_B=s, group_size=n, eps=1e-6)
        rloo, _ = get_advantage_estimator("rloo")(response_mask_BR=mask, scores_B=s, group_size=n)
        for i in range(n * G):
            grp = s[(i // n) * n:(i // n + 1) * n].tolist()
            mean = sum(grp) / n
            std = (sum((x - mean) ** 2 for x in grp) / (n - 1)) ** 0.5
            assert torch.allclose(grpo[i], (s[i] - mean) / (std + 1e-6) * mask[i], atol=1e-5)
            others = (sum(grp) - s[i].item()) / (n - 1)
            assert torch.allclose(rloo[i], (s[i] - others) * mask[i], atol=1e-6)


def test_reinforce_pp_whitens_over_tokens():
    mask = torch.tensor([[1.0, 1, 0], [1, 0, 0], [1, 1, 1], [1, 0, 0]])
    adv, ret = get_advantage_estimator("reinforce_pp")(response_mask_BR=mask, scores_B=torch.tensor([1.0, 0, 2, 5]),
                                                       group_size=2)
    valid = adv[mask > 0]
    assert abs(valid.mean()) < 1e-6 and abs(valid.std() - 1) < 1e-4 and (adv[mask == 0] == 0).all()
    base, _ = get_advantage_estimator("reinforce_pp")(response_mask_BR=mask, scores_B=torch.tensor([1.0, 0, 2, 5]),
                                                      group_size=2, group_baseline=True)
    assert not torch.allclose(base, adv)


def test_gae_lambda1_gamma1_equals_returns_minus_values():
    g = torch.Generator().manual_seed(1)
    rewards, values = torch.randn(3, 6, generator=g), torch.randn(3, 6, generator=g)
    mask = torch.tensor([[1.0] * 6, [1.0] * 4 + [0] * 2, [1.0] * 1 + [0] * 5])
    adv, ret = get_advantage_estimator("gae")(response_mask_BR=mask, token_rewards_BR=rewards, values_BR=values)
    returns = torch.flip(torch.cumsum(torch.flip(rewards * mask, [1]), 1), [1])  # reward-to-go
    assert torch.allclose(adv, (returns - values) * mask, atol=1e-5)
    assert torch.allclose(ret, returns * mask, atol=1e-5)


def test_gae_hand_value_with_discount():
    # one sequence, 2 tokens, r = [0, 1], V = [0.5, 0.2], gamma 0.9, lam 0.5:
    # delta_1 = 1 - 0.2 = 0.8 ; delta_0 = 0 + 0.9*0.2 - 0.5 = -0.32
    # A_1 = 0.8 ; A_0 = -0.32 + 0.9*0.5*0.8 = 0.04
    adv, _ = get_advantage_estimator("gae")(response_mask_BR=torch.ones(1, 2), token_rewards_BR=torch.tensor([[0.0, 1]]),
                                            values_BR=torch.tensor([[0.5, 0.2]]), gamma=0.9, lam=0.5)
    assert torch.allclose(adv, torch.tensor([[0.04, 0.8]]), atol=1e-6)


def test_identical_rewards_give_zero_advantage_and_masked_stays_zero():
    mask = torch.tensor([[1.0, 0], [1, 1]])
    for name in ("grpo", "drgrpo", "rloo"):
        adv, _ = get_advantage_estimator(name)(response_mask_BR=mask, scores_B=torch.tensor([0.3, 0.3]), group_size=2)
        assert torch.count_nonzero(adv) == 0


def test_registry_errors():
    with pytest.raises(ValueError, match="already registered"):
        register_advantage("grpo")(lambda **kw: None)
    with pytest.raises(ValueError, match="valid: .*drgrpo.*grpo"):
        get_advantage_estimator("ppo2")
    with pytest.raises(ValueError, match="needs scores_B"):
        get_advantage_estimator("grpo")(response_mask_BR=M)
