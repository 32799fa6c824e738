"""What SFT, reward modelling and DPO share: examples from files or the built-in task, the
per-step batches of each data-parallel rank, held-out task accuracy by generation, and the
run around them (run directory, metrics, summary)."""

from __future__ import annotations

import logging
import random
import time
from contextlib import contextmanager

from rlhf.actors.trainer import OptimSettings
from rlhf.batch import split_rows
from rlhf.cluster import init_ray
from rlhf.config import to_dict
from rlhf.data.files import DataError, read_rows
from rlhf.data.formats import preference_example, sft_example
from rlhf.data.prompts import build_prompt_set
from rlhf.data.sequences import encode, pack_batch, pad_batch, sequence_batch
from rlhf.data.synthetic import task_rows
from rlhf.tracking import Tracker, make_run_dir

log = logging.getLogger(__name__)


def load_rows_for(cfg, split: str, preferences: bool) -> tuple[list[dict], str]:
    path = cfg.data.train if split == "train" else cfg.data.eval
    if path:
        rows = read_rows(path, split)
        return rows, path
    return task_rows(cfg.data.task, split, cfg.data.seed, preferences), f"built-in task '{cfg.data.task}' ({split})"


def sft_examples(cfg, split: str, tokenizer) -> tuple[list, list[dict], str]:
    rows, source = load_rows_for(cfg, split, preferences=False)
    examples = [encode(*sft_example(r, cfg.data, source, i), tokenizer) for i, r in enumerate(rows)]
    _check_nonempty(examples, source)
    return examples, rows, source


def preference_pairs(cfg, split: str, tokenizer) -> tuple[list, list[dict], str]:
    """[(chosen example, rejected example)] of a split."""
    rows, source = load_rows_for(cfg, split, preferences=True)
    pairs = []
    for i, r in enumerate(rows):
        prompt, chosen, rejected = preference_example(r, cfg.data, source, i)
        pairs.append((encode(prompt, chosen, tokenizer), encode(prompt, rejected, tokenizer)))
    _check_nonempty(pairs, source)
    return pairs, rows, source


def _check_nonempty(items: list, source: str) -> None:
    if not items:
        raise DataError(f"{source}: no examples")


def optim_settings(cfg, world: int, micro: int, grad_accum: int, lr: float, warmup: int, steps: int) -> OptimSettings:
    return OptimSettings(lr=lr, grad_clip=cfg.trainer.grad_clip, zero_stage=cfg.trainer.zero_stage,
                         offload=cfg.trainer.offload, micro_batch_size=micro, grad_accum=grad_accum,
                         weight_decay=cfg.trainer.weight_decay, warmup_steps=min(warmup, steps), decay_steps=steps,
                         gradient_checkpointing=cfg.model.gradient_checkpointing)


class Sampler:
    """Seeded draws of `per_step` items per step, without replacement within a step."""

    def __init__(self, n: int, per_step: int, seed: int):
        if per_step > n:
            raise DataError(f"batch of {per_step} but only {n} training examples: lower train.batch_size")
        self.n, self.per_step, self.rng = n, per_step, random.Random(seed)

    def next(self) -> list[int]:
        return self.rng.sample(range(self.n), self.per_step)


def sft_shards(examples: list, world: int, pad_id: int, packing: bool, max_len: int) -> tuple[list[dict], int]:
    """Each rank's batch of a step (contiguous slices, padded or packed) and the global count
    of loss tokens (the token-mean normaliser)."""
    if packing:
        k = len(examples) // world
        shards = [pack_batch(examples[r * k:(r + 1) * k], max_len, pad_id) for r in range(world)]
    else:
        shards = split_rows(pad_batch(examples, pad_id), world)
    return shards, int(sum(s["loss_mask_BT"][:, 1:].sum() for s in shards))


