"""KL estimators (Schulman 2020, "Approximating KL divergence") and KL controllers."""

from __future__ import annotations

import torch

KL_ESTIMATORS = ("k1", "k2", "k3")


def kl_estimate(logprobs_BR: torch.Tensor, ref_logprobs_BR: torch.Tensor, kind: str = "k3",
                clamp: float = 10.0) -> torch.Tensor:
    """Per-token estimate of KL(pi || pi_ref) from samples of pi, with log r = log pi_ref - log pi:
    k1 = -log r (unbiased, high variance; PPO's reward penalty), k2 = (log r)^2 / 2,
    k3 = r - 1 - log r (unbiased, >= 0; GRPO's loss term, DeepSeekMath eq. 4), clamped."""
    if kind not in KL_ESTIMATORS:
        raise ValueError(f"unknown KL estimator {kind!r}; valid: {', '.join(KL_ESTIMATORS)}")
    log_r = ref_logprobs_BR.float() - logprobs_BR.float()
    if kind == "k1":
        return -log_r
    if kind == "k2":
        return 0.5 * log_r ** 2
    return (torch.exp(log_r.clamp(max=clamp)) - 1 - log_r).clamp(-clamp, clamp)


class FixedKLController:
    def __init__(self, coef: float):
        self.value = coef

    def update(self, current_kl: float, n_steps: int) -> None:
        pass


class AdaptiveKLController:
    """Ziegler et al. 2019, eq. 2: e = clip(KL / target - 1, -0.2, 0.2); beta *= 1 + e * n / horizon."""

    def __init__(self, init_coef: float, target: float, horizon: int):
        self.value, self.target, self.horizon = init_coef, target, horizon

    def update(self, current_kl: float, n_steps: int) -> None:
        error = max(-0.2, min(0.2, current_kl / self.target - 1))
        self.value *= 1 + error * n_steps / self.horizon
