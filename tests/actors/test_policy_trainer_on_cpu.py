"""The DeepSpeed trainer's update does not depend on how the batch is split over ranks."""

import pytest
import torch
from safetensors.torch import load_file

from rlhf.actors.deepspeed_rank import OptimSettings
from rlhf.algorithms.objective import PolicyLossSettings
from rlhf.batch import Completion, collate, update_shards
from rlhf.config import RLConfig
from rlhf.models import tiny_model_path
from rlhf.scoring import fused_output_head
from rlhf.packing import balance_ranks, pack_bins, rl_row_lengths
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


def _train_once(cfg, path, world, stage, max_tokens, batch, agg, logprobs="logits") -> dict:
    cfg.trainer.num_workers, cfg.trainer.cpus_per_worker = world, 0.5
    group = create_trainers(cfg, path, OptimSettings(lr=1e-2, zero_stage=stage, grad_clip=1e9),
                            env={"RLHF_LOGPROBS": logprobs})
    try:
        # the path the ranks take: fused only where the output weight is whole on every rank (not ZeRO-3)
        fused = group.each(lambda t: t.__ray_call__.remote(lambda self: fused_output_head(self.engine) is not None))
        assert fused == [logprobs == "fused" and stage < 3] * world
        per_rank, counts = update_shards(batch, world, 1, 1, max_tokens, pad_id=256)
        loss = PolicyLossSettings(agg_mode=agg, eps_low=0.2, eps_high=0.28)
        addresses = group.each(lambda t: t.__ray_call__.remote(lambda self: self._weight_export().addresses()))
        metrics = combine_shards(group.scatter(lambda t, s: t.train_rl.remote(s, counts, loss), per_rank))
        if world > 1:
            _assert_ranks_share_parameters_alike(group, stage)
        if world > 1 and stage < 3:  # the update wrote the parameters in place: what an IPC engine maps
            assert group.each(lambda t: t.__ray_call__.remote(lambda self: self._weight_export().addresses())) == addresses
        return metrics, group.each(lambda t: t.named_weights.remote())[0]
    finally:
        group.kill()


def _assert_ranks_share_parameters_alike(group, stage: int) -> None:
    """What the colocated IPC sync's `direct` mode relies on: after an update every ZeRO-2 rank
    holds its parameters in a few flat storages, laid out alike on every rank, from which each
    weight is rebuilt exactly; under ZeRO-3 (shards) there is nothing to share as it is."""
    def parameter_layout(trainer):  # nested: pickled by value into the actors
        from rlhf.sync import ipc

        tensors = trainer._weight_export().plain_tensors()
        if tensors is None:
            return None
        storages, views = ipc.layout(tensors)
        rebuilt = all(torch.equal(storages[v.storage].as_strided(v.shape, v.stride, v.offset), tensors[v.name])
                      for v in views)
        return len(storages), views, rebuilt

    layouts = group.each(lambda t: t.__ray_call__.remote(parameter_layout))
    if stage == 3:
        assert layouts == [None] * len(layouts)
        return
    (storages, views, rebuilt), *others = layouts
    assert rebuilt and storages < len(views) and all(o == layouts[0] for o in others)


@pytest.mark.parametrize("agg,stage,budget", [("token-mean", 2, 18), ("seq-mean-token-mean", 3, 13)])
def test_two_ranks_and_packed_micro_batches_equal_one_rank(ray_local, tmp_path, agg, stage, budget):
    """One rank, one micro-batch vs two ranks whose rows pack into unequal numbers of
    token-budget micro-batches (evened out by the plan): same loss, gradient norm, weights.
    The one rank scores through the output layer's logits; the two ask for the fused log-probs
    (`RLHF_LOGPROBS=fused`), which ZeRO-2 takes and ZeRO-3 (a partitioned output weight) declines."""
    cfg = RLConfig()
    path = tiny_model_path(cfg.model.tiny, str(tmp_path), seed=0)
    batch = _batch()
    lengths = rl_row_lengths(batch)
    raw = [len(pack_bins(rows, lengths, budget)) for rows in balance_ranks(lengths, 2)]
    assert raw[0] != raw[1]  # the case under test: the ranks' shards pack differently
    m1, one = _train_once(cfg, path, world=1, stage=0, max_tokens=10_000, batch=batch, agg=agg)
    m2, two = _train_once(cfg, path, world=2, stage=stage, max_tokens=budget, batch=batch, agg=agg,
                          logprobs="fused")
    # Adam hides a wrong gradient scale, so compare the loss and the global gradient norm:
    # a missing or doubled normalisation over ranks or micro-batches changes them.
    assert m1["actor/pg_loss"] == pytest.approx(m2["actor/pg_loss"], rel=1e-5)
    assert m1["actor/grad_norm"] == pytest.approx(m2["actor/grad_norm"], rel=1e-4)
    init = load_file(f"{path}/model.safetensors")
    assert max(float((one[k] - init[k]).abs().max()) for k in one) > 1e-3  # the step did train
    # Adam's first step is ~lr * sign(grad): float noise on near-zero gradients moves a weight by a
    # fraction of lr; a real layout error would move the loss or the gradient norm above
    assert max(float((one[k] - two[k]).abs().max()) for k in one) < 5e-4
