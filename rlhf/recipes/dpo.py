"""Direct Preference Optimization (Rafailov et al. 2023): the policy learns from preference
pairs against a frozen reference, with no reward model and no sampling.

    python -m rlhf.recipes.dpo [--config FILE.yaml] [key=value ...]      (--help lists every key)

Data as for `rlhf.recipes.rm` (chosen/rejected; answers with a prompt column, message lists or
HH transcripts); empty: the built-in addition pairs. The reference actor scores each batch
once; the loss comes from `rlhf.algorithms.dpo_loss` (`dpo.loss_type`: sigmoid or ipo,
`dpo.beta`, `dpo.label_smoothing`). Held-out metrics: `eval/pair_accuracy` (the policy gives
the chosen answer the higher log-probability), the implicit-reward accuracy and margin
beta*[(log pi - log pi_ref)(chosen) - (log pi - log pi_ref)(rejected)], and, where the rows
hold prompts and answers, greedy task accuracy.
"""

from __future__ import annotations

from dataclasses import asdict

from tqdm import tqdm

from rlhf.config import RLConfig


def dpo_defaults() -> RLConfig:
    """Embedded default: the warm-started tiny policy (cached) learns to prefer correct sums."""
    cfg = RLConfig()
    t = cfg.train
    t.steps, t.lr, t.warmup_steps, t.batch_size, t.micro_batch_size, t.eval_every = 60, 1e-5, 6, 32, 32, 20
    t.num_eval = 200
    cfg.data.num_eval = 200
    cfg.rollout.max_new_tokens = 40
    return cfg


def run_dpo(cfg) -> dict:
    import ray

    from rlhf.recipes.base_model import base_model
    from rlhf.recipes.roles import create_reference, create_trainers
    from rlhf.recipes.supervised import (Sampler, TaskAccuracy, optim_settings, pair_micro_batches, pair_values,
                                         preference_pairs, supervised_run)
    from rlhf.recipes.warmstart import warm_start

    path, tok = base_model(cfg)
    train, _, _ = preference_pairs(cfg, "train", tok)
    held, eval_rows, eval_source = preference_pairs(cfg, "eval", tok)
    held = held[:cfg.train.num_eval]
    t, world, beta = cfg.train, cfg.trainer.num_workers, cfg.dpo.beta
    per_rank = t.batch_size // world
    micro = min(t.micro_batch_size, per_rank)
    with supervised_run(cfg, "dpo", needed_cpus=world + 2.5) as (run_dir, tracker, summary):
        policy = warm_start(cfg, path, tok)
        trainers = create_trainers(cfg, policy, optim_settings(cfg, world, micro, max(1, per_rank // micro), t.lr,
                                                               t.warmup_steps, t.steps), lora=True)
        reference = create_reference(cfg, policy)
        accuracy = TaskAccuracy(cfg, tok, eval_rows, eval_source, policy, trainers) \
            if TaskAccuracy.possible(cfg, eval_rows) else None
        try:
            ref_chosen, ref_rejected = pair_values(reference, "sequence_logps", held, micro, tok.pad_token_id)

            def evaluate(step: int) -> dict:
                chosen, rejected = pair_values(trainers, "sequence_logps", held, micro, tok.pad_token_id)
                margin = beta * ((chosen - ref_chosen) - (rejected - ref_rejected))
                record = {"eval/pair_accuracy": float((chosen > rejected).float().mean()),
                          "eval/reward_accuracy": float((margin > 0).float().mean()),
                          "eval/margin": float(margin.mean()), "step": step}
                if accuracy is not None:
                    record["eval/accuracy"] = accuracy()
                tracker.log(record)
                return record

            before = after = evaluate(0)
            sampler = Sampler(len(train), per_rank * world, cfg.run.seed)
            for step in tqdm(range(1, t.steps + 1), desc="dpo", disable=not cfg.run.progress):
                shards = pair_micro_batches([train[i] for i in sampler.next()], world, micro, tok.pad_token_id,
                                            t.packing, t.max_len)
                ref_ref = reference.actors[0]
                ref_logps = [ray.get([ref_ref.sequence_logps.remote(mb) for mb in mbs]) for mbs in shards]
                metrics = trainers.scatter(
                    lambda a, x: a.train_dpo.remote(x[0], x[1], per_rank * world, asdict(cfg.dpo)),
                    list(zip(shards, ref_logps)))
                tracker.log({f"train/{k[4:]}": sum(m[k] for m in metrics) / world for k in metrics[0]} | {"step": step})
                if step % t.eval_every == 0 or step == t.steps:
                    after = evaluate(step)
            trainers.each(lambda a: a.save_pretrained.remote(str(run_dir / "policy")))
        finally:
            for group in (trainers, reference):
                group.kill()
            if accuracy is not None:
                accuracy.kill()
        summary |= {"steps": t.steps, "policy_path": str(run_dir / "policy")}
        for key in ("pair_accuracy", "reward_accuracy", "margin", "accuracy"):
            if f"eval/{key}" in before:
                summary |= {f"{key}_before": before[f"eval/{key}"], f"{key}_after": after[f"eval/{key}"]}
    return summary


def main(argv: list[str] | None = None) -> dict:
    from rlhf.recipes.driver import cli

    return cli("dpo", dpo_defaults(), argv, run=run_dpo)


if __name__ == "__main__":
    main()
