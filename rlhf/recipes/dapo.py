"""DAPO: Decoupled Clip and Dynamic sAmpling Policy Optimization (Yu et al. 2025, arXiv 2503.14476).

    python -m rlhf.recipes.dapo [--config FILE.yaml] [key=value ...]     (--help lists every key)

What makes it DAPO (the paper's sections), all in `rlhf.loops.rl` + `rlhf.algorithms`:
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

from rlhf.config import RLConfig, recipe_defaults


DEFAULTS = [
    "algorithm.adv_estimator=grpo",
    "algorithm.eps_low=0.2",
    "algorithm.eps_high=0.28",
    "algorithm.loss_agg=token-mean",
    "algorithm.kl_coef=0.0",
    "algorithm.dynamic_sampling.enabled=true",
    "algorithm.overlong.shaping=true",
    "algorithm.overlong.cache_len=8",
    # sizes for the built-in task on a laptop CPU (a tiny model; override for real runs)
    "data.task=carry_addition",  # three in four problems carry: the student's slips leave RL room to show
    "trainer.lr=5e-5",
    "rollout.n=8",
    "rollout.prompts_per_step=16",
    "rollout.gen_prompts=24",  # dynamic sampling draws more prompts than it keeps
    "rollout.max_new_tokens=40",  # worked answers are <= 28 tokens
    "run.steps=30",
    "run.eval_every=10",
    "data.num_eval=400",  # of the 467 held-out problems: a before/after difference with little noise
]


def dapo_defaults() -> RLConfig:
    return recipe_defaults(RLConfig, DEFAULTS)


def main(argv: list[str] | None = None) -> dict:
    from rlhf.loops.rl_run import run_rl
    from rlhf.startup.cli import run_recipe

    return run_recipe("dapo", dapo_defaults(), lambda cfg: run_rl(cfg, "dapo"), argv)


if __name__ == "__main__":
    main()
