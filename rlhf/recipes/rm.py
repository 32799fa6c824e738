"""Reward modelling: a scalar head on the policy's body, trained with the Bradley-Terry loss
-log sigma(r(chosen) - r(rejected)) on preference pairs.

    python -m rlhf.recipes.rm [--config FILE.yaml] [key=value ...]       (--help lists every key)

Data: `data.train` / `data.eval` with chosen/rejected columns (`data.chosen_key`,
`data.rejected_key`) holding answers (with a `data.prompt_key` column), chat message lists, or
whole Anthropic-HH transcripts; empty: built-in pairs of the addition task (a correct versus
a wrong worked sum). Reports held-out pairwise accuracy (r(chosen) > r(rejected)) and margin;
saves the model to <run dir>/reward_model, ready for `reward.model=<that dir>` in the RL
recipes and `critic.init=<that dir>` in PPO.
"""

from __future__ import annotations

from tqdm import tqdm

from rlhf.config import RLConfig


def rm_defaults() -> RLConfig:
    """Embedded default: the body is the warm-started tiny policy (cached), the head learns to
    tell a correct worked sum from a wrong one."""
    cfg = RLConfig()
    t = cfg.train
    t.steps, t.lr, t.warmup_steps, t.batch_size, t.micro_batch_size, t.eval_every = 150, 3e-4, 15, 32, 32, 50
    t.packing = False
    return cfg


def run_rm(cfg) -> dict:
    from rlhf.actors.reward_model import RewardModelTrainer
    from rlhf.recipes.base_model import base_model
    from rlhf.recipes.roles import create_trainers
    from rlhf.recipes.supervised import (Sampler, optim_settings, pair_micro_batches, pair_values, preference_pairs,
                                         supervised_run)
    from rlhf.recipes.warmstart import warm_start

    path, tok = base_model(cfg)
    train, _, _ = preference_pairs(cfg, "train", tok)
    held, _, _ = preference_pairs(cfg, "eval", tok)
    held = held[:cfg.train.num_eval]
    t, world = cfg.train, cfg.trainer.num_workers
    per_rank = t.batch_size // world
    micro = min(t.micro_batch_size, per_rank)
    with supervised_run(cfg, "rm", needed_cpus=world + 0.5) as (run_dir, tracker, summary):
        body = warm_start(cfg, path, tok)
        trainers = create_trainers(cfg, body, optim_settings(cfg, world, micro, max(1, per_rank // micro), t.lr,
                                                             t.warmup_steps, t.steps),
                                   cls=RewardModelTrainer, name="reward_model")
        try:
            def evaluate(step: int) -> dict:
                chosen, rejected = pair_values(trainers, "rewards", held, micro, tok.pad_token_id)
                record = {"eval/pair_accuracy": float((chosen > rejected).float().mean()),
                          "eval/margin": float((chosen - rejected).mean()), "step": step}
                tracker.log(record)
                return record

            before = after = evaluate(0)
            sampler = Sampler(len(train), per_rank * world, cfg.run.seed)
            for step in tqdm(range(1, t.steps + 1), desc="rm", disable=not cfg.run.progress):
                shards = pair_micro_batches([train[i] for i in sampler.next()], world, micro, tok.pad_token_id,
                                            t.packing, t.max_len)
                metrics = trainers.scatter(lambda a, mbs: a.train_pairs.remote(mbs, per_rank * world), shards)
                tracker.log({"train/loss": sum(m["rm/loss"] for m in metrics) / world,
                             "train/accuracy": sum(m["rm/accuracy"] for m in metrics) / world, "step": step})
                if step % t.eval_every == 0 or step == t.steps:
                    after = evaluate(step)
            trainers.each(lambda a: a.save_pretrained.remote(str(run_dir / "reward_model")))
        finally:
            trainers.kill()
        summary |= {"steps": t.steps, "pair_accuracy_before": before["eval/pair_accuracy"],
                    "pair_accuracy_after": after["eval/pair_accuracy"], "margin_before": before["eval/margin"],
                    "margin_after": after["eval/margin"], "reward_model_path": str(run_dir / "reward_model")}
    return summary


def main(argv: list[str] | None = None) -> dict:
    from rlhf.recipes.driver import cli

    return cli("rm", rm_defaults(), argv, run=run_rm)


if __name__ == "__main__":
    main()
