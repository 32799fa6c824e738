"""Supervised warm start before RL (and of the reward model's or DPO policy's body): a short
SFT on the task's worked responses, run on the DeepSpeed trainer actors and cached by content
hash (a second run loads it)."""

from __future__ import annotations

import logging
import os
import shutil
from dataclasses import asdict

from tqdm import tqdm

from rlhf.data.examples import Sampler, sft_micro_batches
from rlhf.data.files import DataError, require_columns
from rlhf.data.formats import as_messages
from rlhf.data.prompts import load_rows
from rlhf.data.sequences import encode, encode_turns
from rlhf.envs import env_task
from rlhf.models import cache_root, content_key
from rlhf.startup.roles import create_trainers, optim_settings

log = logging.getLogger(__name__)
RESPONSE_KEY = "response"


def _example(row: dict, prompt_key: str, tokenizer, source: str, i: int):
    """A row's response: text (one turn), or a list of messages (the model's turns with tool
    results between them, trained on the model's turns only)."""
    prompt, response = as_messages(row[prompt_key]), row[RESPONSE_KEY]
    if not isinstance(response, list):
        return encode(prompt, str(response), tokenizer)
    try:
        return encode_turns(prompt, response, tokenizer)
    except (ValueError, AttributeError, KeyError) as e:
        raise DataError(f"{source}: row {i + 1}: '{RESPONSE_KEY}': {e}") from None


def warm_start(cfg, base_path: str, tokenizer, whole_gpu: bool = False) -> str:
    """Path of the warm-started model (trained now, or found in the cache); `cfg.warmstart.steps
    == 0`: the base model itself."""
    ws = cfg.warmstart
    if ws.steps == 0:
        return base_path
    rows, source = load_rows(cfg.data, "train", env_task(cfg))
    require_columns(rows, [cfg.data.prompt_key, RESPONSE_KEY], source)
    examples = [_example(r, cfg.data.prompt_key, tokenizer, source, i) for i, r in enumerate(rows)]
    t = cfg.trainer
    # everything the result depends on: base model, examples, warm-start and sharding settings, seed
    key = content_key(base_path, examples, asdict(ws) | {"cache_dir": None}, t.num_workers, t.zero_stage,
                      cfg.micro_batch_tokens(), t.grad_clip, cfg.run.seed)
    out = cache_root(cfg.model.cache_dir) / "warmstart" / key
    if (out / "config.json").is_file():
        log.info("warm start: cached at %s", out)
        return str(out)
    trainers = create_trainers(cfg, base_path, optim_settings(cfg, None, ws.lr, ws.warmup_steps, ws.steps),
                               whole_gpu=whole_gpu)
    sampler = Sampler(len(examples), ws.batch_size, cfg.run.seed)
    bar = tqdm(range(ws.steps), desc="warm start (SFT)", disable=not cfg.run.progress)
    for _ in bar:
        shards, n_tok = sft_micro_batches([examples[i] for i in sampler.next()], t.num_workers,
                                          tokenizer.pad_token_id, packing=True, max_tokens=cfg.micro_batch_tokens(),
                                          micro=0)
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
