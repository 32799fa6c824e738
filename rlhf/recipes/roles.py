"""Creating the Ray actors of each role from the config."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import ray

from rlhf.actors.generator import Generator
from rlhf.actors.group import ActorGroup
from rlhf.actors.reference import Reference
from rlhf.actors.reward import RewardWorker
from rlhf.actors.trainer import OptimSettings, PolicyTrainer


def create_trainers(cfg, model_path: str, optim: OptimSettings) -> ActorGroup:
    t = cfg.trainer
    group = ActorGroup(
        PolicyTrainer, t.num_workers, name="trainer", num_cpus=t.cpus_per_worker, num_gpus=t.gpus_per_worker,
        kwargs=lambda rank: dict(model_path=model_path, optim=optim, rank=rank, world_size=t.num_workers,
                                 dtype=cfg.model.dtype, seed=cfg.run.seed, threads=cfg.run.torch_threads),
    )
    addr, port = ray.get(group.actors[0].rendezvous.remote())
    group.each(lambda a: a.init_distributed.remote(addr, port))
    return group


def rl_optim(cfg) -> OptimSettings:
    t, r = cfg.trainer, cfg.rollout
    per_rank = r.prompts_per_step * r.n // (t.num_workers * t.mini_batches)
    micro = min(t.micro_batch_size, per_rank)
    return OptimSettings(lr=t.lr, weight_decay=t.weight_decay, grad_clip=t.grad_clip, zero_stage=t.zero_stage,
                         offload=t.offload, micro_batch_size=micro, grad_accum=per_rank // micro,
                         gradient_checkpointing=cfg.model.gradient_checkpointing, warmup_steps=t.warmup_steps)


def create_generators(cfg, model_path: str) -> ActorGroup:
    g = cfg.generator
    return ActorGroup(
        Generator, g.num_workers, name="generator", num_cpus=g.cpus_per_worker, num_gpus=g.gpus_per_worker,
        kwargs=lambda rank: dict(model_path=model_path, backend=g.backend, dtype=cfg.model.dtype,
                                 seed=cfg.run.seed, threads=cfg.run.torch_threads, rank=rank),
    )


def create_reference(cfg, model_path: str) -> ActorGroup:
    return ActorGroup(
        Reference, 1, name="reference", num_cpus=cfg.trainer.cpus_per_worker, num_gpus=cfg.trainer.gpus_per_worker,
        kwargs=lambda rank: dict(model_path=model_path, dtype=cfg.model.dtype, seed=cfg.run.seed,
                                 threads=cfg.run.torch_threads),
    )


def create_rewards(cfg) -> ActorGroup:
    r = cfg.reward
    return ActorGroup(
        RewardWorker, r.num_workers, name="reward", num_cpus=0.5,
        kwargs=lambda rank: dict(fns=list(r.fns), weights=r.weights, eval_fns=list(r.eval_fns), default=r.default,
                                 timeout_s=r.timeout_s, processes=r.processes_per_worker, working_dir=os.getcwd()),
    )


@dataclass
class Roles:
    trainers: ActorGroup
    generators: ActorGroup
    rewards: ActorGroup
    reference: Optional[ActorGroup] = None

    def groups(self) -> list[ActorGroup]:
        return [g for g in (self.trainers, self.generators, self.rewards, self.reference) if g is not None]

    def kill(self) -> None:
        for group in self.groups():
            group.kill()


def create_roles(cfg, model_path: str) -> Roles:
    return Roles(
        trainers=create_trainers(cfg, model_path, rl_optim(cfg)),
        generators=create_generators(cfg, model_path),
        rewards=create_rewards(cfg),
        reference=create_reference(cfg, model_path) if cfg.algorithm.kl_coef > 0 else None,
    )


def cpus_needed(cfg) -> float:
    kl = cfg.algorithm.kl_coef > 0
    return (cfg.trainer.num_workers * cfg.trainer.cpus_per_worker * (1 + kl)
            + cfg.generator.num_workers * cfg.generator.cpus_per_worker + 0.5 * cfg.reward.num_workers)
