"""KL estimators (Schulman 2020, "Approximating KL divergence") and KL-coefficient controllers."""

from __future__ import annotations

import torch

from rlhf.algorithms.choices import check_choice

KL_ESTIMATORS = ("k1", "k2", "k3")

# exp() of a log-ratio beyond this is far past any clamp: bound it before exp to avoid inf
_MAX_LOG_RATIO = 20.0


def kl_estimate(logprobs_BR: torch.Tensor, ref_logprobs_BR: torch.Tensor, kind: str,
                clamp: float = 10.0) -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) on tokens sampled from pi (Schulman 2020), with
    log r = log pi_ref - log pi:
        k1 = -log r                  unbiased, high variance, can be negative; PPO's per-token
                                     reward penalty (Ziegler et al. 2019; Ouyang et al. 2022)
        k2 = (log r)^2 / 2           biased, low variance, >= 0
        k3 = r - 1 - log r           unbiased, low variance, >= 0; GRPO's loss term
                                     (DeepSeekMath, Shao et al. 2024, eq. 4), clamped to
                                     [-clamp, clamp] because exp(log r) explodes on rare tokens.
    float32 kl_BR, differentiable with respect to logprobs_BR (mask it when aggregating)."""
    check_choice("KL estimator", kind, KL_ESTIMATORS)
    log_r_BR = ref_logprobs_BR.float() - logprobs_BR.float()
    if kind == "k1":
        return -log_r_BR
    if kind == "k2":
        return 0.5 * log_r_BR ** 2
    log_r_BR = log_r_BR.clamp(-_MAX_LOG_RATIO, _MAX_LOG_RATIO)
    return (torch.exp(log_r_BR) - 1 - log_r_BR).clamp(-clamp, clamp)


class FixedKLController:
    """A constant KL coefficient, with the same interface as AdaptiveKLController."""

    def __init__(self, coef: float):
        self.value = float(coef)

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


class AdaptiveKLController:
    """Ziegler et al. 2019 ("Fine-tuning language models from human preferences"), eq. 2:
        e = clip(KL / target - 1, -0.2, 0.2),   beta <- beta * (1 + e * n_steps / horizon),
    i.e. K_beta = n_steps / horizon as in their code: beta grows while the KL is above target
    and shrinks while below, by at most 20% per `horizon` steps."""

    def __init__(self, init_coef: float, target: float, horizon: int):
        if not (target > 0 and horizon > 0):
            raise ValueError(f"need target > 0 and horizon > 0, got target={target}, horizon={horizon}")
        self.value, self.target, self.horizon = float(init_coef), float(target), horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = max(-0.2, min(0.2, current_kl / self.target - 1))
        self.value *= 1 + error * n_steps / self.horizon


def kl_shaped_rewards(scores_B: torch.Tensor, kl_BR: torch.Tensor, mask_BR: torch.Tensor, beta: float) -> torch.Tensor:
    """PPO's per-token rewards (Ziegler et al. 2019; Ouyang et al. 2022): r_t = -beta * KL_t on
    every response token, plus the sequence score on the last one."""
    keep = mask_BR > 0
    rewards = torch.where(keep, -beta * kl_BR, 0.0)
    positions = torch.arange(mask_BR.shape[1]).expand_as(mask_BR)
    last = torch.where(keep, positions, -1).max(1).values
    has = last >= 0
    rewards[has.nonzero(as_tuple=True)[0], last[has]] += scores_B[has]
    return rewards
