"""The one batch schema that moves between the driver and the actors.

A batch is a plain dict of tensors (cheap to pickle through Ray), rows = sequences:

    input_ids_BT         long  [B, P+R]  prompt left-padded to P, then the response right-padded to R
    attention_mask_BT    long  [B, P+R]  1 on real prompt and response tokens
    response_mask_BR     float [B, R]    1 on response tokens that enter the loss (0 on observation tokens
                                         of a multi-turn episode: only sampled tokens train)
    rollout_logprobs_BR  float [B, R]    log-probs of the engine that sampled the response (0 where not sampled;
                                         only where asked for: the truncated-IS correction reads them)
    old_logprobs_BR      float [B, R]    log-probs of the policy before this update (optional)
    ref_logprobs_BR      float [B, R]    log-probs of the frozen reference (only with a KL term)
    advantages_BR        float [B, R]    per-token advantages

Rows of one prompt's group are contiguous: rows [g*n, (g+1)*n) share prompt g.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import torch

from rlhf.packing import rl_micro_batches

Batch = dict  # str -> Tensor, keys as above


@dataclass
class Completion:
    """One sampled response, or one episode (`rlhf.envs`): token ids (EOS included when it ended),
    per-token log-probs (0 on tokens not sampled), and for an episode which tokens the model
    sampled (`loss_mask` 1) and which the environment wrote (0)."""

    token_ids: list[int]
    logprobs: Optional[list[float]]  # None: not asked for (`SamplingSettings.logprobs`)
    finished: bool  # ended with EOS / by the environment (False: cut at a token limit or max_turns)
    version: int = 0  # the policy version (optimizer steps) of the weights that sampled it
    loss_mask: Optional[list[int]] = None  # None: every token was sampled
    episode: Optional[dict] = None  # an episode's turns, tool calls and errors, environment reward and info


def collate(prompt_ids: list[list[int]], completions: list[Completion], pad_id: int) -> Batch:
    """Pad prompts on the left and responses on the right into one batch (one row per completion);
    `rollout_logprobs_BR` only when every completion carries its log-probs."""
    assert len(prompt_ids) == len(completions)
    P = max(len(p) for p in prompt_ids)
    R = max(1, max(len(c.token_ids) for c in completions))
    B = len(completions)
    ids = torch.full((B, P + R), pad_id, dtype=torch.long)
    attn = torch.zeros((B, P + R), dtype=torch.long)
    resp_mask = torch.zeros((B, R))
    with_logprobs = all(c.logprobs is not None for c in completions)
    rollout_lp = torch.zeros((B, R))
    for i, (p, c) in enumerate(zip(prompt_ids, completions)):
        ids[i, P - len(p):P] = torch.tensor(p)
        attn[i, P - len(p):P] = 1
        n = len(c.token_ids)
        if n:
            ids[i, P:P + n] = torch.tensor(c.token_ids)
            attn[i, P:P + n] = 1
            resp_mask[i, :n] = 1 if c.loss_mask is None else torch.tensor(c.loss_mask, dtype=torch.float32)
            if with_logprobs:
                rollout_lp[i, :n] = torch.tensor(c.logprobs, dtype=torch.float32)
    batch = {"input_ids_BT": ids, "attention_mask_BT": attn, "response_mask_BR": resp_mask}
    return batch | ({"rollout_logprobs_BR": rollout_lp} if with_logprobs else {})


def num_rows(batch: Batch) -> int:
    return batch["input_ids_BT"].shape[0]


def select_rows(batch: Batch, idx) -> Batch:
    idx = torch.as_tensor(idx, dtype=torch.long)
    return {k: v[idx] for k, v in batch.items()}


def split_rows(batch: Batch, parts: int) -> list[Batch]:
    """`parts` equal, contiguous shards (the row count must divide evenly)."""
    n = num_rows(batch)
    if n % parts:
        raise ValueError(f"{n} rows do not split into {parts} equal shards")
    step = n // parts
    return [select_rows(batch, range(i * step, (i + 1) * step)) for i in range(parts)]


def trim_padding(batch: Batch) -> Batch:
    """Drop prompt-side columns that are padding in every row (shards may need less than the batch)."""
    R = batch["response_mask_BR"].shape[1]
    P = batch["input_ids_BT"].shape[1] - R
    used = batch["attention_mask_BT"][:, :P].any(0).nonzero()
    start = int(used[0]) if len(used) else P
    return {k: (v[:, start:] if k.endswith("_BT") else v) for k, v in batch.items()}


def update_shards(batch: Batch, world: int, mini_batches: int, epochs: int, max_tokens: int,
                  pad_id: int) -> tuple[list[list[list[Batch]]], list[dict]]:
    """Each rank's packed micro-batches (`rlhf.packing`) of every mini-batch of every epoch, and
    each mini-batch's global token/sequence counts: the loss normalisers that make the
    micro-batches' losses add up to the mini-batch's however its rows are spread."""
    planned = []
    for mb in split_rows(batch, mini_batches):
        mask = mb["response_mask_BR"]
        count = {"num_tokens": float(mask.sum()), "num_seqs": float((mask.sum(1) > 0).sum())}
        planned.append((rl_micro_batches(mb, world, max_tokens, pad_id)[0], count))
    per_rank: list[list[list[Batch]]] = [[] for _ in range(world)]
    counts = []
    for _ in range(epochs):
        for shards, count in planned:
            counts.append(count)
            for rank, micro_batches in enumerate(shards):
                per_rank[rank].append(micro_batches)
    return per_rank, counts


class BatchLayoutError(ValueError):
    """A batch that does not split evenly into ranks, mini-batches and micro-batches."""


@dataclass(frozen=True)
class MicroBatching:
    """How one step's batch reaches the ranks: `per_rank` rows per rank and mini-batch, fed as
    `grad_accum` forwards of `micro` rows (DeepSpeed's train_batch_size = micro * grad_accum * world)."""

    per_rank: int
    micro: int
    grad_accum: int


def micro_batching(batch_size: int, world: int, micro_batch_size: int, mini_batches: int = 1,
                   one_forward: bool = False, strict: bool = False) -> MicroBatching:
    """The one computation of batch -> per rank -> micro-batch -> gradient accumulation.
    `one_forward`: a rank's shard is a single forward (packed rows). `strict`: a batch that does
    not split evenly is an error instead of dropping the remainder."""
    shards = world * mini_batches
    per_rank = max(1, batch_size // shards)
    uneven = batch_size % shards or not one_forward and per_rank % micro_batch_size and per_rank > micro_batch_size
    if strict and (batch_size < shards or uneven):
        minis = f" x trainer.mini_batches={mini_batches}" if mini_batches > 1 else ""
        raise BatchLayoutError(
            f"{batch_size} rows must split evenly into trainer.num_workers={world}{minis} shards, each a multiple "
            f"of trainer.micro_batch_size={micro_batch_size} (or smaller than it)")
    micro = per_rank if one_forward else min(micro_batch_size, per_rank)
    return MicroBatching(per_rank, micro, max(1, per_rank // micro))
