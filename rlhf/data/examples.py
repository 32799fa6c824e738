"""Supervised examples of a split (SFT examples, preference pairs) and each step's batches:
which examples a step draws, and how they are laid out per data-parallel rank."""

from __future__ import annotations

import random

import torch

from rlhf.data.files import DataError, read_rows
from rlhf.data.formats import as_messages, preference_example, sft_example
from rlhf.data.sequences import Example, encode, pack_batch, pad_batch
from rlhf.packing import plan_micro_batches
from rlhf.data.synthetic import task_rows


def _rows(data, split: str, preferences: bool) -> tuple[list[dict], str]:
    path = data.train if split == "train" else data.eval
    if path:
        return read_rows(path, split), path
    return task_rows(data.task, split, data.seed, preferences), f"built-in task '{data.task}' ({split})"


def sft_examples(data, split: str, tokenizer) -> tuple[list[Example], list[dict], str]:
    """(examples, rows, source) of a split; `data` is the config's data section."""
    rows, source = _rows(data, split, preferences=False)
    examples = [encode(*sft_example(r, data, source, i), tokenizer) for i, r in enumerate(rows)]
    _check_nonempty(examples, source)
    return examples, rows, source


def preference_pairs(data, split: str, tokenizer) -> tuple[list, list[dict], str]:
    """([(chosen example, rejected example)], rows, source) of a split."""
    rows, source = _rows(data, split, preferences=True)
    pairs = []
    for i, r in enumerate(rows):
        prompt, chosen, rejected = preference_example(r, data, source, i)
        pairs.append((encode(prompt, chosen, tokenizer), encode(prompt, rejected, tokenizer)))
    _check_nonempty(pairs, source)
    return pairs, rows, source


def kto_examples(data, split: str, tokenizer) -> tuple[list, list[dict], str]:
    """([(example, desirable)], rows, source) of a split: unpaired rows (`data.completion_key`,
    `data.label_key`), or preference pairs, each giving a desirable and an undesirable example."""
    rows, source = _rows(data, split, preferences=True)
    out = []
    for i, r in enumerate(rows):
        if data.chosen_key in r or data.rejected_key in r:
            prompt, chosen, rejected = preference_example(r, data, source, i)
            out += [(encode(prompt, chosen, tokenizer), True), (encode(prompt, rejected, tokenizer), False)]
            continue
        missing = [k for k in (data.prompt_key, data.completion_key, data.label_key) if k not in r]
        if missing:
            raise DataError(f"{source}: row {i + 1} has no column {', '.join(map(repr, missing))} (unpaired rows need "
                            f"{data.prompt_key!r}, {data.completion_key!r} and {data.label_key!r}, or give "
                            f"{data.chosen_key!r}/{data.rejected_key!r} pairs)")
        out.append((encode(as_messages(r[data.prompt_key]), str(r[data.completion_key]), tokenizer),
                    _label(r[data.label_key], source, i, data.label_key)))
    _check_nonempty(out, source)
    return out, rows, source


def _label(value, source: str, i: int, key: str) -> bool:
    if isinstance(value, bool) or value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.strip().lower() in ("true", "false", "1", "0", "yes", "no"):
        return value.strip().lower() in ("true", "1", "yes")
    raise DataError(f"{source}: row {i + 1}: column {key!r} is {value!r}; a label is true or false")


def kto_micro_batches(items: list, world: int, micro: int, pad_id: int,
                      mismatched: bool = True) -> list[list[tuple[dict, torch.Tensor]]]:
    """Per rank, micro-batches of `micro` labelled examples, each as (batch, labels): the k
    examples, then (`mismatched`) k rows pairing each prompt with the next example's
    completion (KTO's mismatched pairs for its reference point)."""
    k = len(items) // world
    out = []
    for r in range(world):
        mine = items[r * k:(r + 1) * k]
        ranks = []
        for i in range(0, len(mine), micro):
            chunk = mine[i:i + micro]
            examples = [ex for ex, _ in chunk]
            shifted = examples[1:] + examples[:1]
            pairs = [(ids[:n] + other[m:], n) for (ids, n), (other, m) in zip(examples, shifted)] if mismatched else []
            ranks.append((pad_batch(examples + pairs, pad_id), torch.tensor([d for _, d in chunk])))
        out.append(ranks)
    return out


def _check_nonempty(items: list, source: str) -> None:
    if not items:
        raise DataError(f"{source}: no examples")


class Sampler:
    """Seeded draws of `per_step` items per step, without replacement within a step."""

    def __init__(self, n: int, per_step: int, seed: int):
        if per_step > n:
            raise DataError(f"batch of {per_step} but only {n} training examples: lower the batch size")
        self.n, self.per_step, self.rng = n, per_step, random.Random(seed)

    def next(self) -> list[int]:
        return self.rng.sample(range(self.n), self.per_step)


def sft_micro_batches(examples: list[Example], world: int, pad_id: int, packing: bool, max_tokens: int,
                      micro: int) -> tuple[list[list[dict]], int]:
    """Each rank's micro-batches of a step, and the global count of loss tokens (the token-mean
    normaliser). `packing`: token-budget micro-batches, each one packed row (`rlhf.packing`);
    otherwise contiguous slices of `micro` padded rows."""
    if packing:
        plan = plan_micro_batches([len(ids) for ids, _ in examples], world, max_tokens)
        shards = [[pack_batch([examples[i] for i in rows] or [([pad_id], 1)], None, pad_id) for rows in rank]
                  for rank in plan]
    else:
        k = len(examples) // world
        shards = [[pad_batch(examples[r * k + i:r * k + min(i + micro, k)], pad_id) for i in range(0, k, micro)]
                  for r in range(world)]
    return shards, int(sum(mb["loss_mask_BT"][:, 1:].sum() for rank in shards for mb in rank))


def pair_micro_batches(pairs: list, world: int, micro: int, pad_id: int, packing: bool = False,
                       max_tokens: int = 0) -> list[list[dict]]:
    """Per rank, micro-batches of pairs, each its k chosen examples then their k rejected ones.
    `packing`: pairs planned by tokens (`rlhf.packing`, every rank the same count), each
    micro-batch one packed row; otherwise `micro` pairs per padded micro-batch."""
    if packing:
        plan = plan_micro_batches([len(c[0]) + len(r[0]) for c, r in pairs], world, max_tokens)
        # an empty micro-batch (a rank short of pairs) repeats one pair that counts for nothing
        return [[pack_batch(_chosen_then_rejected([pairs[i] for i in rows] or pairs[:1]), None, pad_id)
                 | {"pairs_counted": torch.tensor(len(rows))} for rows in rank] for rank in plan]
    k = len(pairs) // world
    return [[pad_batch(_chosen_then_rejected(pairs[r * k:(r + 1) * k][i:i + micro]), pad_id)
             for i in range(0, k, micro)] for r in range(world)]


def _chosen_then_rejected(pairs: list) -> list[Example]:
    return [c for c, _ in pairs] + [rj for _, rj in pairs]
