"""Supervised warm start before RL: a short SFT on the task's worked responses, run on the
DeepSpeed trainer actors and cached by content hash (a second run loads it)."""

from __future__ import annotations

import logging
import os
import random
import shutil
from dataclasses import asdict

import torch
from tqdm import tqdm

from rlhf.actors.trainer import OptimSettings
from rlhf.batch import split_rows
from rlhf.data.files import require_columns
from rlhf.data.prompts import load_rows
from rlhf.models import cache_root, content_key
from rlhf.recipes.roles import create_trainers

log = logging.getLogger(__name__)
RESPONSE_KEY = "response"


def warm_start(cfg, base_path: str, tokenizer) -> str:
    """Path of the warm-started model (trained now, or found in the cache)."""
    ws = cfg.warmstart
    if ws.steps == 0:
        return base_path
    rows, source = load_rows(cfg.data, "train")
    require_columns(rows, [cfg.data.prompt_key, RESPONSE_KEY], source)
    examples = [_example(r[cfg.data.prompt_key], r[RESPONSE_KEY], tokenizer) for r in rows]
    t = cfg.trainer
    # everything the result depends on: base model, examples, warm-start and sharding settings, seed
    key = content_key(base_path, examples, asdict(ws) | {"cache_dir": None}, t.num_workers, t.zero_stage,
                      t.micro_batch_size, t.grad_clip, cfg.run.seed)
    out = cache_root(ws.cache_dir) / "warmstart" / key
    if (out / "config.json").is_file():
        log.info("warm start: cached at %s", out)
        return str(out)
    world = cfg.trainer.num_workers
    per_rank = max(1, ws.batch_size // world)
    micro = min(cfg.trainer.micro_batch_size, per_rank)
    optim = OptimSettings(lr=ws.lr, grad_clip=cfg.trainer.grad_clip, zero_stage=cfg.trainer.zero_stage,
                          micro_batch_size=micro, grad_accum=max(1, per_rank // micro),
                          warmup_steps=min(ws.warmup_steps, ws.steps), decay_steps=ws.steps)
    trainers = create_trainers(cfg, base_path, optim)
    rng = random.Random(cfg.run.seed)
    bar = tqdm(range(ws.steps), desc="warm start (SFT)", disable=not cfg.run.progress)
    for _ in bar:
        batch = _collate([examples[i] for i in rng.sample(range(len(examples)), per_rank * world)],
                         tokenizer.pad_token_id)
        n_tok = int(batch["loss_mask_BT"][:, 1:].sum())
        metrics = trainers.scatter(lambda a, shard: a.train_sft.remote(shard, n_tok), split_rows(batch, world))
        bar.set_postfix(loss=f"{sum(m['sft/loss'] for m in metrics):.3f}")
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    trainers.each(lambda a: a.save_pretrained.remote(str(tmp)))
    trainers.kill()
    try:
        tmp.rename(out)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)


def _example(prompt, response: str, tokenizer) -> tuple[list[int], int]:
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
    p = tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    p_ids = tokenizer(p, add_special_tokens=False)["input_ids"]
    r_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    return p_ids + r_ids, len(p_ids)


def _collate(examples: list[tuple[list[int], int]], pad_id: int) -> dict:
    """Right-padded sequences; the loss covers response tokens (and EOS) only."""
    T = max(len(ids) for ids, _ in examples)
    ids = torch.full((len(examples), T), pad_id, dtype=torch.long)
    attn = torch.zeros_like(ids)
    loss_mask = torch.zeros((len(examples), T))
    for i, (seq, n_prompt) in enumerate(examples):
        ids[i, :len(seq)] = torch.tensor(seq)
        attn[i, :len(seq)] = 1
        loss_mask[i, n_prompt:len(seq)] = 1
    return {"input_ids_BT": ids, "attention_mask_BT": attn, "loss_mask_BT": loss_mask}
