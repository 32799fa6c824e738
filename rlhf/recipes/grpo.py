"""GRPO: Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300).

    python -m rlhf.recipes.grpo [--config FILE.yaml] [key=value ...]     (--help lists every key)

The same loop as DAPO (`rlhf.recipes.rl`) with GRPO's choices (eq. 3):
- symmetric clip eps = 0.2;
- advantages (r - mean_group) / (std_group + eps) (outcome supervision, section 4.1.2);
- per-sequence token mean, then mean over sequences (`seq-mean-token-mean`);
- KL to the frozen reference as a loss term, the unbiased k3 estimator (eq. 4), beta = 0.04.
No dynamic sampling, no overlong shaping.
"""

from __future__ import annotations

from rlhf.config import RLConfig
from rlhf.recipes.dapo import embedded_defaults


def grpo_defaults() -> RLConfig:
    cfg = RLConfig()
    a = cfg.algorithm
    a.adv_estimator, a.eps_low, a.eps_high, a.loss_agg = "grpo", 0.2, 0.2, "seq-mean-token-mean"
    a.kl_coef, a.kl_estimator = 0.04, "k3"
    embedded_defaults(cfg)
    cfg.rollout.gen_prompts = cfg.rollout.prompts_per_step
    return cfg


def main(argv: list[str] | None = None) -> dict:
    from rlhf.recipes.driver import cli

    return cli("grpo", grpo_defaults(), argv)


if __name__ == "__main__":
    main()
