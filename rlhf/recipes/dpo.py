"""Direct Preference Optimization (Rafailov et al. 2023): the policy learns from preference
pairs against a frozen reference, with no reward model and no sampling.

    python -m rlhf.recipes.dpo [--config FILE.yaml] [key=value ...]      (--help lists every key)

The loss (eq. 7): -log sigma(beta * [(log pi - log pi_ref)(chosen) - (log pi - log pi_ref)(rejected)]),
from `rlhf.algorithms.dpo_loss` (`dpo.loss_type`: sigmoid or ipo, `dpo.beta`,
`dpo.label_smoothing` for conservative DPO). Data as for `rlhf.recipes.rm` (chosen/rejected;
answers with a prompt column, message lists or HH transcripts); empty: the built-in addition
pairs. The reference is the warm-started policy (`warmstart.*`, cached) and scores each batch
once. Held-out metrics: `eval/pair_accuracy` (the policy gives the chosen answer the higher
log-probability), the implicit-reward accuracy and margin, and, where the rows hold prompts
and answers, greedy task accuracy (`eval.fns`).
The loop is `rlhf.loops.supervised` with `rlhf.loops.supervised_tasks.DPOTask`.
"""

from __future__ import annotations

from rlhf.config import DPOConfig, recipe_defaults


# Sizes for the built-in pairs on a laptop CPU (ORPO's and KTO's defaults use them too)
PAIR_SIZES = [
    "trainer.lr=1e-5",
    "trainer.warmup_steps=6",
    "trainer.batch_size=32",
    "trainer.micro_batch_size=32",
    "run.steps=60",
    "run.eval_every=20",
    "data.num_eval=200",
    "eval.max_new_tokens=40",
]
DEFAULTS = [
    "dpo.loss_type=sigmoid",
    *PAIR_SIZES,
]


def dpo_defaults() -> DPOConfig:
    """Embedded default: the warm-started tiny policy (cached) learns to prefer correct sums."""
    return recipe_defaults(DPOConfig, DEFAULTS)


def main(argv: list[str] | None = None) -> dict:
    from rlhf.loops.supervised import run_supervised
    from rlhf.loops.supervised_tasks import DPOTask
    from rlhf.startup.cli import run_recipe

    return run_recipe("dpo", dpo_defaults(), lambda cfg: run_supervised(cfg, DPOTask()), argv)


if __name__ == "__main__":
    main()
