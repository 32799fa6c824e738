"""What every DeepSpeed rank guarantees: a step with a non-finite loss on any rank is skipped on
all of them (weights and optimizer untouched), and its rendezvous stores listen on the node's
registered address only."""

import ipaddress
import os

import psutil
import pytest
import torch

from rlhf.actors.deepspeed_rank import OptimSettings
from rlhf.algorithms.objective import PolicyLossSettings
from rlhf.batch import Completion, collate, split_rows
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
    counts = [{"num_tokens": float(batch["response_mask_BR"].sum()), "num_seqs": 4.0}]
    results = group.scatter(lambda t, s: t.train_rl.remote([s], counts, PolicyLossSettings()), split_rows(batch, world))
    return results[0]


@pytest.mark.parametrize("world,stage", [(1, 0), (2, 0), (2, 2)])
def test_a_non_finite_loss_on_one_rank_skips_the_step_everywhere(tmp_path, world, stage):
    cfg = RLConfig()
    cfg.trainer.num_workers, cfg.trainer.cpus_per_worker = world, 0.5
    path = tiny_model_path(cfg.model.tiny, str(tmp_path), seed=0)
    group = create_trainers(cfg, path, OptimSettings(lr=1e-2, zero_stage=stage, micro_batch_size=4 // world))
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


def test_rendezvous_stores_listen_on_the_registered_address_only(tmp_path):
    """Ray is on loopback in tests: no trainer socket may listen on another address."""
    from rlhf.startup.roles import create_generators
    from rlhf.sync import make_transport

    cfg = RLConfig()
    cfg.trainer.num_workers, cfg.trainer.cpus_per_worker = 2, 0.5
    cfg.generator.weight_sync, cfg.generator.cpus_per_worker = "broadcast", 0.5
    path = tiny_model_path(cfg.model.tiny, str(tmp_path), seed=0)
    trainers = create_trainers(cfg, path, OptimSettings(lr=1e-3, micro_batch_size=2))
    generators = create_generators(cfg, cfg.generator, path)
    try:
        make_transport(cfg.generator, trainers, generators).sync(trainers, generators, version=1)  # its group too
        pids = trainers.each(lambda t: t.__ray_call__.remote(lambda _: os.getpid()))
        listening = [c.laddr for pid in pids for c in psutil.Process(pid).net_connections("inet")
                     if c.status == psutil.CONN_LISTEN]
        assert listening  # the stores (and gloo) listen somewhere
        for addr in listening:
            ip = ipaddress.ip_address(addr.ip)
            ip = ip.ipv4_mapped or ip if isinstance(ip, ipaddress.IPv6Address) else ip
            assert ip.is_loopback, f"a trainer listens on {addr.ip}:{addr.port}"
    finally:
        trainers.kill()
        generators.kill()
