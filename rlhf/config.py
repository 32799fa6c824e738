"""One typed config tree for every recipe: dataclasses (the schema), YAML files and
dotlist overrides (`trainer.lr=1e-5 rollout.n=8`), merged with OmegaConf.

Every field carries a `help` string; `--help` prints the tree with defaults and
meanings. Validation is loud and happens once, at load time: an unknown key names the
nearest valid keys, a value of the wrong type names the key and the expected type, and
cross-field rules (`RLConfig.validate`) say what to change.
"""

from __future__ import annotations

import dataclasses
import difflib
import sys
import typing
from dataclasses import dataclass, field
from typing import Any, Optional

from omegaconf import OmegaConf
from omegaconf.errors import OmegaConfBaseException


class ConfigError(ValueError):
    """A bad config key or value; the message names the key."""


def _f(default: Any, help: str, **kw) -> Any:
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        factory = default if callable(default) and not isinstance(default, (list, dict)) else (lambda d=default: type(d)(d))
        return field(default_factory=factory, metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


@dataclass
class TinyModelConfig:
    hidden_size: int = _f(128, "hidden width of the tiny Qwen2 built when model.path is empty")
    intermediate_size: int = _f(384, "MLP width of the tiny model")
    num_layers: int = _f(4, "transformer layers of the tiny model")
    num_heads: int = _f(4, "attention heads of the tiny model")
    num_kv_heads: int = _f(2, "key/value heads (grouped-query attention) of the tiny model")


@dataclass
class ModelConfig:
    path: Optional[str] = _f(None, "local Hugging Face model directory (or hub name where a network exists); "
                                   "empty: build a tiny Qwen2 from model.tiny and a local tokenizer")
    tiny: TinyModelConfig = _f(TinyModelConfig, "architecture of the model built when model.path is empty")
    dtype: str = _f("auto", "parameter dtype: auto (bf16 on GPU, fp32 on CPU), float32, bfloat16")
    gradient_checkpointing: bool = _f(False, "recompute activations in the backward pass to save memory")
    lora_rank: int = _f(0, "LoRA rank of the trained policy (peft); 0 trains every weight. Generators receive the "
                           "merged weights")
    lora_alpha: float = _f(16.0, "LoRA alpha (the update is scaled by alpha / rank)")
    lora_dropout: float = _f(0.0, "dropout on the LoRA branch")
    lora_targets: list = _f(["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"],
                            "module names that get LoRA adapters (or ['all-linear'])")


@dataclass
class DataConfig:
    train: Optional[str] = _f(None, "training prompts: a local .jsonl/.json/.parquet file; empty: the built-in task")
    eval: Optional[str] = _f(None, "held-out prompts, same format; empty: the built-in task's held-out split")
    task: str = _f("addition", "built-in synthetic task used when data.train is empty")
    prompt_key: str = _f("prompt", "column holding the prompt text")
    answer_key: str = _f("answer", "column holding the gold answer (passed to rewards as a keyword argument)")
    response_key: str = _f("response", "SFT: column holding the target response (GSM8K: answer, MATH: solution)")
    messages_key: str = _f("messages", "SFT: column holding a chat as [{role, content}] (last assistant turn = target)")
    chosen_key: str = _f("chosen", "preferences: column of the preferred response (text, messages or HH transcript)")
    rejected_key: str = _f("rejected", "preferences: column of the dispreferred response")
    num_eval: int = _f(200, "held-out prompts scored at each evaluation")
    max_prompt_len: int = _f(256, "prompts longer than this many tokens are an error")
    seed: int = _f(0, "seed of the built-in task's split and of the prompt order")


@dataclass
class WarmStartConfig:
    steps: int = _f(400, "supervised steps on the task's answers before RL, cached by content hash; 0 skips")
    lr: float = _f(3e-3, "peak learning rate of the warm start (linear warmup, then linear decay to 0)")
    warmup_steps: int = _f(50, "warm-start learning-rate warmup steps")
    batch_size: int = _f(64, "sequences per warm-start step")
    cache_dir: str = _f("~/.cache/rlhf", "where built models and warm starts are cached")


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
    adv_estimator: str = _f("grpo", "advantage estimator by name (see rlhf.algorithms.advantages)")
    norm_eps: float = _f(1e-6, "epsilon of group standard-deviation normalisation")
    policy_loss: str = _f("ppo", "policy loss by name (see rlhf.algorithms)")
    eps_low: float = _f(0.2, "lower clip range: ratio >= 1 - eps_low")
    eps_high: float = _f(0.2, "upper clip range: ratio <= 1 + eps_high (DAPO clip-higher: 0.28)")
    dual_clip: Optional[float] = _f(None, "dual-clip constant c > 1 bounding the loss of negative advantages")
    loss_agg: str = _f("seq-mean-token-mean", "loss aggregation: token-mean, seq-mean-token-mean, "
                                              "seq-mean-token-sum, seq-mean-token-sum-norm")
    kl_coef: float = _f(0.0, "coefficient of the KL-to-reference loss term; 0 disables the reference model")
    kl_estimator: str = _f("k3", "KL estimator for the loss term: k1, k2, k3")
    kl_penalty: str = _f("loss", "where the KL to the reference goes: loss (GRPO) or reward (PPO, per token)")
    kl_controller: str = _f("fixed", "KL coefficient: fixed, or adaptive towards kl_target (Ziegler et al. 2019)")
    kl_target: float = _f(0.1, "adaptive controller: target KL per sequence")
    kl_horizon: int = _f(10000, "adaptive controller: horizon in samples")
    gamma: float = _f(1.0, "discount of GAE / REINFORCE++ returns")
    lam: float = _f(0.95, "GAE lambda")
    dynamic_sampling: DynamicSamplingConfig = _f(DynamicSamplingConfig, "DAPO dynamic sampling")
    overlong: OverlongConfig = _f(OverlongConfig, "DAPO overlong reward shaping and filtering")
    rollout_correction: RolloutCorrectionConfig = _f(RolloutCorrectionConfig,
                                                     "importance-sampling correction for off-policy samples")


@dataclass
class TrainerConfig:
    num_workers: int = _f(1, "data-parallel trainer actors (DeepSpeed world size)")
    zero_stage: int = _f(0, "DeepSpeed ZeRO stage 0-3")
    offload: bool = _f(False, "ZeRO-Offload optimizer states to CPU (needs DeepSpeed's CPU Adam build)")
    lr: float = _f(1e-6, "learning rate of the policy (constant after warmup)")
    warmup_steps: int = _f(0, "learning-rate warmup, in optimizer steps")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    grad_clip: float = _f(1.0, "gradient-norm clip")
    micro_batch_size: int = _f(32, "sequences per forward/backward on one worker")
    mini_batches: int = _f(1, "optimizer steps per training batch (PPO mini-batches)")
    epochs: int = _f(1, "passes over each training batch")
    cpus_per_worker: float = _f(1.0, "Ray CPUs reserved per trainer actor")
    gpus_per_worker: float = _f(0.0, "Ray GPUs reserved per trainer actor")


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


@dataclass
class RunConfig:
    steps: int = _f(20, "RL steps")
    seed: int = _f(0, "global seed")
    output_dir: str = _f("runs", "parent directory of run directories")
    name: Optional[str] = _f(None, "run directory name (default: recipe and timestamp)")
    eval_every: int = _f(5, "evaluate on held-out prompts every this many steps (0: only before and after)")
    progress: bool = _f(True, "show a progress bar")
    save_policy: bool = _f(True, "save the trained policy (Hugging Face format) to <run dir>/policy")
    torch_threads: int = _f(0, "torch threads per actor (0: the machine's core count)")
    eval_samples: int = _f(0, "sampled completions per held-out prompt for avg@k / pass@k (0: greedy only)")
    eval_pass_k: list = _f([1, 4], "k values of the unbiased pass@k estimate (each <= run.eval_samples)")
    checkpoint_every: int = _f(0, "write a checkpoint every this many steps, and at the last step (0: never)")
    keep_checkpoints: int = _f(2, "complete checkpoints kept; older ones are deleted")
    resume: str = _f("auto", "auto: continue from the newest complete checkpoint of run.name if one exists; "
                             "never: start over; or a checkpoint directory path")
    max_actor_restarts: int = _f(3, "restarts of dead generator/reward actors before the run fails")
    wandb: bool = _f(False, "also log to Weights & Biases (offline into the run directory when no API key is set)")
    wandb_project: str = _f("rlhf", "Weights & Biases project name")


@dataclass
class SupervisedConfig:
    steps: int = _f(200, "SFT / RM / DPO optimizer steps")
    lr: float = _f(1e-4, "peak learning rate (linear warmup, then linear decay to 0)")
    warmup_steps: int = _f(20, "learning-rate warmup steps")
    batch_size: int = _f(32, "examples (SFT) or pairs (RM, DPO) per step")
    micro_batch_size: int = _f(16, "examples or pairs per forward/backward on one worker (padded batches)")
    packing: bool = _f(True, "SFT: pack several examples per row (attention stays within each example)")
    max_len: int = _f(512, "longest example / packed row, in tokens")
    eval_every: int = _f(50, "evaluate every this many steps (and before and after)")
    num_eval: int = _f(256, "held-out examples or pairs per evaluation")


@dataclass
class DPOConfig:
    beta: float = _f(0.1, "DPO beta: strength of the implicit KL to the reference")
    loss_type: str = _f("sigmoid", "sigmoid (DPO) or ipo")
    label_smoothing: float = _f(0.0, "conservative DPO: assumed probability that a preference label is flipped")


@dataclass
class CriticConfig:
    init: Optional[str] = _f(None, "PPO critic initialisation: a reward model directory; empty: the policy")
    lr: float = _f(1e-4, "critic learning rate")
    value_clip: Optional[float] = _f(0.2, "clip of the value change per update (empty: no clipping)")
    warmup_steps: int = _f(0, "critic learning-rate warmup steps")


@dataclass
class RayConfig:
    address: Optional[str] = _f(None, "Ray cluster address; empty: RAY_ADDRESS, else a local cluster")
    num_cpus: Optional[int] = _f(None, "CPUs of a local cluster (default: enough for every actor)")


@dataclass
class RLConfig:
    model: ModelConfig = _f(ModelConfig, "policy model")
    data: DataConfig = _f(DataConfig, "prompts and answers")
    warmstart: WarmStartConfig = _f(WarmStartConfig, "supervised warm start before RL")
    rollout: RolloutConfig = _f(RolloutConfig, "sampling")
    algorithm: AlgorithmConfig = _f(AlgorithmConfig, "advantages, losses and DAPO features")
    trainer: TrainerConfig = _f(TrainerConfig, "policy trainer (DeepSpeed)")
    generator: GeneratorConfig = _f(GeneratorConfig, "rollout generators")
    placement: PlacementConfig = _f(PlacementConfig, "where the roles run on GPUs")
    reward: RewardConfig = _f(RewardConfig, "reward functions")
    run: RunConfig = _f(RunConfig, "loop, logging and output")
    ray: RayConfig = _f(RayConfig, "Ray cluster")
    train: SupervisedConfig = _f(SupervisedConfig, "SFT, reward-model and DPO training")
    dpo: DPOConfig = _f(DPOConfig, "DPO loss")
    critic: CriticConfig = _f(CriticConfig, "PPO critic")

    def validate(self) -> "RLConfig":
        from rlhf.algorithms import AGG_MODES, KL_ESTIMATORS, get_advantage_estimator, get_policy_loss

        for key, name, getter in (("algorithm.adv_estimator", self.algorithm.adv_estimator, get_advantage_estimator),
                                  ("algorithm.policy_loss", self.algorithm.policy_loss, get_policy_loss)):
            try:
                getter(name)
            except ValueError as e:
                raise ConfigError(f"{key}: {e}") from None
        _choice("algorithm.loss_agg", self.algorithm.loss_agg, AGG_MODES)
        _choice("algorithm.kl_estimator", self.algorithm.kl_estimator, KL_ESTIMATORS)
        _choice("algorithm.kl_penalty", self.algorithm.kl_penalty, ("loss", "reward"))
        _choice("algorithm.kl_controller", self.algorithm.kl_controller, ("fixed", "adaptive"))
        _choice("dpo.loss_type", self.dpo.loss_type, ("sigmoid", "ipo"))
        _choice("generator.backend", self.generator.backend, ("hf", "vllm"))
        _choice("generator.weight_sync", self.generator.weight_sync, ("auto", "ipc", "broadcast", "object_store"))
        _choice("placement.mode", self.placement.mode, ("none", "colocate", "split"))
        _choice("placement.strategy", self.placement.strategy, ("PACK", "SPREAD", "STRICT_PACK", "STRICT_SPREAD"))
        if self.placement.mode != "none":
            from rlhf.placement import plan_from_config

            try:
                plan_from_config(self, gpus=True)
            except ValueError as e:
                raise ConfigError(str(e)) from None
        if self.model.lora_rank < 0:
            raise ConfigError(f"model.lora_rank={self.model.lora_rank} must be >= 0 (0: no LoRA)")
        if self.generator.sync_bucket_mb <= 0:
            raise ConfigError(f"generator.sync_bucket_mb={self.generator.sync_bucket_mb} must be > 0")
        _choice("model.dtype", self.model.dtype, ("auto", "float32", "bfloat16"))
        _choice("trainer.zero_stage", self.trainer.zero_stage, (0, 1, 2, 3))
        r, t = self.rollout, self.trainer
        if r.n < 2 and self.algorithm.adv_estimator != "gae":
            raise ConfigError(f"rollout.n={r.n}: group advantages need at least 2 samples per prompt")
        batch = r.prompts_per_step * r.n
        per_rank = batch // (t.num_workers * t.mini_batches)
        if batch % (t.num_workers * t.mini_batches) or per_rank % t.micro_batch_size and per_rank > t.micro_batch_size:
            raise ConfigError(
                f"rollout.prompts_per_step*rollout.n = {batch} sequences must split evenly into "
                f"trainer.num_workers={t.num_workers} x trainer.mini_batches={t.mini_batches} shards, each a "
                f"multiple of trainer.micro_batch_size={t.micro_batch_size} (or smaller than it)")
        ds = self.algorithm.dynamic_sampling
        if ds.enabled and r.gen_prompts * ds.max_gen_batches < r.prompts_per_step:
            raise ConfigError(
                f"rollout.gen_prompts={r.gen_prompts} x algorithm.dynamic_sampling.max_gen_batches="
                f"{ds.max_gen_batches} cannot fill rollout.prompts_per_step={r.prompts_per_step} groups: raise either")
        if self.reward.weights is not None and len(self.reward.weights) != len(self.reward.fns):
            raise ConfigError(f"reward.weights has {len(self.reward.weights)} entries but reward.fns has "
                              f"{len(self.reward.fns)}: give one weight per function")
        if self.algorithm.overlong.shaping and not 0 < self.algorithm.overlong.cache_len < r.max_new_tokens:
            raise ConfigError(f"algorithm.overlong.cache_len={self.algorithm.overlong.cache_len} must be in "
                              f"(0, rollout.max_new_tokens={r.max_new_tokens})")
        too_big = [k for k in self.run.eval_pass_k if not 1 <= k <= max(self.run.eval_samples, 1)]
        if self.run.eval_samples and too_big:
            raise ConfigError(f"run.eval_pass_k={list(self.run.eval_pass_k)}: every k must be in "
                              f"[1, run.eval_samples={self.run.eval_samples}]")
        rc = self.algorithm.rollout_correction
        _choice("algorithm.rollout_correction.level", rc.level, ("token", "sequence"))
        _choice("algorithm.rollout_correction.mode", rc.mode, ("truncate", "mask"))
        if rc.cap <= 0:
            raise ConfigError(f"algorithm.rollout_correction.cap={rc.cap} must be > 0")
        if r.max_staleness < 0:
            raise ConfigError(f"rollout.max_staleness={r.max_staleness} must be >= 0")
        if self.run.keep_checkpoints < 1:
            raise ConfigError(f"run.keep_checkpoints={self.run.keep_checkpoints} must be >= 1")
        if self.algorithm.dual_clip is not None and self.algorithm.dual_clip <= 1:
            raise ConfigError(f"algorithm.dual_clip={self.algorithm.dual_clip} must be > 1 (or empty)")
        return self


def _choice(key: str, value: Any, valid: tuple) -> None:
    if value not in valid:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(map(str, valid))}")


