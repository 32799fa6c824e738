"""What SFT, reward modelling and DPO each put into the supervised loop: their data, their
trainer's step, their held-out metrics."""

from __future__ import annotations

from dataclasses import asdict

import ray
import torch

from rlhf.algorithms.preference import implicit_rewards
from rlhf.data.examples import (kto_examples, kto_micro_batches, pair_micro_batches, preference_pairs, sft_examples,
                                sft_micro_batches)
from rlhf.data.sequences import pad_batch
from rlhf.loops.evaluation import TaskAccuracy
from rlhf.loops.warmstart import warm_start
from rlhf.startup.roles import create_reference, create_trainers


def _mean(metrics: list[dict], key: str) -> float:
    return sum(m[key] for m in metrics) / len(metrics)


class _Task:
    """What every task shares: its items of both splits (`examples`: sft_examples,
    preference_pairs, kto_examples), saving the trained model, stopping its actors."""

    examples = staticmethod(sft_examples)

    def load(self, cfg, tokenizer) -> list:
        self.cfg, self.pad_id = cfg, tokenizer.pad_token_id
        train, _, _ = self.examples(cfg.data, "train", tokenizer)
        held, self.eval_rows, self.eval_source = self.examples(cfg.data, "eval", tokenizer)
        self.held = held[:cfg.data.num_eval]
        self.trainers = self.reference = self.accuracy = None
        return train

    def save(self, path: str) -> None:
        self.trainers.each(lambda a: a.save_pretrained.remote(path))

    def kill(self) -> None:
        for group in (self.trainers, self.reference, self.accuracy):
            if group is not None:
                group.kill()


class SFTTask(_Task):
    """Token-mean cross-entropy on response tokens; held-out loss, and task accuracy where the
    held-out rows have prompts and answers."""

    name, output, summary_names = "sft", "policy", {"eval/loss": "eval_loss"}

    def cpus(self, cfg) -> float:
        return cfg.trainer.num_workers + 1.5  # + a generator and a reward actor for task accuracy

    def start(self, cfg, base_path, tokenizer, optim, layout) -> None:
        self.layout = layout
        self.trainers = create_trainers(cfg, base_path, optim, lora=True)
        if TaskAccuracy.possible(cfg, self.eval_rows):
            self.accuracy = TaskAccuracy(cfg, tokenizer, self.eval_rows, self.eval_source, base_path, self.trainers)

    def train_step(self, items: list) -> dict:
        t = self.cfg.trainer
        shards, n_tok = sft_micro_batches(items, t.num_workers, self.pad_id, t.packing,
                                          self.cfg.micro_batch_tokens(), self.layout.micro)
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


class RewardModelTask(_Task):
    """Bradley-Terry on preference pairs over a scalar head on the (warm-started) policy body;
    held-out pairwise accuracy and margin."""

    name, output, summary_names = "rm", "reward_model", {}
    examples = staticmethod(preference_pairs)

    def cpus(self, cfg) -> float:
        return cfg.trainer.num_workers + 0.5

    def start(self, cfg, base_path, tokenizer, optim, layout) -> None:
        from rlhf.actors.reward_model import RewardModelTrainer

        self.layout = layout
        body = warm_start(cfg, base_path, tokenizer)
        self.trainers = create_trainers(cfg, body, optim, cls=RewardModelTrainer, name="reward_model")

    def _micro_batches(self, items: list) -> list[list[dict]]:
        t = self.cfg.trainer
        return pair_micro_batches(items, t.num_workers, self.layout.micro, self.pad_id, t.packing,
                                  self.cfg.micro_batch_tokens())

    def train_step(self, items: list) -> dict:
        n = len(items)
        metrics = self.trainers.scatter(lambda a, mbs: a.train_pairs.remote(mbs, n), self._micro_batches(items))
        return {"train/loss": _mean(metrics, "rm/loss"), "train/accuracy": _mean(metrics, "rm/accuracy"),
                "train/skipped_steps": metrics[0]["rm/skipped_steps"]}

    def evaluate(self) -> dict:
        chosen, rejected = pair_values(self.trainers, "rewards", self.held, self.layout.micro, self.pad_id)
        return {"eval/pair_accuracy": float((chosen > rejected).float().mean()),
                "eval/margin": float((chosen - rejected).mean())}


