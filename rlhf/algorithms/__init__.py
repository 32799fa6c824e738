"""Pure tensor functions of RL and preference training: tensors and masks in, `(value,
metrics)` out, explicit scalar hyper-parameters. No Ray, vLLM, DeepSpeed or I/O here.
Formulas, papers and which recipe uses what: docs/algorithms.md."""

from rlhf.algorithms.advantages import ADVANTAGE_ESTIMATORS, get_advantage_estimator, register_advantage
from rlhf.algorithms.aggregation import AGG_MODES, aggregate_loss
from rlhf.algorithms.filtering import groups_with_signal
from rlhf.algorithms.kl import KL_ESTIMATORS, AdaptiveKLController, FixedKLController, kl_estimate
from rlhf.algorithms.logprobs import entropy_from_logits, token_logprobs
from rlhf.algorithms.masked import masked_mean, masked_sum, masked_var, masked_whiten
from rlhf.algorithms.objective import PolicyLossSettings, rl_objective
from rlhf.algorithms.policy_loss import (IS_LEVELS, IS_MODES, POLICY_LOSSES, get_policy_loss, ppo_policy_loss,
                                         register_policy_loss, truncated_is_weights)
from rlhf.algorithms.preference import DPO_LOSS_TYPES, bradley_terry_loss, dpo_loss
from rlhf.algorithms.choices import check_choice
from rlhf.algorithms.shaping import overlong_penalty
from rlhf.algorithms.value_loss import value_loss

__all__ = [
    "ADVANTAGE_ESTIMATORS", "AGG_MODES", "DPO_LOSS_TYPES", "IS_LEVELS", "IS_MODES", "KL_ESTIMATORS", "POLICY_LOSSES",
    "AdaptiveKLController", "FixedKLController", "PolicyLossSettings", "aggregate_loss", "bradley_terry_loss",
    "check_choice", "dpo_loss", "entropy_from_logits", "get_advantage_estimator", "get_policy_loss",
    "groups_with_signal", "kl_estimate", "masked_mean", "masked_sum", "masked_var", "masked_whiten", "overlong_penalty",
    "ppo_policy_loss", "register_advantage", "register_policy_loss", "rl_objective", "token_logprobs",
    "truncated_is_weights", "value_loss",
]
