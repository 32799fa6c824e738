"""The DeepSpeed trainer's update does not depend on how the batch is split over ranks."""

import pytest
import torch
from safetensors.torch import load_file

from rlhf.actors.deepspeed_rank import OptimSettings
from rlhf.algorithms.objective import PolicyLossSettings
from rlhf.batch import Completion, collate, split_rows
from rlhf.config import RLConfig
from rlhf.models import tiny_model_path
from rlhf.metrics import combine_shards
from rlhf.startup.roles import create_trainers


def _batch(seed: int = 0) -> dict:
    g = torch.Generator().manual_seed(seed)
    prompts = [torch.randint(0, 256, (int(n),), generator=g).tolist() for n in torch.randint(3, 8, (8,), generator=g)]
    comps = []
    for n in torch.randint(1, 6, (8,), generator=g):  # unequal lengths: the aggregation mode matters
        comps.append(Completion(torch.randint(0, 256, (int(n),), generator=g).tolist(), [0.0] * int(n), True))
    batch = collate(prompts, comps, pad_id=256)
    batch["advantages_BR"] = torch.randn(8, 1, generator=g) * batch["response_mask_BR"]
    batch["old_logprobs_BR"] = -3.0 + 0.1 * torch.randn(batch["response_mask_BR"].shape, generator=g)
    return batch


def _train_once(cfg, path, world, stage, micro, batch, agg) -> dict:
    cfg.trainer.num_workers, cfg.trainer.cpus_per_worker = world, 0.5
    optim = OptimSettings(lr=1e-2, zero_stage=stage, micro_batch_size=micro, grad_accum=8 // world // micro,
                          grad_clip=1e9)
    group = create_trainers(cfg, path, optim)
    try:
        mask = batch["response_mask_BR"]
        counts = [{"num_tokens": float(mask.sum()), "num_seqs": 8.0}]
        loss = PolicyLossSettings(agg_mode=agg, eps_low=0.2, eps_high=0.28)
        metrics = combine_shards(
            group.scatter(lambda t, s: t.train_rl.remote([s], counts, loss), split_rows(batch, world)))
        return metrics, group.each(lambda t: t.named_weights.remote())[0]
    finally:
        group.kill()


@pytest.mark.parametrize("agg", ["token-mean", "seq-mean-token-mean"])
def test_two_ranks_and_micro_batches_equal_one_rank(ray_local, tmp_path, agg):
    cfg = RLConfig()
    path = tiny_model_path(cfg.model.tiny, str(tmp_path), seed=0)
    batch = _batch()
    m1, one = _train_once(cfg, path, world=1, stage=0, micro=8, batch=batch, agg=agg)
    m2, two = _train_once(cfg, path, world=2, stage=2, micro=2, batch=batch, agg=agg)
    # Adam hides a wrong gradient scale, so compare the loss and the global gradient norm:
    # a missing or doubled normalisation over ranks or micro-batches changes them.
    assert m1["actor/pg_loss"] == pytest.approx(m2["actor/pg_loss"], rel=1e-5)
    assert m1["actor/grad_norm"] == pytest.approx(m2["actor/grad_norm"], rel=1e-4)
    init = load_file(f"{path}/model.safetensors")
    assert max(float((one[k] - init[k]).abs().max()) for k in one) > 1e-3  # the step did train
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 1e-4
