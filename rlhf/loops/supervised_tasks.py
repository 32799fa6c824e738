"""What SFT, reward modelling and DPO each put into the supervised loop: their data, their
trainer's step, their held-out metrics."""

from __future__ import annotations

from dataclasses import asdict

import ray
import torch

from rlhf.data.examples import pair_micro_batches, preference_pairs, sft_examples, sft_shards
from rlhf.data.sequences import pad_batch
from rlhf.loops.evaluation import TaskAccuracy
from rlhf.loops.warmstart import warm_start
from rlhf.startup.roles import create_reference, create_trainers


def _mean(metrics: list[dict], key: str) -> float:
    return sum(m[key] for m in metrics) / len(metrics)


class SFTTask:
    """Token-mean cross-entropy on response tokens; held-out loss, and task accuracy where the
    held-out rows have prompts and answers."""

    name, output, summary_names = "sft", "policy", {"eval/loss": "eval_loss"}

    def load(self, cfg, tokenizer) -> list:
        self.cfg, self.pad_id = cfg, tokenizer.pad_token_id
        train, _, _ = sft_examples(cfg.data, "train", tokenizer)
        held, self.eval_rows, self.eval_source = sft_examples(cfg.data, "eval", tokenizer)
        self.held = held[:cfg.data.num_eval]
        self.trainers = self.accuracy = None
        return train

    def cpus(self, cfg) -> float:
        return cfg.trainer.num_workers + 1.5  # + a generator and a reward actor for task accuracy

    def start(self, cfg, base_path, tokenizer, optim, layout) -> None:
        self.trainers = create_trainers(cfg, base_path, optim, lora=True)
        if TaskAccuracy.possible(cfg, self.eval_rows):
            self.accuracy = TaskAccuracy(cfg, tokenizer, self.eval_rows, self.eval_source, base_path, self.trainers)

    def train_step(self, items: list) -> dict:
        t = self.cfg.trainer
        shards, n_tok = sft_shards(items, t.num_workers, self.pad_id, t.packing, t.max_len)
        metrics = self.trainers.scatter(lambda a, s: a.train_sft.remote(s, n_tok), shards)
        return {"train/loss": sum(m["sft/loss"] for m in metrics), "train/grad_norm": metrics[0]["sft/grad_norm"],
                "train/skipped_steps": metrics[0]["sft/skipped_steps"]}

    def evaluate(self) -> dict:
        record = {"eval/loss": self._held_out_loss()}
        if self.accuracy is not None:
            record["eval/accuracy"] = self.accuracy()
        return record

    def _held_out_loss(self) -> float:
        """Token-mean loss of the trainers' current weights (every rank takes part: ZeRO-3 gathers
        parameters collectively; ranks without examples of their own score a duplicate)."""
        examples, world = self.held, len(self.trainers)
        k = -(-len(examples) // world)
        parts = self.trainers.scatter(lambda a, b: a.sft_eval.remote(b), [
            pad_batch(examples[r * k:(r + 1) * k] or examples[:1], self.pad_id) for r in range(world)])
        parts = parts[:len(examples)]
        return sum(n for n, _ in parts) / max(1, sum(c for _, c in parts))

    def save(self, path: str) -> None:
        self.trainers.each(lambda a: a.save_pretrained.remote(path))

    def kill(self) -> None:
        for group in (self.trainers, self.accuracy):
            if group is not None:
                group.kill()


class RewardModelTask:
    """Bradley-Terry on preference pairs over a scalar head on the (warm-started) policy body;
    held-out pairwise accuracy and margin."""

    name, output, summary_names = "rm", "reward_model", {}

    def load(self, cfg, tokenizer) -> list:
        self.cfg, self.pad_id = cfg, tokenizer.pad_token_id
        train, _, _ = preference_pairs(cfg.data, "train", tokenizer)
        held, self.eval_rows, self.eval_source = preference_pairs(cfg.data, "eval", tokenizer)
        self.held = held[:cfg.data.num_eval]
        self.trainers = self.reference = self.accuracy = None
        return train

    def cpus(self, cfg) -> float:
        return cfg.trainer.num_workers + 0.5

    def start(self, cfg, base_path, tokenizer, optim, layout) -> None:
        from rlhf.actors.reward_model import RewardModelTrainer

        self.layout = layout
        body = warm_start(cfg, base_path, tokenizer)
        self.trainers = create_trainers(cfg, body, optim, cls=RewardModelTrainer, name="reward_model")

    def _micro_batches(self, items: list) -> list[list[dict]]:
        t = self.cfg.trainer
        return pair_micro_batches(items, t.num_workers, self.layout.micro, self.pad_id, t.packing, t.max_len)

    def train_step(self, items: list) -> dict:
        n = len(items)
        metrics = self.trainers.scatter(lambda a, mbs: a.train_pairs.remote(mbs, n), self._micro_batches(items))
        return {"train/loss": _mean(metrics, "rm/loss"), "train/accuracy": _mean(metrics, "rm/accuracy"),
                "train/skipped_steps": metrics[0]["rm/skipped_steps"]}

    def evaluate(self) -> dict:
        chosen, rejected = pair_values(self.trainers, "rewards", self.held, self.layout.micro, self.pad_id)
        return {"eval/pair_accuracy": float((chosen > rejected).float().mean()),
                "eval/margin": float((chosen - rejected).mean())}

    def save(self, path: str) -> None:
        self.trainers.each(lambda a: a.save_pretrained.remote(path))

    def kill(self) -> None:
        for group in (self.trainers, self.reference, self.accuracy):
            if group is not None:
                group.kill()


class DPOTask(RewardModelTask):
    """DPO against a frozen reference (the warm-started policy); held-out preference accuracy,
    implicit-reward accuracy and margin, and task accuracy where the rows allow it."""

    name, output, summary_names = "dpo", "policy", {}

    def cpus(self, cfg) -> float:
        return cfg.trainer.num_workers + 2.5  # + the reference, a generator and a reward actor

    def start(self, cfg, base_path, tokenizer, optim, layout) -> None:
        self.layout = layout
        policy = warm_start(cfg, base_path, tokenizer)
        self.trainers = create_trainers(cfg, policy, optim, lora=True)
        self.reference = create_reference(cfg, policy)
        if TaskAccuracy.possible(cfg, self.eval_rows):
            self.accuracy = TaskAccuracy(cfg, tokenizer, self.eval_rows, self.eval_source, policy, self.trainers)
        self.ref_held = pair_values(self.reference, "sequence_logps", self.held, layout.micro, self.pad_id)

    def train_step(self, items: list) -> dict:
        shards = self._micro_batches(items)
        ref = self.reference.actors[0]
        ref_logps = [ray.get([ref.sequence_logps.remote(mb) for mb in mbs]) for mbs in shards]
        n, dpo = len(items), asdict(self.cfg.dpo)
        metrics = self.trainers.scatter(lambda a, x: a.train_dpo.remote(x[0], x[1], n, dpo),
                                        list(zip(shards, ref_logps)))
        return {f"train/{k[4:]}": _mean(metrics, k) for k in metrics[0]}

    def evaluate(self) -> dict:
        chosen, rejected = pair_values(self.trainers, "sequence_logps", self.held, self.layout.micro, self.pad_id)
        ref_chosen, ref_rejected = self.ref_held
        margin = self.cfg.dpo.beta * ((chosen - ref_chosen) - (rejected - ref_rejected))
        record = {"eval/pair_accuracy": float((chosen > rejected).float().mean()),
                  "eval/reward_accuracy": float((margin > 0).float().mean()), "eval/margin": float(margin.mean())}
        if self.accuracy is not None:
            record["eval/accuracy"] = self.accuracy()
        return record


def pair_values(group, method: str, pairs: list, micro: int, pad_id: int) -> tuple:
    """`method` (per-example values: rewards, summed log-probs) of the chosen and rejected
    sides of `pairs` on every rank of `group` -> (chosen [N], rejected [N]); the last
    len(pairs) % world pairs are left out so every rank holds as many."""
    world = len(group)
    pairs = pairs[:len(pairs) // world * world]
    per_rank = pair_micro_batches(pairs, world, micro, pad_id)
    refs = [[getattr(a, method).remote(mb) for mb in mbs] for a, mbs in zip(group.actors, per_rank)]
    chosen, rejected = [], []
    for rank_refs in refs:
        for values in ray.get(rank_refs):
            k = len(values) // 2
            chosen.append(values[:k])
            rejected.append(values[k:])
    return torch.cat(chosen), torch.cat(rejected)