def pair_micro_batches(pairs: list, world: int, micro: int, pad_id: int, packing: bool = False,
                       max_len: int = 0) -> list[list[dict]]:
    """Per rank, micro-batches of `micro` pairs, each k chosen rows then the k rejected rows."""
    k = len(pairs) // world
    out = []
    for r in range(world):
        mine = pairs[r * k:(r + 1) * k]
        out.append([sequence_batch([c for c, _ in mine[i:i + micro]] + [rj for _, rj in mine[i:i + micro]],
                                   pad_id, packing, max_len) for i in range(0, len(mine), micro)])
    return out


def eval_sft_loss(trainers, examples: list, pad_id: int) -> float:
    """Token-mean held-out loss of the trainers' current weights (every rank takes part: ZeRO-3
    gathers parameters collectively)."""
    world = len(trainers)
    k = -(-len(examples) // world)
    parts = trainers.scatter(lambda a, b: a.sft_eval.remote(b),
                             [pad_batch(examples[r * k:(r + 1) * k] or examples[:1], pad_id) for r in range(world)])
    if len(examples) < world:  # ranks without examples of their own scored a duplicate
        parts = parts[:len(examples)]
    return sum(n for n, _ in parts) / max(1, sum(c for _, c in parts))


class TaskAccuracy:
    """Held-out accuracy by greedy generation, as in RL evaluation: a generator receives the
    trainers' weights, the reward actors score with `reward.eval_fns`. Needs rows with the
    prompt column and the columns the eval rewards read (e.g. `answer`)."""

    def __init__(self, cfg, tokenizer, rows: list[dict], source: str, model_path: str, trainers):
        from rlhf.recipes.rl import RLLoop
        from rlhf.recipes.roles import Roles, create_generators, create_rewards
        from rlhf.sync import make_transport

        evalset = build_prompt_set(rows[:cfg.data.num_eval], tokenizer, cfg.data, source)
        self.roles = Roles(trainers=trainers, generators=create_generators(cfg, model_path), rewards=create_rewards(cfg))
        self.loop = RLLoop(cfg, self.roles, tokenizer, evalset, evalset, make_transport(cfg.generator, trainers, self.roles.generators))

    @staticmethod
    def possible(cfg, rows: list[dict]) -> bool:
        return bool(rows) and cfg.data.prompt_key in rows[0] and (cfg.data.answer_key in rows[0] or "answer" in rows[0])

    def __call__(self) -> float:
        self.loop.version += 1
        self.loop.sync()
        return self.loop.evaluate()["eval/accuracy"]

    def kill(self) -> None:
        self.roles.generators.kill()
        self.roles.rewards.kill()


@contextmanager
def supervised_run(cfg, recipe: str, needed_cpus: float):
    """Run directory and tracker; Ray started; the summary printed at the end."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    from rlhf.actors.runtime import quiet_libraries

    quiet_libraries()
    run_dir = make_run_dir(cfg.run.output_dir, cfg.run.name, recipe)
    tracker = Tracker(run_dir, to_dict(cfg), wandb_project=cfg.run.wandb_project if cfg.run.wandb else None)
    init_ray(cfg.ray.address, cfg.ray.num_cpus, needed_cpus)
    t0 = time.perf_counter()
    summary: dict = {"recipe": recipe, "run_dir": str(run_dir)}
    try:
        yield run_dir, tracker, summary
        summary["wall_s"] = round(time.perf_counter() - t0, 1)
        tracker.plot(sorted({k for r in tracker.history for k in r if k.startswith("eval/") and k != "eval/seconds"}))
        tracker.write_summary(summary)
    finally:
        tracker.close()
    print(", ".join(f"{k} {v:.3f}" for k, v in summary.items() if isinstance(v, float)))
    print(f"run directory: {run_dir}")


def pair_values(group, method: str, pairs: list, micro: int, pad_id: int) -> tuple:
    """`method` (per-example values: rewards, summed log-probs) of the chosen and rejected
    sides of `pairs` on every rank of `group` -> (chosen [N], rejected [N]); the last
    len(pairs) % world pairs are left out so every rank holds as many."""
    import ray
    import torch

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