# ---- loading -------------------------------------------------------------------------------

def schema_keys(cls: type, prefix: str = "") -> dict[str, dataclasses.Field]:
    """Flattened `a.b.c` -> field for every leaf of a config dataclass tree."""
    hints = typing.get_type_hints(cls)
    out = {}
    for f in dataclasses.fields(cls):
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(hints[f.name]):
            out.update(schema_keys(hints[f.name], key + "."))
        else:
            out[key] = f
    return out


def _check_keys(cls: type, keys: list[str], source: str) -> None:
    valid = schema_keys(cls)
    groups = {k.rsplit(".", 1)[0] for k in valid if "." in k}
    for key in keys:
        if key in valid or key in groups:
            continue
        near = difflib.get_close_matches(key, list(valid) + sorted(groups), n=3, cutoff=0.5)
        hint = f"; did you mean {', '.join(near)}?" if near else "; run with --help for the valid keys"
        raise ConfigError(f"unknown config key '{key}' ({source}){hint}")


def _flat_keys(d: Any, prefix: str = "") -> list[str]:
    if not isinstance(d, dict):
        return [prefix[:-1]]
    keys = []
    for k, v in d.items():
        keys += _flat_keys(v, f"{prefix}{k}.") if isinstance(v, dict) and v else [f"{prefix}{k}"]
    return keys


