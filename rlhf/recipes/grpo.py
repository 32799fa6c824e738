"""GRPO: Group Relative Policy Optimization (Shao et al. 2024, DeepSeekMath, arXiv 2402.03300).

    python -m rlhf.recipes.grpo [--config FILE.yaml] [key=value ...]     (--help lists every key)

The same loop as DAPO (`rlhf.loops.rl`) with GRPO's choices (eq. 3):
- symmetric clip eps = 0.2;
- advantages (r - mean_group) / (std_group + eps) (outcome supervision, section 4.1.2);
- per-sequence token mean, then mean over sequences (`seq-mean-token-mean`);
- KL to the frozen reference as a loss term, the unbiased k3 estimator (eq. 4), beta = 0.04.
No dynamic sampling, no overlong shaping.
"""

from __future__ import annotations

from rlhf.config import RLConfig, recipe_defaults


DEFAULTS = [
    "algorithm.adv_estimator=grpo",
    "algorithm.eps_low=0.2",
    "algorithm.eps_high=0.2",
    "algorithm.loss_agg=seq-mean-token-mean",
    "algorithm.kl_coef=0.04",
    "algorithm.kl_estimator=k3",
    # sizes for the built-in task on a laptop CPU (a tiny model; override for real runs)
    "trainer.lr=5e-5",
    "rollout.n=8",
    "rollout.prompts_per_step=16",
    "rollout.gen_prompts=16",
    "rollout.max_new_tokens=40",
    "run.steps=30",
]


def grpo_defaults() -> RLConfig:
    return recipe_defaults(RLConfig, DEFAULTS)


def main(argv: list[str] | None = None) -> dict:
    from rlhf.loops.rl_run import run_rl
    from rlhf.startup.cli import run_recipe

    return run_recipe("grpo", grpo_defaults(), lambda cfg: run_rl(cfg, "grpo"), argv)


if __name__ == "__main__":
    main()
