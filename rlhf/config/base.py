"""What every recipe reads: model, data, trainer, run, Ray. Each kind of recipe extends these
sections with the keys of its own (`rlhf.config.rl`, `rlhf.config.supervised`)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Optional


class ConfigError(ValueError):
    """A bad config key or value; the message names the key."""


def _f(default: Any, help: str, **kw) -> Any:
    """A config field with its help text (and a fresh default for lists and sections)."""
    if isinstance(default, (list, dict)) or dataclasses.is_dataclass(default):
        copy = lambda d=default: type(d)(d)  # noqa: E731  (a fresh list or dict per instance)
        factory = default if callable(default) and not isinstance(default, (list, dict)) else copy
        return field(default_factory=factory, metadata={"help": help}, **kw)
    return field(default=default, metadata={"help": help}, **kw)


def check_choice(key: str, value: Any, valid: tuple) -> None:
    if value not in valid:
        raise ConfigError(f"{key}={value!r} is not one of {', '.join(map(str, valid))}")


def check_positive(**values: float) -> None:
    """Each `section__key=value` must be > 0 (the key is named with dots in the error)."""
    for key, value in values.items():
        if value <= 0:
            raise ConfigError(f"{key.replace('__', '.')}={value} must be > 0")


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
    quantization: str = _f("none", "QLoRA: hold the frozen base of a LoRA-trained policy in 4 bits (bitsandbytes): "
                                   "none, nf4 or fp4; needs model.lora_rank > 0")
    double_quant: bool = _f(True, "QLoRA: quantise the quantisation constants too (saves ~0.4 bit per weight)")
    compute_dtype: str = _f("auto", "QLoRA: dtype the 4-bit layers compute in: auto (model.dtype), float32, bfloat16")
    cache_dir: str = _f("~/.cache/rlhf", "where built models and warm starts are cached (RLHF_CACHE overrides)")


@dataclass
class DataConfig:
    train: Optional[str] = _f(None, "training data: a local .jsonl/.json/.parquet file; empty: the built-in task")
    eval: Optional[str] = _f(None, "held-out data, same format; empty: the built-in task's held-out split")
    task: str = _f("addition", "built-in synthetic task used when data.train is empty")
    prompt_key: str = _f("prompt", "column holding the prompt text")
    answer_key: str = _f("answer", "column holding the gold answer (passed to rewards as a keyword argument)")
    num_eval: int = _f(200, "held-out rows scored at each evaluation")
    max_prompt_len: int = _f(256, "prompts longer than this many tokens are an error")
    seed: int = _f(0, "seed of the built-in task's split and of the data order")


@dataclass
class TrainerConfig:
    num_workers: int = _f(1, "data-parallel trainer actors (DeepSpeed world size)")
    zero_stage: int = _f(0, "DeepSpeed ZeRO stage 0-3")
    offload: bool = _f(False, "ZeRO-Offload optimizer states to CPU (needs DeepSpeed's CPU Adam build)")
    lr: float = _f(1e-6, "learning rate")
    warmup_steps: int = _f(0, "learning-rate warmup, in optimizer steps")
    weight_decay: float = _f(0.0, "AdamW weight decay")
    grad_clip: float = _f(1.0, "gradient-norm clip")
    max_tokens_per_micro_batch: int = _f(0, "tokens per forward/backward on one worker: sequences are packed end "
                                            "to end, without padding, up to this many (a longer one runs alone); "
                                            "every worker runs the same number of micro-batches. 0: 8192 on GPU, "
                                            "2048 on CPU (measured: benchmarks/README.md)")
    max_skipped_steps: int = _f(3, "optimizer steps skipped in a row (non-finite loss or gradient: no update is "
                                   "applied) before the run stops")
    cpus_per_worker: float = _f(1.0, "Ray CPUs reserved per trainer actor")
    gpus_per_worker: float = _f(0.0, "Ray GPUs reserved per trainer actor")


@dataclass
class RunConfig:
    steps: int = _f(20, "optimizer steps (RL: training batches)")
    seed: int = _f(0, "global seed")
    output_dir: str = _f("runs", "parent directory of run directories")
    name: Optional[str] = _f(None, "run directory name (default: recipe and timestamp)")
    eval_every: int = _f(5, "evaluate on held-out data every this many steps (0: only before and after)")
    progress: bool = _f(True, "show a progress bar")
    torch_threads: int = _f(0, "torch threads per actor (0: the machine's core count)")
    wandb: bool = _f(False, "also log to Weights & Biases (offline into the run directory when no API key is set)")
    wandb_project: str = _f("rlhf", "Weights & Biases project name")


@dataclass
class RayConfig:
    address: Optional[str] = _f(None, "Ray cluster address; empty: RAY_ADDRESS, else a local cluster")
    num_cpus: Optional[int] = _f(None, "CPUs of a local cluster (default: enough for every actor)")


@dataclass
class WarmStartConfig:
    steps: int = _f(400, "supervised steps on the task's answers before training, cached by content hash; 0 skips")
    lr: float = _f(3e-3, "peak learning rate of the warm start (linear warmup, then linear decay to 0)")
    warmup_steps: int = _f(50, "warm-start learning-rate warmup steps")
    batch_size: int = _f(64, "sequences per warm-start step")


@dataclass
class BaseConfig:
    """The sections every recipe has; a recipe's tree subclasses this."""

    model: ModelConfig = _f(ModelConfig, "the trained model")
    data: DataConfig = _f(DataConfig, "training and held-out data")
    trainer: TrainerConfig = _f(TrainerConfig, "trainer actors (DeepSpeed)")
    run: RunConfig = _f(RunConfig, "loop, logging and output")
    ray: RayConfig = _f(RayConfig, "Ray cluster")

    # Keys of earlier releases -> where they live now (an error names the new key).
    MOVED = {"warmstart.cache_dir": "model.cache_dir"}

    def _check_quantization(self) -> None:
        from rlhf.quantization import QUANT_TYPES, require_bitsandbytes

        m = self.model
        check_choice("model.quantization", m.quantization, QUANT_TYPES)
        check_choice("model.compute_dtype", m.compute_dtype, ("auto", "float32", "bfloat16"))
        if m.quantization == "none":
            return
        if not m.lora_rank:
            raise ConfigError(f"model.quantization={m.quantization} freezes the base in 4 bits and trains LoRA "
                              "adapters on it: set model.lora_rank (e.g. 16)")
        if self.trainer.zero_stage == 3:
            raise ConfigError(f"model.quantization={m.quantization} with trainer.zero_stage=3: ZeRO-3 would "
                              "partition the packed 4-bit weights; use trainer.zero_stage 0-2 (only the adapters "
                              "train, so their optimizer state is small)")
        try:
            require_bitsandbytes()
        except ImportError as e:
            raise ConfigError(str(e)) from None

    def trainer_on_gpu(self) -> bool:
        return self.trainer.gpus_per_worker > 0

    def micro_batch_tokens(self) -> int:
        """The token budget of a micro-batch: `trainer.max_tokens_per_micro_batch`, or the
        default of the trainer's device (8192 on GPU, 2048 on CPU)."""
        t = self.trainer
        return t.max_tokens_per_micro_batch or (8192 if self.trainer_on_gpu() else 2048)

    def validate(self):
        m, t, r = self.model, self.trainer, self.run
        check_choice("model.dtype", m.dtype, ("auto", "float32", "bfloat16"))
        check_choice("trainer.zero_stage", t.zero_stage, (0, 1, 2, 3))
        if m.lora_rank < 0:
            raise ConfigError(f"model.lora_rank={m.lora_rank} must be >= 0 (0: no LoRA)")
        self._check_quantization()
        check_positive(trainer__num_workers=t.num_workers,
                       trainer__max_skipped_steps=t.max_skipped_steps,
                       trainer__lr=t.lr, run__steps=r.steps, data__num_eval=self.data.num_eval)
        from rlhf.data.synthetic import TASKS

        check_choice("data.task", self.data.task, tuple(TASKS))
        if t.max_tokens_per_micro_batch < 0:
            raise ConfigError(f"trainer.max_tokens_per_micro_batch={t.max_tokens_per_micro_batch} must be >= 0 "
                              "(0: the device default)")
        if r.eval_every < 0:
            raise ConfigError(f"run.eval_every={r.eval_every} must be >= 0 (0: only before and after)")
        return self