class DPOTask(RewardModelTask):
    """A pairwise policy loss (`cfg.pair_loss()`: DPO, IPO, SimPO, ORPO) from the warm-started
    policy, against a frozen copy of it where the loss has a reference (`cfg.needs_reference()`);
    held-out preference accuracy, implicit-reward accuracy and margin, and task accuracy where
    the rows allow it."""

    name, output, summary_names = "dpo", "policy", {}

    def cpus(self, cfg) -> float:
        return cfg.trainer.num_workers + 1.5 + cfg.needs_reference()  # + a generator and a reward actor

    def start(self, cfg, base_path, tokenizer, optim, layout) -> None:
        self.layout = layout
        policy = warm_start(cfg, base_path, tokenizer)
        self.trainers = create_trainers(cfg, policy, optim, lora=True)
        self.reference = create_reference(cfg, policy) if cfg.needs_reference() else None
        if TaskAccuracy.possible(cfg, self.eval_rows):
            self.accuracy = TaskAccuracy(cfg, tokenizer, self.eval_rows, self.eval_source, policy, self.trainers)
        self.ref_held = (None, None) if self.reference is None else \
            pair_values(self.reference, "sequence_logps", self.held, layout.micro, self.pad_id)
        world = len(self.trainers)
        held = self.held[:len(self.held) // world * world]  # the pairs `pair_values` scores
        self.held_lengths = tuple(torch.tensor([float(len(ids) - n) for ids, n in side]) for side in zip(*held))

    def train_step(self, items: list) -> dict:
        shards, loss = self._micro_batches(items), self.cfg.pair_loss()
        ref_logps = [None] * len(shards)
        if self.reference is not None:
            ref = self.reference.actors[0]
            ref_logps = [ray.get([ref.sequence_logps.remote(mb) for mb in mbs]) for mbs in shards]
        n = len(items)
        metrics = self.trainers.scatter(lambda a, x: a.train_preference.remote(x[0], x[1], n, loss),
                                        list(zip(shards, ref_logps)))
        return {f"train/{k.split('/', 1)[1]}": _mean(metrics, k) for k in metrics[0]}

    def evaluate(self) -> dict:
        chosen, rejected = pair_values(self.trainers, "sequence_logps", self.held, self.layout.micro, self.pad_id)
        loss = self.cfg.pair_loss()
        beta = loss.get("beta", 0.0)
        (ref_w, ref_l), (len_w, len_l) = self.ref_held, self.held_lengths
        margin = (implicit_rewards(loss["loss_type"], chosen, len_w, ref_w, beta=beta)
                  - implicit_rewards(loss["loss_type"], rejected, len_l, ref_l, beta=beta))
        record = {"eval/pair_accuracy": float((chosen > rejected).float().mean()),
                  "eval/reward_accuracy": float((margin > 0).float().mean()), "eval/margin": float(margin.mean())}
        if self.accuracy is not None:
            record["eval/accuracy"] = self.accuracy()
        return record


class ORPOTask(DPOTask):
    """ORPO: the chosen answer's NLL plus the odds-ratio term, no reference model."""

    name = "orpo"


class KTOTask(DPOTask):
    """KTO on unpaired examples labelled desirable or undesirable, against a frozen reference;
    held-out mean implicit reward of each kind and their gap, and task accuracy where possible."""

    name = "kto"
    examples = staticmethod(kto_examples)

    def cpus(self, cfg) -> float:
        return cfg.trainer.num_workers + 2.5  # + the reference, a generator and a reward actor

    def start(self, cfg, base_path, tokenizer, optim, layout) -> None:
        self.layout = layout
        policy = warm_start(cfg, base_path, tokenizer)
        self.trainers = create_trainers(cfg, policy, optim, lora=True)
        self.reference = create_reference(cfg, policy)
        if TaskAccuracy.possible(cfg, self.eval_rows):
            self.accuracy = TaskAccuracy(cfg, tokenizer, self.eval_rows, self.eval_source, policy, self.trainers)
        self.ref_held = self._held_logps(self.reference)

    def _held_logps(self, group) -> torch.Tensor:
        """Summed log-probs of the held-out examples, in order, on every rank of `group`."""
        world = len(group)
        held = self.held[:len(self.held) // world * world]
        batches = kto_micro_batches(held, world, self.layout.micro, self.pad_id, mismatched=False)
        refs = [[a.sequence_logps.remote(b) for b, _ in mbs] for a, mbs in zip(group.actors, batches)]
        return torch.cat([v for rank in refs for v in ray.get(rank)])

    def train_step(self, items: list) -> dict:
        t = self.cfg.trainer
        shards = kto_micro_batches(items, t.num_workers, self.layout.micro, self.pad_id)
        ref = self.reference.actors[0]
        ref_logps = [ray.get([ref.sequence_logps.remote(b) for b, _ in mbs]) for mbs in shards]
        n, kto = len(items), asdict(self.cfg.kto)
        metrics = self.trainers.scatter(
            lambda a, x: a.train_kto.remote([b for b, _ in x[0]], x[1], [d for _, d in x[0]], n, kto),
            list(zip(shards, ref_logps)))
        return {f"train/{k.split('/', 1)[1]}": _mean(metrics, k) for k in metrics[0]}

    def evaluate(self) -> dict:
        r = self.cfg.kto.beta * (self._held_logps(self.trainers) - self.ref_held)
        world = len(self.trainers)
        desirable = torch.tensor([d for _, d in self.held[:len(self.held) // world * world]])
        good, bad = float(r[desirable].mean()), float(r[~desirable].mean())
        record = {"eval/reward_desirable": good, "eval/reward_undesirable": bad, "eval/margin": good - bad}
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
