"""What every DeepSpeed rank guarantees: a step with a non-finite loss on any rank is skipped on
all of them (weights and optimizer untouched). That its rendezvous stores listen on the node's
registered address only is checked with the broadcast transport (tests/sync)."""

import pytest
import torch

from rlhf.actors.deepspeed_rank import OptimSettings
from rlhf.algorithms.objective import PolicyLossSettings
from rlhf.batch import Completion, collate, select_rows, update_shards
from rlhf.config import RLConfig
from rlhf.models import tiny_model_path
from rlhf.startup.roles import create_trainers

pytestmark = pytest.mark.usefixtures("ray_local")


def _batch(nan_rows: slice = slice(0, 0)) -> dict:
    g = torch.Generator().manual_seed(0)
    prompts = [torch.randint(0, 256, (5,), generator=g).tolist() for _ in range(4)]
    comps = [Completion(torch.randint(0, 256, (4,), generator=g).tolist(), [0.0] * 4, True) for _ in range(4)]
    batch = collate(prompts, comps, pad_id=256)
    batch["advantages_BR"] = torch.randn(4, 1, generator=g) * batch["response_mask_BR"]
    batch["advantages_BR"][nan_rows] = float("nan")
    return batch


def _step(group, batch, world) -> dict:
    per_rank, counts = update_shards(batch, world, 1, 1, max_tokens=10_000, pad_id=256)
    results = group.scatter(lambda t, s: t.train_rl.remote(s, counts, PolicyLossSettings()), per_rank)
    return results[0]


@pytest.mark.parametrize("world,stage", [(2, 0), (2, 2)])
def test_a_non_finite_loss_on_one_rank_skips_the_step_everywhere(tmp_path, world, stage):
    cfg = RLConfig()
    cfg.trainer.num_workers, cfg.trainer.cpus_per_worker = world, 0.5
    path = tiny_model_path(cfg.model.tiny, str(tmp_path), seed=0)
    group = create_trainers(cfg, path, OptimSettings(lr=1e-2, zero_stage=stage))
    try:
        before = group.each(lambda t: t.named_weights.remote())[0]
        metrics = _step(group, _batch(nan_rows=slice(3, 4)), world)  # the last row: the last rank's shard
        after = group.each(lambda t: t.named_weights.remote())[0]
        assert metrics["actor/skipped_steps"] == 1.0
        assert all(torch.equal(before[k], after[k]) for k in before)  # no update, not even a partial one
        assert all(bool(torch.isfinite(v).all()) for v in after.values())
        good = _step(group, _batch(), world)  # the optimizer state was not poisoned: the next step trains
        trained = group.each(lambda t: t.named_weights.remote())[0]
        assert good["actor/skipped_steps"] == 0.0
        assert any(not torch.equal(before[k], trained[k]) for k in before)
        assert all(bool(torch.isfinite(v).all()) for v in trained.values())
    finally:
        group.kill()


def test_a_rank_without_rows_runs_an_empty_micro_batch(tmp_path):
    """Three ZeRO-3 ranks, two rows: the third rank's empty micro-batch joins every collective
    (no hang), adds nothing to the gradient, and every rank ends with the same weights."""
    cfg = RLConfig()
    cfg.trainer.num_workers, cfg.trainer.cpus_per_worker = 3, 0.5
    path = tiny_model_path(cfg.model.tiny, str(tmp_path), seed=0)
    group = create_trainers(cfg, path, OptimSettings(lr=1e-2, zero_stage=3))
    try:
        batch = select_rows(_batch(), [0, 1])
        per_rank, counts = update_shards(batch, 3, 1, 1, max_tokens=10_000, pad_id=256)
        assert [len(mbs) for mbs in per_rank[2]] == [1] and per_rank[2][0][0]["response_mask_BR"].sum() == 0
        results = group.scatter(lambda t, s: t.train_rl.remote(s, counts, PolicyLossSettings()), per_rank)
        assert results[0]["actor/skipped_steps"] == 0.0 and results[0]["actor/grad_norm"] > 0
        assert "actor/pg_loss" not in results[2]  # the empty micro-batch reports no loss of its own
        assert results[0]["actor/pg_loss"] + results[1]["actor/pg_loss"] != 0.0
    finally:
        group.kill()


def test_zero_offload_steps_with_the_torch_optimizer(tmp_path):
    """trainer.offload=true: ZeRO-2 keeps the optimizer state on the CPU and the client AdamW
    steps it (DeepSpeed refuses that pairing unless told; the step must train)."""
    cfg = RLConfig()
    cfg.trainer.cpus_per_worker = 0.5
    path = tiny_model_path(cfg.model.tiny, str(tmp_path), seed=0)
    group = create_trainers(cfg, path, OptimSettings(lr=1e-2, zero_stage=2, offload=True))
    try:
        before = group.each(lambda t: t.named_weights.remote())[0]
        metrics = _step(group, _batch(), 1)
        after = group.each(lambda t: t.named_weights.remote())[0]
        assert metrics["actor/skipped_steps"] == 0.0
        assert any(not torch.equal(before[k], after[k]) for k in before)
    finally:
        group.kill()
