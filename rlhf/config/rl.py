"""The config tree of the critic-free RL recipes (GRPO, DAPO): `RLConfig`; PPO's tree extends it
in `rlhf.config.ppo`. `RLConfig.roles()` is the one place that decides which actors a run needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from rlhf.config.base import (BaseConfig, ConfigError, DataConfig, RunConfig, TrainerConfig, WarmStartConfig, _f,
                              check_choice, check_positive)


@dataclass
class PromptDataConfig(DataConfig):
    skip_incomplete_rows: bool = _f(False, "drop (and count) rows that lack a column a reward needs; false: such "
                                           "a row is an error naming the file, row and column")


@dataclass
class RLTrainerConfig(TrainerConfig):
    mini_batches: int = _f(1, "optimizer steps per training batch (PPO mini-batches)")
    epochs: int = _f(1, "passes over each training batch")


@dataclass
class RLRunConfig(RunConfig):
    save_policy: bool = _f(True, "save the trained policy (Hugging Face format) to <run dir>/policy")
    eval_samples: int = _f(0, "sampled completions per held-out prompt for avg@k / pass@k (0: greedy only)")
    eval_pass_k: list = _f([1, 4], "k values of the unbiased pass@k estimate (each <= run.eval_samples)")
    checkpoint_every: int = _f(0, "write a checkpoint every this many steps, and at the last step (0: never)")
    keep_checkpoints: int = _f(2, "complete checkpoints kept; older ones are deleted")
    resume: str = _f("auto", "auto: continue from the newest complete checkpoint of run.name if one exists; "
                             "never: start over; or a checkpoint directory path")
    max_actor_restarts: int = _f(3, "restarts of dead generator/reward actors before the run fails")


@dataclass
class RolloutConfig:
    n: int = _f(8, "samples per prompt (the group size)")
    prompts_per_step: int = _f(16, "prompts (groups) in each training batch")
    gen_prompts: int = _f(16, "prompts per generation batch (dynamic sampling may need several)")
    temperature: float = _f(1.0, "sampling temperature (the trainer scores with the same temperature)")
    top_p: float = _f(1.0, "nucleus sampling threshold")
    max_new_tokens: int = _f(16, "maximum response length; also DAPO's L_max")
    ignore_eos: bool = _f(False, "sample every response to max_new_tokens (fixed-length benchmarks)")
    max_staleness: int = _f(0, "off-policy rollouts: generators work up to this many batches ahead of the trainer "
                               "and no sample older than this many policy versions is trained on (0: synchronous)")
    env: str = _f("single_turn", "environment of an episode (rlhf.envs): a registered name (single_turn, calculator, "
                                 "tools), package.module:Class or path/file.py:Class")
    max_turns: int = _f(1, "model turns per episode at most (multi-turn environments)")
    max_episode_tokens: Optional[int] = _f(None, "response tokens of an episode at most, model and observation tokens "
                                                 "together; also DAPO's L_max (empty: max_new_tokens x max_turns)")
    tool_timeout_s: float = _f(10.0, "wall-clock limit of one tool call; past it the model sees an error")
    tool_memory_mb: int = _f(1024, "address-space limit of a tool call's process, in MiB (0: none)")
    turn_gather_s: float = _f(0.5, "after one episode's environment step comes back, seconds to wait for the others "
                                   "to share its generation batch; runs repeat exactly when every step returns "
                                   "within it, and a slower step never holds the others longer")

    def episode_tokens(self) -> int:
        """The token budget of an episode's response (one turn's `max_new_tokens` when single-turn)."""
        return self.max_episode_tokens or self.max_new_tokens * self.max_turns


@dataclass
class DynamicSamplingConfig:
    enabled: bool = _f(False, "drop groups whose rewards are all equal and generate more until the batch is full")
    max_gen_batches: int = _f(4, "generation batches per step at most; then train on what was kept")


@dataclass
class OverlongConfig:
    shaping: bool = _f(False, "DAPO soft overlong punishment over the last cache_len tokens before max_new_tokens")
    cache_len: int = _f(4, "DAPO's L_cache: length of the linear penalty ramp, in tokens")
    penalty_factor: float = _f(1.0, "scale of the overlong penalty (1.0 = the paper's)")
    filter: bool = _f(False, "mask truncated responses out of the loss (overlong filtering)")


@dataclass
class RolloutCorrectionConfig:
    enabled: Optional[bool] = _f(None, "truncated importance sampling between the trainer's pi_old and the rollout "
                                       "engine's log-probs; empty: on when rollout.max_staleness > 0")
    level: str = _f("token", "importance weight per token, or one per sequence (product of token ratios)")
    mode: str = _f("truncate", "truncate: min(w, cap); mask: weights above cap become 0")
    cap: float = _f(2.0, "upper bound of the importance weight")


@dataclass
class AlgorithmConfig:
    adv_estimator: str = _f("grpo", "critic-free advantage estimator by name (see rlhf.algorithms.advantages)")
    norm_eps: float = _f(1e-6, "epsilon of group standard-deviation normalisation")
    policy_loss: str = _f("ppo", "policy loss by name (see rlhf.algorithms)")
    eps_low: float = _f(0.2, "lower clip range: ratio >= 1 - eps_low")
    eps_high: float = _f(0.2, "upper clip range: ratio <= 1 + eps_high (DAPO clip-higher: 0.28)")
    dual_clip: Optional[float] = _f(None, "dual-clip constant c > 1 bounding the loss of negative advantages")
    loss_agg: str = _f("seq-mean-token-mean", "loss aggregation: token-mean, seq-mean-token-mean, "
                                              "seq-mean-token-sum, seq-mean-token-sum-norm")
    kl_coef: float = _f(0.0, "coefficient of the KL-to-reference loss term; 0 disables the reference model")
    kl_estimator: str = _f("k3", "KL estimator for the loss term: k1, k2, k3")
    dynamic_sampling: DynamicSamplingConfig = _f(DynamicSamplingConfig, "DAPO dynamic sampling")
    overlong: OverlongConfig = _f(OverlongConfig, "DAPO overlong reward shaping and filtering")
    rollout_correction: RolloutCorrectionConfig = _f(RolloutCorrectionConfig,
                                                     "importance-sampling correction for off-policy samples")


@dataclass
class GeneratorConfig:
    num_workers: int = _f(1, "rollout generator actors")
    backend: str = _f("hf", "rollout engine: hf (transformers generate) or vllm (GPU)")
    tensor_parallel_size: int = _f(1, "vllm: GPUs per engine (tensor parallel); generator.gpus_per_worker must cover them")
    gpu_memory_utilization: float = _f(0.4, "vllm: share of the GPU's memory the engine may take (weights + KV cache)")
    max_model_len: Optional[int] = _f(None, "vllm: longest prompt + response (empty: the model's)")
    sleep_while_training: bool = _f(False, "vllm: release KV cache and weights while the trainer trains (colocated)")
    enforce_eager: bool = _f(False, "vllm: no CUDA graphs / compilation (starts faster, generates slower)")
    weight_sync: str = _f("auto", "trainer -> generator weight transport: auto (from the placement: ipc when "
                                  "colocated on GPUs, broadcast when split, object_store on CPU), ipc, broadcast "
                                  "(NCCL; gloo on CPU) or object_store")
    sync_bucket_mb: float = _f(512.0, "ipc/broadcast: size of one weight bucket in MiB (ZeRO-3 gathers one at a time)")
    cpus_per_worker: float = _f(1.0, "Ray CPUs reserved per generator actor")
    gpus_per_worker: float = _f(0.0, "Ray GPUs reserved per generator actor")


@dataclass
class PlacementConfig:
    mode: str = _f("none", "GPU placement of the RL roles (Ray placement groups): colocate (generator i shares trainer "
                           "rank i's GPU), split (generators on GPUs of their own), none (each actor asks for "
                           "*.gpus_per_worker)")
    aux_on_trainer: bool = _f(True, "split: reference, reward model and critic share the trainers' GPUs (false: own GPUs)")
    strategy: str = _f("PACK", "Ray placement strategy of the bundles: PACK (fill nodes in turn) or SPREAD")


@dataclass
class RewardConfig:
    fns: list = _f(["math_verify"], "reward functions: registered names, package.module:fn or path/file.py:fn")
    weights: Optional[list] = _f(None, "weight of each reward function (default: all 1.0)")
    eval_fns: list = _f(["math_verify"], "reward functions whose weighted score is the held-out accuracy")
    default: float = _f(0.0, "reward given when a reward function raises or times out")
    timeout_s: float = _f(10.0, "time limit of one reward call")
    num_workers: int = _f(1, "Ray reward actors the batch is spread over")
    processes_per_worker: int = _f(1, "isolated processes inside each reward actor")
    model: Optional[str] = _f(None, "a trained reward model directory (from rlhf.recipes.rm) added to the reward")
    model_weight: float = _f(1.0, "weight of the reward model's score in the reward")


@dataclass(frozen=True)
class NeededRoles:
    """Which optional actors a run starts (trainers, generators and reward actors always run)."""

    reference: bool
    critic: bool
    reward_model: bool


@dataclass
class RLConfig(BaseConfig):
    """GRPO / DAPO: group advantages, no critic."""

    data: PromptDataConfig = _f(PromptDataConfig, "prompts and answers")
    trainer: RLTrainerConfig = _f(RLTrainerConfig, "policy trainer (DeepSpeed)")
    run: RLRunConfig = _f(RLRunConfig, "loop, evaluation, checkpoints, logging and output")
    warmstart: WarmStartConfig = _f(WarmStartConfig, "supervised warm start before RL")
    rollout: RolloutConfig = _f(RolloutConfig, "sampling")
    algorithm: AlgorithmConfig = _f(AlgorithmConfig, "advantages, losses and DAPO features")
    generator: GeneratorConfig = _f(GeneratorConfig, "rollout generators")
    placement: PlacementConfig = _f(PlacementConfig, "where the roles run on GPUs")
    reward: RewardConfig = _f(RewardConfig, "reward functions")

    MOVED = BaseConfig.MOVED | {
        "trainer.micro_batch_size": "trainer.max_tokens_per_micro_batch (RL micro-batches are packed by token count)",
        "algorithm.gamma": "rlhf.recipes.ppo's algorithm.gamma (critic-free estimators here do not discount)",
        "algorithm.lam": "rlhf.recipes.ppo's algorithm.lam (GAE needs the critic)",
        "algorithm.kl_penalty": "algorithm.kl_coef (the KL term is a loss term here; in the reward: rlhf.recipes.ppo)",
        "algorithm.kl_controller": "rlhf.recipes.ppo's algorithm.kl_controller (here the coefficient is fixed)",
    }

    def trainer_on_gpu(self) -> bool:
        # placement groups hand the trainers their GPUs (trainer.gpus_per_worker stays 0 there)
        return self.placement.mode != "none" or super().trainer_on_gpu()

    def roles(self) -> NeededRoles:
        return NeededRoles(reference=self.algorithm.kl_coef > 0, critic=self.uses_critic(),
                     reward_model=bool(self.reward.model))

    def uses_critic(self) -> bool:
        return False

    def validate(self) -> "RLConfig":
        super().validate()
        from rlhf.algorithms import AGG_MODES, KL_ESTIMATORS, get_advantage_estimator, get_policy_loss
        from rlhf.algorithms.advantages import estimator_needs_critic

        a = self.algorithm
        for key, name, getter in (("algorithm.adv_estimator", a.adv_estimator, get_advantage_estimator),
                                  ("algorithm.policy_loss", a.policy_loss, get_policy_loss)):
            try:
                getter(name)
            except ValueError as e:
                raise ConfigError(f"{key}: {e}") from None
        self._check_estimator(estimator_needs_critic(a.adv_estimator))
        check_choice("algorithm.loss_agg", a.loss_agg, AGG_MODES)
        check_choice("algorithm.kl_estimator", a.kl_estimator, KL_ESTIMATORS)
        check_choice("generator.backend", self.generator.backend, ("hf", "vllm"))
        check_choice("generator.weight_sync", self.generator.weight_sync, ("auto", "ipc", "broadcast", "object_store"))
        check_choice("placement.mode", self.placement.mode, ("none", "colocate", "split"))
        check_choice("placement.strategy", self.placement.strategy, ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"))
        if self.placement.mode != "none":
            from rlhf.placement import plan_from_config

            try:
                plan_from_config(self, gpus=True)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        self._check_batch()
        self._check_rollout()
        self._check_run()
        return self

    def _check_estimator(self, needs_critic: bool) -> None:
        name = self.algorithm.adv_estimator
        if needs_critic:
            raise ConfigError(f"algorithm.adv_estimator={name} needs a critic, which GRPO/DAPO runs do not train: "
                              "use rlhf.recipes.ppo, or a critic-free estimator (drgrpo, grpo, reinforce_pp, rloo)")
        if self.rollout.n < 2:
            raise ConfigError(f"rollout.n={self.rollout.n}: group advantages ({name}) need at least 2 samples per "
                              "prompt")

    def _check_batch(self) -> None:
        r, t = self.rollout, self.trainer
        check_positive(rollout__prompts_per_step=r.prompts_per_step, rollout__gen_prompts=r.gen_prompts,
                       trainer__mini_batches=t.mini_batches, trainer__epochs=t.epochs)
        rows = r.prompts_per_step * r.n
        if rows % t.mini_batches:
            raise ConfigError(f"rollout.prompts_per_step*rollout.n = {rows} rows do not split into "
                              f"trainer.mini_batches={t.mini_batches} equal mini-batches")

    def _check_rollout(self) -> None:
        r, a = self.rollout, self.algorithm
        check_positive(rollout__n=r.n, rollout__max_new_tokens=r.max_new_tokens,
                       generator__num_workers=self.generator.num_workers,
                       generator__sync_bucket_mb=self.generator.sync_bucket_mb,
                       reward__num_workers=self.reward.num_workers, reward__timeout_s=self.reward.timeout_s)
        if r.temperature < 0:
            raise ConfigError(f"rollout.temperature={r.temperature} must be >= 0")
        if r.temperature == 0 and r.n > 1:
            raise ConfigError(f"rollout.temperature=0 (greedy) with rollout.n={r.n}: the n samples of a prompt would "
                              "be identical; sample with rollout.temperature > 0")
        ds = a.dynamic_sampling
        if ds.enabled and r.gen_prompts * ds.max_gen_batches < r.prompts_per_step:
            raise ConfigError(
                f"rollout.gen_prompts={r.gen_prompts} x algorithm.dynamic_sampling.max_gen_batches="
                f"{ds.max_gen_batches} cannot fill rollout.prompts_per_step={r.prompts_per_step} groups: raise either")
        if self.reward.weights is not None and len(self.reward.weights) != len(self.reward.fns):
            raise ConfigError(f"reward.weights has {len(self.reward.weights)} entries but reward.fns has "
                              f"{len(self.reward.fns)}: give one weight per function")
        if a.overlong.shaping and not 0 < a.overlong.cache_len < r.max_new_tokens:
            raise ConfigError(f"algorithm.overlong.cache_len={a.overlong.cache_len} must be in "
                              f"(0, rollout.max_new_tokens={r.max_new_tokens})")
        self._check_env()
        rc = a.rollout_correction
        check_choice("algorithm.rollout_correction.level", rc.level, ("token", "sequence"))
        check_choice("algorithm.rollout_correction.mode", rc.mode, ("truncate", "mask"))
        if rc.cap <= 0:
            raise ConfigError(f"algorithm.rollout_correction.cap={rc.cap} must be > 0")
        if r.max_staleness < 0:
            raise ConfigError(f"rollout.max_staleness={r.max_staleness} must be >= 0")
        if a.dual_clip is not None and a.dual_clip <= 1:
            raise ConfigError(f"algorithm.dual_clip={a.dual_clip} must be > 1 (or empty)")

    def _check_env(self) -> None:
        from rlhf.envs import EnvSpecError, load_environment, tool_schemas
        from rlhf.envs.tools import ToolSchemaError

        r = self.rollout
        try:
            tool_schemas(load_environment(r.env, "rollout.env").tools)
        except (EnvSpecError, ToolSchemaError) as e:
            raise ConfigError(str(e) if str(e).startswith("rollout.env") else f"rollout.env={r.env}: {e}") from None
        check_positive(rollout__max_turns=r.max_turns, rollout__tool_timeout_s=r.tool_timeout_s)
        if r.turn_gather_s < 0:
            raise ConfigError(f"rollout.turn_gather_s={r.turn_gather_s} must be >= 0")
        if r.max_episode_tokens is not None and r.max_episode_tokens < r.max_new_tokens:
            raise ConfigError(f"rollout.max_episode_tokens={r.max_episode_tokens} must be >= rollout.max_new_tokens="
                              f"{r.max_new_tokens} (one turn must fit)")

    def _check_run(self) -> None:
        run = self.run
        too_big = [k for k in run.eval_pass_k if not 1 <= k <= max(run.eval_samples, 1)]
        if run.eval_samples and too_big:
            raise ConfigError(f"run.eval_pass_k={list(run.eval_pass_k)}: every k must be in "
                              f"[1, run.eval_samples={run.eval_samples}]")
        if run.keep_checkpoints < 1:
            raise ConfigError(f"run.keep_checkpoints={run.keep_checkpoints} must be >= 1")
