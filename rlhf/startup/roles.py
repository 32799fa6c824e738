"""The actors of each role, created from the config sections they read."""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Optional

import ray

from rlhf.actors.deepspeed_rank import OptimSettings
from rlhf.actors.group import ActorGroup
from rlhf.batch import MicroBatching
from rlhf.models import lora_settings
from rlhf.quantization import quantization_settings
from rlhf.reward.loading import absolute_spec


def optim_settings(cfg, layout: Optional[MicroBatching], lr: float, warmup_steps: int,
                   decay_steps: int = 0) -> OptimSettings:
    """`layout`: rows per padded micro-batch (None: packed token-budget micro-batches only).
    `decay_steps` > 0: linear decay to 0 at that step (supervised schedules); 0: constant after warmup."""
    t = cfg.trainer
    layout = layout or MicroBatching(per_rank=1, micro=1, grad_accum=1)
    return OptimSettings(lr=lr, weight_decay=t.weight_decay, grad_clip=t.grad_clip, zero_stage=t.zero_stage,
                         offload=t.offload, micro_batch_size=layout.micro, grad_accum=layout.grad_accum,
                         max_tokens=cfg.micro_batch_tokens(), gradient_checkpointing=cfg.model.gradient_checkpointing,
                         warmup_steps=min(warmup_steps, decay_steps) if decay_steps else warmup_steps,
                         decay_steps=decay_steps)


def create_trainers(cfg, model_path: str, optim: OptimSettings, cls: Optional[type] = None, name: str = "trainer",
                    placement=None, lora: bool = False, whole_gpu: bool = False,
                    env: Optional[dict] = None) -> ActorGroup:
    """`trainer.num_workers` data-parallel DeepSpeed ranks of `cls` (default: the policy trainer),
    joined in one process group. `lora`: LoRA adapters when `model.lora_rank` > 0. `whole_gpu`: a
    rank outside the RL placement takes a whole GPU where the cluster has any. `env`: environment
    variables of the ranks' processes (e.g. `RLHF_LOGPROBS`)."""
    if cls is None:
        from rlhf.actors.policy_trainer import PolicyTrainer as cls
    t = cfg.trainer
    adapters = lora_settings(cfg.model) if lora else None
    quantized = quantization_settings(cfg.model) if adapters else None
    gpus = t.gpus_per_worker
    if placement is None and whole_gpu and ray.cluster_resources().get("GPU", 0) > 0:
        gpus = max(gpus, 1.0)
    group = ActorGroup(
        cls, t.num_workers, name=name, num_cpus=t.cpus_per_worker, num_gpus=gpus, placement=placement, env=env,
        kwargs=lambda rank: dict(model_path=model_path, optim=optim, rank=rank, world_size=t.num_workers,
                                 dtype=cfg.model.dtype, seed=cfg.run.seed, threads=cfg.run.torch_threads,
                                 lora=adapters, quantization=quantized),
    )
    addr, port = ray.get(group.actors[0].rendezvous.remote())
    group.each(lambda a: a.init_distributed.remote(addr, port))
    return group


def create_generators(cfg, g, model_path: str, placement=None, rollout=None) -> ActorGroup:
    """Generators as section `g` (a `GeneratorConfig`) describes them, running the episodes of
    section `rollout`'s environment (None: single-turn)."""
    from rlhf.actors.generator import Generator
    from rlhf.envs import EpisodeSettings

    env, episodes = "single_turn", None
    if rollout is not None:
        env = rollout.env
        episodes = EpisodeSettings(rollout.max_turns, rollout.episode_tokens(), rollout.tool_timeout_s,
                                   rollout.tool_memory_mb, rollout.turn_gather_s)

    return ActorGroup(
        Generator, g.num_workers, name="generator", num_cpus=g.cpus_per_worker, num_gpus=g.gpus_per_worker,
        placement=placement,
        kwargs=lambda rank: dict(model_path=model_path, backend=g.backend, dtype=cfg.model.dtype,
                                 seed=cfg.run.seed, threads=cfg.run.torch_threads, rank=rank,
                                 env=absolute_spec(env), episodes=episodes,
                                 vllm=dict(tensor_parallel_size=g.tensor_parallel_size,
                                           gpu_memory_utilization=g.gpu_memory_utilization,
                                           max_model_len=g.max_model_len, sleep_mode=g.sleep_while_training,
                                           enforce_eager=g.enforce_eager)
                                 if g.backend == "vllm" else None),
    )


