"""Supervised fine-tuning: token-level cross-entropy on response tokens only.

    python -m rlhf.recipes.sft [--config FILE.yaml] [key=value ...]      (--help lists every key)

Data: `data.train` / `data.eval` files with prompt and response columns (`data.prompt_key`,
`data.response_key`; GSM8K: question/answer, MATH: problem/solution) or chat `messages`
(the last assistant turn is the target); empty: the built-in addition task. Examples are
packed into rows of `train.max_len` tokens (`train.packing`), attention kept within each.
Every `train.eval_every` steps: held-out loss and, where the rows have prompts and answers,
greedy task accuracy scored by `reward.eval_fns`. Writes metrics.jsonl, curves.png,
summary.json (eval loss and accuracy before/after) and the model to <run dir>/policy.
"""

from __future__ import annotations

from tqdm import tqdm

from rlhf.config import RLConfig


def sft_defaults() -> RLConfig:
    """Embedded default: the tiny model learns the built-in task's worked sums from scratch."""
    cfg = RLConfig()
    cfg.warmstart.steps = 0
    t = cfg.train
    t.steps, t.lr, t.warmup_steps, t.batch_size, t.max_len, t.eval_every = 300, 3e-3, 30, 64, 256, 100
    cfg.data.num_eval = 200
    cfg.rollout.max_new_tokens = 40
    return cfg


def run_sft(cfg) -> dict:
    from rlhf.recipes.base_model import base_model
    from rlhf.recipes.roles import create_trainers
    from rlhf.recipes.supervised import (Sampler, TaskAccuracy, eval_sft_loss, optim_settings, sft_examples,
                                         sft_shards, supervised_run)

    path, tok = base_model(cfg)
    train, _, _ = sft_examples(cfg, "train", tok)
    held, eval_rows, eval_source = sft_examples(cfg, "eval", tok)
    held = held[:cfg.train.num_eval]
    t, world = cfg.train, cfg.trainer.num_workers
    per_rank = t.batch_size // world
    micro = per_rank if t.packing else min(t.micro_batch_size, per_rank)  # a packed shard is one forward
    with supervised_run(cfg, "sft", needed_cpus=world + 1.5) as (run_dir, tracker, summary):
        trainers = create_trainers(cfg, path, optim_settings(cfg, world, micro, max(1, per_rank // micro), t.lr,
                                                             t.warmup_steps, t.steps), lora=True)
        accuracy = TaskAccuracy(cfg, tok, eval_rows, eval_source, path, trainers) \
            if TaskAccuracy.possible(cfg, eval_rows) else None
        try:
            def evaluate(step: int) -> dict:
                record = {"eval/loss": eval_sft_loss(trainers, held, tok.pad_token_id), "step": step}
                if accuracy is not None:
                    record["eval/accuracy"] = accuracy()
                tracker.log(record)
                return record

            before = evaluate(0)
            sampler = Sampler(len(train), per_rank * world, cfg.run.seed)
            after = before
            for step in tqdm(range(1, t.steps + 1), desc="sft", disable=not cfg.run.progress):
                shards, n_tok = sft_shards([train[i] for i in sampler.next()], world, tok.pad_token_id,
                                           t.packing, t.max_len)
                metrics = trainers.scatter(lambda a, s: a.train_sft.remote(s, n_tok), shards)
                tracker.log({"train/loss": sum(m["sft/loss"] for m in metrics),
                             "train/grad_norm": metrics[0]["sft/grad_norm"], "step": step})
                if step % t.eval_every == 0 or step == t.steps:
                    after = evaluate(step)
            trainers.each(lambda a: a.save_pretrained.remote(str(run_dir / "policy")))
        finally:
            trainers.kill()
            if accuracy is not None:
                accuracy.kill()
        summary |= {"steps": t.steps, "eval_loss_before": before["eval/loss"], "eval_loss_after": after["eval/loss"],
                    "policy_path": str(run_dir / "policy")}
        if accuracy is not None:
            summary |= {"accuracy_before": before["eval/accuracy"], "accuracy_after": after["eval/accuracy"]}
    return summary


def main(argv: list[str] | None = None) -> dict:
    from rlhf.recipes.driver import cli

    return cli("sft", sft_defaults(), argv, run=run_sft)


if __name__ == "__main__":
    main()
