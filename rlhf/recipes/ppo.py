"""PPO with a learned critic, GAE and a KL penalty in the reward (Ouyang et al. 2022).

    python -m rlhf.recipes.ppo [--config FILE.yaml] [key=value ...]      (--help lists every key)

The step is `rlhf.loops.ppo.PPOLoop` on the shared RL loop:
- per-token reward -beta * KL(pi_old || pi_ref) (k1), plus the sequence score at the last
  token (Stiennon et al. 2020); beta fixed or adaptive (Ziegler et al. 2019);
- advantages by GAE over the critic's values (Schulman et al. 2016), whitened over the batch;
- the clipped surrogate (Schulman et al. 2017) and the clipped value loss, over
  `trainer.epochs` passes of `trainer.mini_batches` mini-batches per step.
The reward is the rule reward (`reward.fns`), a trained reward model (`reward.model=<dir from
rlhf.recipes.rm>`), or both; the critic starts from `critic.init` (a reward model) or the policy.
Departures: one sample per prompt by default (`rollout.n=1`); the critic is not checkpointed
yet, so a resumed run restarts it from `critic.init`.
"""

from __future__ import annotations

from rlhf.config import PPOConfig, recipe_defaults


DEFAULTS = [
    "algorithm.adv_estimator=gae",
    "algorithm.kl_penalty=reward",
    "algorithm.kl_coef=0.02",
    "algorithm.kl_estimator=k1",
    "algorithm.loss_agg=token-mean",
    "algorithm.eps_low=0.2",
    "algorithm.eps_high=0.2",
    "algorithm.gamma=1.0",
    "algorithm.lam=0.95",
    "rollout.n=1",
    "rollout.prompts_per_step=64",
    "rollout.gen_prompts=64",
    "rollout.max_new_tokens=40",
    "trainer.lr=2e-5",
    "trainer.mini_batches=2",
    "trainer.epochs=2",
    "critic.lr=1e-3",  # the value head starts from scratch
    "run.steps=30",
]


def ppo_defaults() -> PPOConfig:
    """Embedded default: the warm-started tiny policy on the addition task."""
    return recipe_defaults(PPOConfig, DEFAULTS)


def main(argv: list[str] | None = None) -> dict:
    from rlhf.loops.ppo import PPOLoop
    from rlhf.loops.rl_run import run_rl
    from rlhf.startup.cli import run_recipe

    return run_recipe("ppo", ppo_defaults(), lambda cfg: run_rl(cfg, "ppo", loop_cls=PPOLoop), argv)


if __name__ == "__main__":
    main()
