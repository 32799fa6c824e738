"""Supervised warm start before RL: a short SFT on the task's worked responses, run on the
DeepSpeed trainer actors and cached by content hash (a second run loads it)."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict

from tqdm import tqdm

from rlhf.data.files import require_columns
from rlhf.data.formats import as_messages
from rlhf.data.prompts import load_rows
from rlhf.data.sequences import encode
from rlhf.models import cache_root, content_key
from rlhf.recipes.roles import create_trainers
from rlhf.recipes.supervised import Sampler, optim_settings, sft_shards

log = logging.getLogger(__name__)
RESPONSE_KEY = "response"


def warm_start(cfg, base_path: str, tokenizer) -> str:
    """Path of the warm-started model (trained now, or found in the cache)."""
    ws = cfg.warmstart
    if ws.steps == 0:
        return base_path
    rows, source = load_rows(cfg.data, "train")
    require_columns(rows, [cfg.data.prompt_key, RESPONSE_KEY], source)
    examples = [encode(as_messages(r[cfg.data.prompt_key]), r[RESPONSE_KEY], tokenizer) for r in rows]
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
    optim = optim_settings(cfg, world, micro, max(1, per_rank // micro), ws.lr, ws.warmup_steps, ws.steps)
    trainers = create_trainers(cfg, base_path, optim)
    sampler = Sampler(len(examples), per_rank * world, cfg.run.seed)
    bar = tqdm(range(ws.steps), desc="warm start (SFT)", disable=not cfg.run.progress)
    for _ in bar:
        shards, n_tok = sft_shards([examples[i] for i in sampler.next()], world, tokenizer.pad_token_id,
                                   packing=False, max_len=0)
        metrics = trainers.scatter(lambda a, shard: a.train_sft.remote(shard, n_tok), shards)
        bar.set_postfix(loss=f"{sum(m['sft/loss'] for m in metrics):.3f}")
    tmp = out.with_name(f"{out.name}.tmp{os.getpid()}")
    trainers.each(lambda a: a.save_pretrained.remote(str(tmp)))
    trainers.kill()
    try:
        tmp.rename(out)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
    return str(out)
