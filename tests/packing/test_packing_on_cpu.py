"""Token-budget packing: the plan (every row once, budgets, equal micro-batch counts, balance)
and packed forwards that give every scorer what padded rows give."""

import pytest
import torch

from rlhf.algorithms import token_logprobs
from rlhf.batch import Completion, collate
from rlhf.config import RLConfig
from rlhf.data.sequences import model_inputs, pack_batch, pad_batch
from rlhf.models import load_causal_lm, load_value_model, tiny_model_path
from rlhf.scoring import (loss_token_logprobs, packed_response_logprobs, packed_token_values, position_ids_from_mask,
                          response_logprobs, sequence_logps, token_values)
from rlhf.packing import EMPTY, balance_ranks, gather_rows, pack_bins, plan_micro_batches, rl_micro_batches


def _rl_batch(seed: int = 0, rows: int = 10) -> dict:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(2, 12, (rows,), generator=g)
    prompts = [torch.randint(0, 256, (int(n),), generator=g).tolist() for n in lengths]
    comps = [Completion(torch.randint(0, 256, (int(n),), generator=g).tolist(), [0.0] * int(n), True)
             for n in torch.randint(0, 9, (rows,), generator=g)]  # an empty response among them
    comps[0] = Completion([], [], True)
    return collate(prompts, comps, pad_id=256)


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return tiny_model_path(RLConfig().model.tiny, str(tmp_path_factory.mktemp("m")), seed=0)


def test_plan_places_every_row_once_within_budget_with_equal_counts():
    lengths = [30, 5, 5, 5, 5, 5, 12, 40, 3, 3, 9]
    for world, budget in [(1, 16), (2, 16), (3, 20), (4, 64), (8, 1000)]:
        plan = plan_micro_batches(lengths, world, budget)
        assert len(plan) == world and len({len(rank) for rank in plan}) == 1
        placed = sorted(i for rank in plan for mb in rank for i in mb)
        assert placed == list(range(len(lengths)))
        for rank in plan:
            for mb in rank:
                assert len(mb) <= 1 or sum(lengths[i] for i in mb) <= budget
    # 8 ranks, 11 rows, a budget everything fits in: some ranks hold one row, none more than two
    assert max(len(mb) for rank in plan_micro_batches(lengths, 8, 1000) for mb in rank) <= 2
    # more ranks than rows: the extra ranks run empty micro-batches
    assert plan_micro_batches([4, 4], 3, 100)[2] == [EMPTY]


def test_ranks_get_balanced_tokens():
    lengths = [50, 40, 30, 20, 10, 10, 10, 10, 5, 5]
    ranks = balance_ranks(lengths, 2)
    totals = [sum(lengths[i] for i in r) for r in ranks]
    assert abs(totals[0] - totals[1]) <= 10
    assert pack_bins([0, 1, 2], lengths, 75) == [[0], [1, 2]]  # first fit, longest first
    assert pack_bins([0, 1], lengths, 10) == [[0], [1]]  # longer than the budget: alone


@pytest.mark.parametrize("path", ["logits", "fused"])  # the output layer's logits, or none (RLHF_LOGPROBS)
def test_packed_policy_logprobs_equal_padded(tiny, path, monkeypatch):
    monkeypatch.setenv("RLHF_LOGPROBS", path)
    model = load_causal_lm(tiny, torch.float32)
    batch = _rl_batch()
    B, R = batch["response_mask_BR"].shape
    padded = response_logprobs(model, batch["input_ids_BT"], batch["attention_mask_BT"], R, temperature=0.7)
    for world, budget in [(1, 10_000), (2, 24), (3, 1)]:
        shards, plan = rl_micro_batches(batch, world, budget, pad_id=256)
        scored = [[packed_response_logprobs(model, mb, "cpu", 0.7) for mb in rank] for rank in shards]
        packed = gather_rows(scored, plan, B, R)
        mask = batch["attention_mask_BT"][:, -R:] > 0
        assert torch.allclose(packed[mask], padded[mask], atol=1e-5)
        assert (packed[~mask] == 0).all()


