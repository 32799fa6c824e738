"""Reward modelling: a scalar head on the policy's body, trained with the Bradley-Terry loss
-log sigma(r(chosen) - r(rejected)) on preference pairs.

    python -m rlhf.recipes.rm [--config FILE.yaml] [key=value ...]       (--help lists every key)

Data: `data.train` / `data.eval` with chosen/rejected columns (`data.chosen_key`,
`data.rejected_key`) holding answers (with a `data.prompt_key` column), chat message lists, or
whole Anthropic-HH transcripts; empty: built-in pairs of the addition task (a correct versus
a wrong worked sum). Reports held-out pairwise accuracy (r(chosen) > r(rejected)) and margin;
saves the model to <run dir>/reward_model, ready for `reward.model=<that dir>` in the RL
recipes and `critic.init=<that dir>` in PPO. The body is warm-started (`warmstart.*`, cached).
The loop is `rlhf.loops.supervised` with `rlhf.loops.supervised_tasks.RewardModelTask`.
"""

from __future__ import annotations

from rlhf.config import RMConfig, recipe_defaults


DEFAULTS = [
    "trainer.lr=3e-4",
    "trainer.warmup_steps=15",
    "trainer.batch_size=32",
    "trainer.micro_batch_size=32",
    "trainer.packing=false",
    "run.steps=150",
    "run.eval_every=50",
    "data.num_eval=256",
]


def rm_defaults() -> RMConfig:
    """Embedded default: the body is the warm-started tiny policy (cached), the head learns to
    tell a correct worked sum from a wrong one."""
    return recipe_defaults(RMConfig, DEFAULTS)


def main(argv: list[str] | None = None) -> dict:
    from rlhf.loops.supervised import run_supervised
    from rlhf.loops.supervised_tasks import RewardModelTask
    from rlhf.startup.cli import run_recipe

    return run_recipe("rm", rm_defaults(), lambda cfg: run_supervised(cfg, RewardModelTask()), argv)


if __name__ == "__main__":
    main()
