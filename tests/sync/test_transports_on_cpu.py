"""After a trainer update and a sync, the generator scores sequences exactly as the trainer does."""

import pytest
import ray
import torch

from rlhf.actors.generator import SamplingSettings
from rlhf.algorithms.objective import PolicyLossSettings
from rlhf.batch import collate, update_shards
from rlhf.config import RLConfig
from rlhf.data.synthetic import task_rows
from rlhf.models import load_tokenizer, tiny_model_path
from rlhf.recipes.dapo import dapo_defaults
from rlhf.packing import gather_rows, rl_micro_batches
from rlhf.startup.roles import create_generators, create_trainers, optim_settings
from rlhf.sync import make_transport


def _train_once(trainers, generators, tok, world):
    """One RL update on a small batch; returns the batch and the trainers' new log-probs."""
    prompts = [tok.apply_chat_template([{"role": "user", "content": r["prompt"]}], tokenize=False,
                                       add_generation_prompt=True) for r in task_rows("addition", "eval")[:2]]
    prompt_ids = [tok(p, add_special_tokens=False)["input_ids"] for p in prompts]
    comps = ray.get(generators.actors[0].generate.remote(prompt_ids, SamplingSettings(n=4, max_new_tokens=8)))
    batch = collate([p for p in prompt_ids for _ in range(4)], comps, tok.pad_token_id)
    batch["advantages_BR"] = torch.randn(8, 1) * batch["response_mask_BR"]
    per_rank, counts = update_shards(batch, world, 1, 1, max_tokens=64, pad_id=tok.pad_token_id)
    trainers.scatter(lambda t, s: t.train_rl.remote(s, counts, PolicyLossSettings()), per_rank)
    shards, plan = rl_micro_batches(batch, world, 64, tok.pad_token_id)
    return batch, gather_rows(trainers.scatter(lambda t, s: t.score.remote(s), shards), plan,
                              *batch["response_mask_BR"].shape)


# object_store: the CPU default; broadcast: the split-GPU transport's code over gloo, with
# buckets small enough (50 KiB) that the 3.3 MB model travels in many of them, from a LoRA
# policy (merged on export) sharded by ZeRO-3.
@pytest.mark.parametrize("world,stage,transport,gens,lora", [(1, 0, "object_store", 1, 0),
                                                             (2, 3, "object_store", 1, 0),
                                                             (2, 3, "broadcast", 2, 8)])
def test_generator_matches_trainer_after_sync(ray_local, tmp_path, world, stage, transport, gens, lora):
    cfg: RLConfig = dapo_defaults()
    cfg.model.cache_dir = str(tmp_path)
    cfg.trainer.num_workers, cfg.trainer.zero_stage, cfg.trainer.lr = world, stage, 1e-2
    cfg.rollout.prompts_per_step, cfg.rollout.n = 2, 4
    cfg.generator.cpus_per_worker = cfg.trainer.cpus_per_worker = 0.5
    cfg.generator.num_workers, cfg.generator.weight_sync, cfg.generator.sync_bucket_mb = gens, transport, 0.05
    cfg.model.lora_rank = lora
    path = tiny_model_path(cfg.model.tiny, str(tmp_path), seed=0)
    tok = load_tokenizer(path)
    trainers = create_trainers(cfg, path, optim_settings(cfg, None, cfg.trainer.lr, 0), lora=True)
    generators = create_generators(cfg, cfg.generator, path)
    try:
        sync = make_transport(cfg.generator, trainers, generators)
        assert type(sync).__name__ == {"object_store": "ObjectStoreTransport", "broadcast": "BroadcastTransport"}[transport]
        for version in (1, 2):
            batch, trained = _train_once(trainers, generators, tok, world)
            mask = batch["response_mask_BR"]
            stale = ray.get(generators.actors[-1].logprobs.remote(batch))
            assert ((stale - trained).abs() * mask).max() > 1e-3  # the update changed the policy
            stats = sync.sync(trainers, generators, version=version)
            for g in generators.actors:
                synced = ray.get(g.logprobs.remote(batch))
                assert torch.allclose(synced * mask, trained * mask, atol=1e-5)
            assert stats.num_bytes == ray.get(trainers.actors[0].weights_nbytes.remote())
            if transport == "broadcast":
                assert len(sync.plan) > 10  # many buckets
                _assert_trainers_listen_on_loopback_only(trainers)  # the DeepSpeed and broadcast stores
                generators.restart(gens - 1)  # a new actor: the next sync forms a new group
    finally:
        trainers.kill()
        generators.kill()


def _assert_trainers_listen_on_loopback_only(trainers) -> None:
    """Ray is on loopback in tests: no trainer socket may listen on another address (the
    rendezvous stores bind to the registered address, never to all interfaces)."""
    import ipaddress
    import os

    import psutil

    pids = trainers.each(lambda t: t.__ray_call__.remote(lambda _: os.getpid()))
    listening = [c.laddr for pid in pids for c in psutil.Process(pid).net_connections("inet")
                 if c.status == psutil.CONN_LISTEN]
    assert listening  # the stores (and gloo) listen somewhere
    for addr in listening:
        ip = ipaddress.ip_address(addr.ip)
        ip = (ip.ipv4_mapped or ip) if isinstance(ip, ipaddress.IPv6Address) else ip
        assert ip.is_loopback, f"a trainer listens on {addr.ip}:{addr.port}"