@pytest.mark.parametrize("path", ["logits", "fused"])  # the output layer's logits, or none (RLHF_LOGPROBS)
def test_packed_logprob_gradients_equal_padded(tiny, path, monkeypatch):
    monkeypatch.setenv("RLHF_LOGPROBS", path)
    model = load_causal_lm(tiny, torch.float32)
    batch = _rl_batch(seed=1)
    B, R = batch["response_mask_BR"].shape
    weights = torch.randn(B, R) * batch["response_mask_BR"]
    model.zero_grad()
    (response_logprobs(model, batch["input_ids_BT"], batch["attention_mask_BT"], R) * weights).sum().backward()
    padded = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()
    shards, _ = rl_micro_batches(batch | {"weights_BR": weights}, 1, 30, pad_id=256)
    for mb in shards[0]:
        (packed_response_logprobs(model, mb, "cpu") * mb["weights_BR"]).sum().backward()
    for n, p in model.named_parameters():
        assert torch.allclose(p.grad, padded[n], atol=1e-5), n


def test_packed_critic_values_equal_padded(tiny):
    model = load_value_model(tiny, torch.float32)
    batch = _rl_batch(seed=2)
    B, R = batch["response_mask_BR"].shape
    attn = batch["attention_mask_BT"]
    padded = token_values(model, {"input_ids": batch["input_ids_BT"], "attention_mask": attn,
                                  "position_ids": position_ids_from_mask(attn)})[:, -R - 1:-1]
    shards, plan = rl_micro_batches(batch, 2, 20, pad_id=256)
    packed = gather_rows([[packed_token_values(model, mb, "cpu") for mb in rank] for rank in shards], plan, B, R)
    mask = attn[:, -R:] > 0
    assert torch.allclose(packed[mask], padded[mask], atol=1e-5)


def test_packed_sequence_logps_equal_padded(tiny):
    """SFT, DPO and KTO score examples this way (summed response log-probs per example)."""
    model = load_causal_lm(tiny, torch.float32)
    g = torch.Generator().manual_seed(3)
    examples = [(torch.randint(0, 256, (int(n),), generator=g).tolist(), int(n) // 2)
                for n in torch.randint(3, 20, (7,), generator=g)]
    padded = sequence_logps(model, pad_batch(examples, 256), "cpu")
    one_row = sequence_logps(model, pack_batch(examples, None, 256), "cpu")
    rows = sequence_logps(model, pack_batch(examples, 25, 256), "cpu")  # several rows, padded at their ends
    assert torch.allclose(one_row, padded, atol=1e-4) and torch.allclose(rows, padded, atol=1e-4)


def test_packed_reward_model_scores_equal_padded(tiny):
    from rlhf.actors.reward_model import sequence_rewards

    model = load_value_model(tiny, torch.float32)
    g = torch.Generator().manual_seed(4)
    lengths = torch.randint(2, 15, (6,), generator=g)
    examples = [(torch.randint(0, 256, (int(n),), generator=g).tolist(), 1) for n in lengths]
    padded = sequence_rewards(model, pad_batch(examples, 256), "cpu")
    packed = sequence_rewards(model, pack_batch(examples, None, 256), "cpu")
    assert torch.allclose(packed, padded, atol=1e-5)


@pytest.mark.parametrize("path", ["logits", "fused"])
def test_loss_token_logprobs_score_only_loss_positions(tiny, path, monkeypatch):
    """SFT's and the preference losses' log-probs: the output layer sees only the positions that
    predict a loss token (or, fused, never runs: the log-probs come from the hidden states), and
    the result equals the full-logits computation there (0 elsewhere)."""
    monkeypatch.setenv("RLHF_LOGPROBS", path)
    model = load_causal_lm(tiny, torch.float32)
    g = torch.Generator().manual_seed(4)
    examples = [(torch.randint(0, 256, (int(n),), generator=g).tolist(), int(n) // 2)
                for n in torch.randint(3, 20, (6,), generator=g)]
    seen = []
    hook = model.lm_head.register_forward_hook(lambda m, args, out: seen.append(args[0].shape[1]))
    for batch in (pad_batch(examples, 256), pack_batch(examples, None, 256)):
        inputs = model_inputs(batch, "cpu")
        full = token_logprobs(model(**inputs).logits[:, :-1], inputs["input_ids"][:, 1:])
        seen.clear()
        lp, mask = loss_token_logprobs(model, batch, "cpu")
        if path == "logits":
            assert seen == [int(mask.any(0).sum())] and seen[0] < mask.shape[1]  # loss positions only
        else:
            assert seen == []
        assert torch.allclose(lp[mask > 0], full[mask > 0], atol=1e-5)
        assert torch.all(lp[:, ~mask.bool().any(0)] == 0)
    hook.remove()