def load_config(cls: type, defaults: Any, args: list[str]) -> Any:
    """Schema `cls`, recipe `defaults` (an instance), then `--config file.yaml`, then dotlist `args`."""
    base = OmegaConf.structured(defaults)
    layers = []
    rest = list(args)
    while "--config" in rest:
        i = rest.index("--config")
        if i + 1 >= len(rest):
            raise ConfigError("--config needs a YAML file path")
        path = rest.pop(i + 1)
        rest.pop(i)
        try:
            loaded = OmegaConf.load(path)
        except FileNotFoundError:
            raise ConfigError(f"config file not found: {path}") from None
        except Exception as e:
            raise ConfigError(f"config file {path} is not valid YAML: {e}") from None
        _check_keys(cls, _flat_keys(OmegaConf.to_container(loaded)), path)
        layers.append(loaded)
    for a in rest:
        if "=" not in a or a.startswith("-"):
            raise ConfigError(f"cannot parse argument '{a}': expected key=value (e.g. trainer.lr=1e-5) or --config FILE")
    _check_keys(cls, [a.split("=", 1)[0].lstrip("+") for a in rest], "command line")
    try:
        layers.append(OmegaConf.from_dotlist(rest))
        merged = OmegaConf.merge(base, *layers)
        cfg = OmegaConf.to_object(merged)
    except OmegaConfBaseException as e:
        raise ConfigError(_explain(cls, e)) from None
    return cfg.validate() if hasattr(cfg, "validate") else cfg


