"""The config trees of the supervised recipes: `SFTConfig`, and for preference pairs
`RMConfig` (reward modelling) and `DPOConfig`."""

from __future__ import annotations

from dataclasses import dataclass

from rlhf.config.base import (BaseConfig, ConfigError, DataConfig, TrainerConfig, WarmStartConfig, _f, check_choice,
                              check_positive)


@dataclass
class SupervisedTrainerConfig(TrainerConfig):
    lr: float = _f(1e-4, "peak learning rate (linear warmup, then linear decay to 0)")
    warmup_steps: int = _f(20, "learning-rate warmup steps")
    batch_size: int = _f(32, "examples (SFT) or pairs (RM, DPO) per optimizer step, over all ranks")
    micro_batch_size: int = _f(16, "examples or pairs per forward/backward on one worker (trainer.packing=false)")
    packing: bool = _f(True, "pack examples (or pairs) end to end, without padding, into micro-batches of "
                             "trainer.max_tokens_per_micro_batch tokens (attention stays within each example); "
                             "false: trainer.micro_batch_size padded rows per micro-batch")


@dataclass
class SFTDataConfig(DataConfig):
    response_key: str = _f("response", "column holding the target response (GSM8K: answer, MATH: solution)")
    messages_key: str = _f("messages", "column holding a chat as [{role, content}] (last assistant turn = target)")


@dataclass
class PreferenceDataConfig(DataConfig):
    chosen_key: str = _f("chosen", "column of the preferred response (text, messages or HH transcript)")
    rejected_key: str = _f("rejected", "column of the dispreferred response")


@dataclass
class TaskEvalConfig:
    """Held-out task accuracy by greedy generation, where the held-out rows have prompts and answers."""

    fns: list = _f(["math_verify"], "reward functions whose weighted score is the held-out accuracy")
    max_new_tokens: int = _f(40, "longest generated answer")
    generator_gpus: float = _f(0.0, "Ray GPUs of the generator that answers the held-out prompts")


@dataclass
class DPOLossConfig:
    beta: float = _f(0.1, "DPO beta: strength of the implicit KL to the reference (SimPO: the reward scale, "
                          "the paper's 2.0-2.5)")
    loss_type: str = _f("sigmoid", "sigmoid (DPO), ipo, or simpo (reference-free, length-normalised; no reference "
                                   "actor is started)")
    label_smoothing: float = _f(0.0, "conservative DPO: assumed probability that a preference label is flipped")
    simpo_gamma: float = _f(1.0, "SimPO's target reward margin gamma (the paper: about 0.5 * beta)")


@dataclass
class ORPOLossConfig:
    lam: float = _f(0.1, "ORPO's lambda: weight of the odds-ratio term next to the chosen answer's NLL")


@dataclass
class KTODataConfig(PreferenceDataConfig):
    completion_key: str = _f("completion", "unpaired rows: column of the response")
    label_key: str = _f("label", "unpaired rows: column saying whether the response is desirable (true/false); "
                                 "rows with chosen/rejected columns give one desirable and one undesirable example")


@dataclass
class KTOLossConfig:
    beta: float = _f(0.1, "KTO beta: scale of the implicit reward log pi/pi_ref")
    lambda_d: float = _f(1.0, "weight of desirable examples (the paper: lambda_d n_d / (lambda_u n_u) in [1, 4/3])")
    lambda_u: float = _f(1.0, "weight of undesirable examples")


_SUPERVISED_MOVED = {
    "train.steps": "run.steps", "train.lr": "trainer.lr", "train.warmup_steps": "trainer.warmup_steps",
    "train.batch_size": "trainer.batch_size", "train.micro_batch_size": "trainer.micro_batch_size",
    "train.packing": "trainer.packing", "train.max_len": "trainer.max_tokens_per_micro_batch",
    "train.eval_every": "run.eval_every",
    "train.num_eval": "data.num_eval", "reward.eval_fns": "eval.fns", "rollout.max_new_tokens": "eval.max_new_tokens",
    "generator.gpus_per_worker": "eval.generator_gpus",
    "trainer.max_len": "trainer.max_tokens_per_micro_batch (examples are packed by token count)",
}


