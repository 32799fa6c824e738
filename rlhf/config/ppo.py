"""The config tree of PPO: the RL tree plus the critic and PPO's KL-in-reward keys."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from rlhf.config.base import BaseConfig, ConfigError, _f, check_choice
from rlhf.config.rl import AlgorithmConfig, RLConfig


@dataclass
class PPOAlgorithmConfig(AlgorithmConfig):
    adv_estimator: str = _f("gae", "advantage estimator over the critic's values (see rlhf.algorithms.advantages)")
    kl_penalty: str = _f("reward", "where the KL to the reference goes: reward (per token, PPO) or loss as well")
    kl_controller: str = _f("fixed", "KL coefficient: fixed, or adaptive towards kl_target (Ziegler et al. 2019)")
    kl_target: float = _f(0.1, "adaptive controller: target KL per sequence")
    kl_horizon: int = _f(10000, "adaptive controller: horizon in samples")
    gamma: float = _f(1.0, "discount of the GAE returns")
    lam: float = _f(0.95, "GAE lambda")


@dataclass
class CriticConfig:
    init: Optional[str] = _f(None, "critic initialisation: a reward model directory; empty: the policy")
    lr: float = _f(1e-4, "critic learning rate")
    value_clip: Optional[float] = _f(0.2, "clip of the value change per update (empty: no clipping)")
    warmup_steps: int = _f(0, "critic learning-rate warmup steps")


@dataclass
class PPOConfig(RLConfig):
    """PPO: a learned critic, GAE, the KL to the reference in the reward."""

    algorithm: PPOAlgorithmConfig = _f(PPOAlgorithmConfig, "advantages (GAE), losses and the KL penalty")
    critic: CriticConfig = _f(CriticConfig, "the value model")

    MOVED = BaseConfig.MOVED

    def uses_critic(self) -> bool:
        return True

    def _check_estimator(self, needs_critic: bool) -> None:
        a = self.algorithm
        if not needs_critic:
            raise ConfigError(f"algorithm.adv_estimator={a.adv_estimator} does not use the critic that PPO trains: "
                              f"use algorithm.adv_estimator=gae, or rlhf.recipes.grpo for {a.adv_estimator}")
        if a.kl_coef <= 0:
            raise ConfigError(f"algorithm.kl_coef={a.kl_coef}: PPO puts the KL to the reference in the reward and "
                              "needs kl_coef > 0")
        check_choice("algorithm.kl_penalty", a.kl_penalty, ("loss", "reward"))
        check_choice("algorithm.kl_controller", a.kl_controller, ("fixed", "adaptive"))