def _explain(cls: type, e: OmegaConfBaseException) -> str:
    key = getattr(e, "full_key", None) or "?"
    f = schema_keys(cls).get(key)
    expected = str(f.type).replace("Optional[", "").rstrip("]") if f else "?"
    msg = str(e).split("\n")[0]
    return f"config key '{key}': {msg} (expected {expected})"


def format_help(cls: type, defaults: Any, prog: str) -> str:
    lines = [f"usage: python -m {prog} [--config FILE.yaml] [key=value ...]", "", "Config keys (default  meaning):"]
    flat = OmegaConf.to_container(OmegaConf.structured(defaults))
    for key, f in schema_keys(cls).items():
        value = flat
        for part in key.split("."):
            value = value[part]
        lines.append(f"  {key} = {value!r:<14}  {f.metadata.get('help', '')}")
    return "\n".join(lines)


def parse_cli(cls: type, defaults: Any, prog: str, argv: Optional[list[str]] = None) -> Any:
    argv = sys.argv[1:] if argv is None else argv
    if "-h" in argv or "--help" in argv:
        print(format_help(cls, defaults, prog))
        raise SystemExit(0)
    try:
        return load_config(cls, defaults, argv)
    except ConfigError as e:
        print(f"error: {e}", file=sys.stderr)
        raise SystemExit(2)


def to_dict(cfg: Any) -> dict:
    return OmegaConf.to_container(OmegaConf.structured(cfg))