@dataclass
class SupervisedConfig(BaseConfig):
    trainer: SupervisedTrainerConfig = _f(SupervisedTrainerConfig, "trainer actors (DeepSpeed)")

    MOVED = BaseConfig.MOVED | _SUPERVISED_MOVED

    def validate(self):
        super().validate()
        from rlhf.batch import BatchLayoutError, micro_batching

        t = self.trainer
        check_positive(trainer__batch_size=t.batch_size, trainer__micro_batch_size=t.micro_batch_size)
        try:
            micro_batching(t.batch_size, t.num_workers, t.micro_batch_size, one_forward=self.packed(), strict=True)
        except BatchLayoutError as e:
            raise ConfigError(f"trainer.batch_size: {e}") from None
        return self

    def packed(self) -> bool:
        """A rank's share of a step is one packed forward (SFT with trainer.packing)."""
        return False


@dataclass
class SFTConfig(SupervisedConfig):
    data: SFTDataConfig = _f(SFTDataConfig, "examples: prompts and responses, or chats")
    eval: TaskEvalConfig = _f(TaskEvalConfig, "held-out task accuracy")

    def packed(self) -> bool:
        return self.trainer.packing


@dataclass
class RMConfig(SupervisedConfig):
    data: PreferenceDataConfig = _f(PreferenceDataConfig, "preference pairs")
    warmstart: WarmStartConfig = _f(WarmStartConfig, "supervised warm start of the body on the task's answers")


@dataclass
class DPOConfig(RMConfig):
    dpo: DPOLossConfig = _f(DPOLossConfig, "DPO loss")
    eval: TaskEvalConfig = _f(TaskEvalConfig, "held-out task accuracy")

    def validate(self):
        super().validate()
        from rlhf.algorithms.preference import DPO_LOSS_TYPES

        check_choice("dpo.loss_type", self.dpo.loss_type, DPO_LOSS_TYPES + ("simpo",))
        check_positive(dpo__beta=self.dpo.beta)
        if self.dpo.label_smoothing and self.dpo.loss_type != "sigmoid":
            raise ConfigError(f"dpo.label_smoothing={self.dpo.label_smoothing} applies to dpo.loss_type=sigmoid only")
        return self

    def needs_reference(self) -> bool:
        """The one place that decides whether a reference actor runs: not for SimPO."""
        from rlhf.algorithms.preference import REFERENCE_FREE

        return self.dpo.loss_type not in REFERENCE_FREE

    def pair_loss(self) -> dict:
        """The settings the policy trainer's pairwise step takes."""
        d = self.dpo
        return {"loss_type": d.loss_type, "beta": d.beta, "label_smoothing": d.label_smoothing,
                "simpo_gamma": d.simpo_gamma}


@dataclass
class ORPOConfig(RMConfig):
    orpo: ORPOLossConfig = _f(ORPOLossConfig, "ORPO loss")
    eval: TaskEvalConfig = _f(TaskEvalConfig, "held-out task accuracy")

    def validate(self):
        super().validate()
        if self.orpo.lam < 0:
            raise ConfigError(f"orpo.lam={self.orpo.lam} must be >= 0")
        return self

    def needs_reference(self) -> bool:
        return False

    def pair_loss(self) -> dict:
        return {"loss_type": "orpo", "orpo_lambda": self.orpo.lam}


@dataclass
class KTOConfig(RMConfig):
    data: KTODataConfig = _f(KTODataConfig, "unpaired examples labelled desirable or not (or preference pairs)")
    kto: KTOLossConfig = _f(KTOLossConfig, "KTO loss")
    eval: TaskEvalConfig = _f(TaskEvalConfig, "held-out task accuracy")

    def validate(self):
        super().validate()
        check_positive(kto__beta=self.kto.beta, kto__lambda_d=self.kto.lambda_d, kto__lambda_u=self.kto.lambda_u)
        if self.trainer.micro_batch_size < 2 or self.trainer.batch_size // self.trainer.num_workers < 2:
            raise ConfigError("KTO's reference point pairs each example with another one's completion: "
                              "trainer.micro_batch_size and the per-worker batch must be >= 2")
        return self
