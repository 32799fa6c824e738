"""DAPO: Decoupled Clip and Dynamic sAmpling Policy Optimization (Yu et al. 2025, arXiv 2503.14476).

    python -m rlhf.recipes.dapo [--config FILE.yaml] [key=value ...]     (--help lists every key)

What makes it DAPO (the paper's sections), all in `rlhf.recipes.rl` + `rlhf.algorithms`:
- Clip-higher (eq. 10): eps_low = 0.2, eps_high = 0.28.
- Dynamic sampling (eq. 11): groups whose rewards are all equal are dropped and more are
  generated until the batch holds `rollout.prompts_per_step` groups.
- Token-level policy-gradient loss (eq. 12): `token-mean` aggregation over the batch.
- Overlong reward shaping (eq. 13) over the last `overlong.cache_len` tokens before
  `rollout.max_new_tokens`; overlong filtering optional (`algorithm.overlong.filter=true`).
- No KL term, so no reference model.
Departures: when `dynamic_sampling.max_gen_batches` generation batches still leave the batch
short, dropped groups fill it with their loss masked out (the paper keeps sampling).
With no arguments it runs the embedded default on CPU: a tiny Qwen2 learns 2-digit addition.
"""

from __future__ import annotations

from rlhf.config import RLConfig


def dapo_defaults() -> RLConfig:
    cfg = RLConfig()
    a = cfg.algorithm
    a.adv_estimator, a.eps_low, a.eps_high, a.loss_agg, a.kl_coef = "grpo", 0.2, 0.28, "token-mean", 0.0
    a.dynamic_sampling.enabled = True
    a.overlong.shaping = True
    embedded_defaults(cfg)
    return cfg


def embedded_defaults(cfg: RLConfig) -> None:
    """Sizes for the built-in task on a laptop CPU (a tiny model; override for real runs)."""
    cfg.trainer.lr = 5e-5
    cfg.rollout.n, cfg.rollout.prompts_per_step, cfg.rollout.gen_prompts = 8, 16, 24
    cfg.rollout.max_new_tokens = 40  # worked answers are <= 28 tokens
    cfg.algorithm.overlong.cache_len = 8
    cfg.run.steps = 30


def main(argv: list[str] | None = None) -> dict:
    from rlhf.recipes.driver import cli

    return cli("dapo", dapo_defaults(), argv)


if __name__ == "__main__":
    main()
