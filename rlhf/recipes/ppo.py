"""PPO with a learned critic, GAE and a KL penalty in the reward (Ouyang et al. 2022).

    python -m rlhf.recipes.ppo [--config FILE.yaml] [key=value ...]      (--help lists every key)

The step is `rlhf.recipes.ppo_loop.PPOLoop` on the shared RL loop: the reward is the rule
reward (`reward.fns`), a trained reward model (`reward.model=<dir from rlhf.recipes.rm>`), or
both; the critic starts from `critic.init` (a reward model) or the policy; `trainer.epochs`
passes over `trainer.mini_batches` mini-batches per step. Checkpoints, resume, restarts and
logging are the RL driver's (docs/operations.md). The critic is not checkpointed yet: a
resumed PPO run restarts it from `critic.init`.
"""

from __future__ import annotations

from rlhf.config import RLConfig


def ppo_defaults() -> RLConfig:
    """Embedded default: the warm-started tiny policy on the addition task, one sample per prompt."""
    cfg = RLConfig()
    a = cfg.algorithm
    a.adv_estimator, a.kl_penalty, a.kl_coef, a.kl_estimator = "gae", "reward", 0.02, "k1"
    a.loss_agg, a.eps_low, a.eps_high, a.gamma, a.lam = "token-mean", 0.2, 0.2, 1.0, 0.95
    cfg.rollout.n, cfg.rollout.prompts_per_step, cfg.rollout.gen_prompts, cfg.rollout.max_new_tokens = 1, 64, 64, 40
    t = cfg.trainer
    t.lr, t.mini_batches, t.epochs, t.micro_batch_size = 2e-5, 2, 2, 32
    cfg.critic.lr = 1e-3  # the value head starts from scratch
    cfg.run.steps = 30
    return cfg


def main(argv: list[str] | None = None) -> dict:
    from rlhf.recipes.driver import cli, run_rl
    from rlhf.recipes.ppo_loop import PPOLoop

    return cli("ppo", ppo_defaults(), argv, run=lambda cfg: run_rl(cfg, "ppo", loop_cls=PPOLoop))


if __name__ == "__main__":
    main()