def create_reference(cfg, model_path: str, placement=None) -> ActorGroup:
    from rlhf.actors.reference import Reference

    return ActorGroup(
        Reference, 1, name="reference", num_cpus=cfg.trainer.cpus_per_worker, num_gpus=cfg.trainer.gpus_per_worker,
        placement=placement,
        kwargs=lambda rank: dict(model_path=model_path, dtype=cfg.model.dtype, seed=cfg.run.seed,
                                 threads=cfg.run.torch_threads),
    )


def create_critic(cfg, policy_path: str, placement=None) -> ActorGroup:
    from rlhf.actors.critic import Critic

    c = cfg.critic
    optim = optim_settings(cfg, None, c.lr, c.warmup_steps)
    return create_trainers(cfg, c.init or policy_path, optim, cls=Critic, name="critic", placement=placement)


def create_reward_model(cfg, placement=None) -> ActorGroup:
    from rlhf.actors.reward_model import RewardModelScorer

    return ActorGroup(
        RewardModelScorer, 1, name="reward_model", num_cpus=cfg.trainer.cpus_per_worker,
        num_gpus=cfg.trainer.gpus_per_worker, placement=placement,
        kwargs=lambda rank: dict(model_path=cfg.reward.model, dtype=cfg.model.dtype, seed=cfg.run.seed,
                                 threads=cfg.run.torch_threads),
    )


def create_rewards(r) -> ActorGroup:
    """Reward actors as section `r` (a `RewardConfig`) describes them."""
    from rlhf.actors.reward import RewardWorker

    return ActorGroup(
        RewardWorker, r.num_workers, name="reward", num_cpus=0.5,
        kwargs=lambda rank: dict(fns=list(r.fns), weights=r.weights, eval_fns=list(r.eval_fns), default=r.default,
                                 timeout_s=r.timeout_s, processes=r.processes_per_worker, working_dir=os.getcwd()),
    )


@dataclass
class Roles:
    """The actor groups of an RL run (the optional ones None when the run does not need them)."""

    trainers: ActorGroup
    generators: ActorGroup
    rewards: ActorGroup
    reference: Optional[ActorGroup] = None
    critic: Optional[ActorGroup] = None
    reward_model: Optional[ActorGroup] = None
    placement_group: Optional[object] = None

    def groups(self) -> list[ActorGroup]:
        return [g for g in (self.trainers, self.generators, self.rewards, self.reference, self.critic,
                            self.reward_model) if g is not None]

    def kill(self) -> None:
        for group in self.groups():
            group.kill()
        if self.placement_group is not None:
            ray.util.remove_placement_group(self.placement_group)


def reserve_placement(cfg) -> tuple[Optional[object], dict]:
    """`placement.mode` colocate/split: the reserved placement group and, per role, one
    (group, slot) per actor; mode none: (None, {})."""
    from rlhf.placement import plan_from_config, reserve

    if cfg.placement.mode == "none":
        return None, {}
    plan = plan_from_config(cfg, gpus=ray.cluster_resources().get("GPU", 0) > 0)
    pg = reserve(plan, cfg.placement.strategy)
    return pg, {role: [(pg, slot) for slot in slots] for role, slots in plan.slots.items()}


def create_roles(cfg, model_path: str) -> Roles:
    """Every actor of an RL run, the optional roles as `cfg.roles()` decides."""
    need = cfg.roles()
    pg, slots = reserve_placement(cfg)
    optim = optim_settings(cfg, None, cfg.trainer.lr, cfg.trainer.warmup_steps)
    return Roles(
        trainers=create_trainers(cfg, model_path, optim, placement=slots.get("trainer"), lora=True),
        generators=create_generators(cfg, cfg.generator, model_path, placement=slots.get("generator"),
                                     rollout=cfg.rollout),
        rewards=create_rewards(cfg.reward),
        reference=create_reference(cfg, model_path, slots.get("reference")) if need.reference else None,
        critic=create_critic(cfg, model_path, slots.get("critic")) if need.critic else None,
        reward_model=create_reward_model(cfg, slots.get("reward_model")) if need.reward_model else None,
        placement_group=pg,
    )


def rl_cpus(cfg) -> float:
    """Ray CPUs the actors of an RL run ask for."""
    need = cfg.roles()
    per_trainer = 1 + need.reference + need.critic + need.reward_model
    return (cfg.trainer.num_workers * cfg.trainer.cpus_per_worker * per_trainer
            + cfg.generator.num_workers * cfg.generator.cpus_per_worker + 0.5 * cfg.reward.num_workers)
