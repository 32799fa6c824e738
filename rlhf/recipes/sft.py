"""Supervised fine-tuning: token-level cross-entropy on response tokens only.

    python -m rlhf.recipes.sft [--config FILE.yaml] [key=value ...]      (--help lists every key)

Data: `data.train` / `data.eval` files with prompt and response columns (`data.prompt_key`,
`data.response_key`; GSM8K: question/answer, MATH: problem/solution) or chat `messages`
(the last assistant turn is the target); empty: the built-in addition task. Examples are
packed end to end into micro-batches of `trainer.max_tokens_per_micro_batch` tokens
(`trainer.packing`), attention kept within each.
Every `run.eval_every` steps: held-out loss and, where the rows have prompts and answers,
greedy task accuracy scored by `eval.fns`. Writes metrics.jsonl, curves.png, summary.json
(eval loss and accuracy before/after) and the model to <run dir>/policy.
The loop is `rlhf.loops.supervised` with `rlhf.loops.supervised_tasks.SFTTask`.
"""

from __future__ import annotations

from rlhf.config import SFTConfig, recipe_defaults


DEFAULTS = [
    "trainer.lr=3e-3",
    "trainer.warmup_steps=30",
    "trainer.batch_size=64",
    "run.steps=300",
    "run.eval_every=100",
    "data.num_eval=200",
    "eval.max_new_tokens=40",
]


def sft_defaults() -> SFTConfig:
    """Embedded default: the tiny model learns the built-in task's worked sums from scratch."""
    return recipe_defaults(SFTConfig, DEFAULTS)


def main(argv: list[str] | None = None) -> dict:
    from rlhf.loops.supervised import run_supervised
    from rlhf.loops.supervised_tasks import SFTTask
    from rlhf.startup.cli import run_recipe

    return run_recipe("sft", sft_defaults(), lambda cfg: run_supervised(cfg, SFTTask()), argv)


if __name__ == "__main__":
    main()
