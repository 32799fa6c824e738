"""GPU: tokens/s and model FLOPs utilisation (MFU) of the DeepSpeed trainer's update, on a
Qwen2.5-sized model (random weights), bf16, one GPU.

    python benchmarks/trainer_mfu.py --size 0.5b --zero-stage 2 --max-tokens 16384   # one JSON line
    python benchmarks/trainer_mfu.py --size 0.5b --packing false --micro-batch 4     # padded rows
    RLHF_ATTENTION=flex_attention python benchmarks/trainer_mfu.py ...               # attention kernel
    RLHF_LOGPROBS=fused python benchmarks/trainer_mfu.py ...                         # no response logits

The batch is examples of random lengths (uniform in [--min-len, --max-len], 1/4 prompt and
3/4 response, as in SFT/RL updates): packed end to end into token-budget micro-batches of
--max-tokens (`rlhf.packing`, the trainers' layout), or padded --micro-batch rows per forward.
Tokens/s counts real tokens only. FLOPs per token: 6 N (forward and
backward through the N parameters, the tied output projection counted once) plus
attention 6 L d s (causal: half of 12 L d s), where s is
the mean example length (Kaplan et al. 2020; Chowdhery et al. 2022, appendix B).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import torch

sys.path.insert(0, os.path.dirname(__file__))
from gpu_rollout_sync import SIZES, build  # noqa: E402

PEAK_BF16_TFLOPS = {"H100": 989.0, "H200": 989.0, "A100": 312.0}  # dense bf16, SXM


def sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def device_name() -> str:
    return torch.cuda.get_device_name() if torch.cuda.is_available() else "cpu"


def peak_tflops() -> float:
    name = device_name()
    return next((v for k, v in PEAK_BF16_TFLOPS.items() if k in name), None)


def examples(n: int, lo: int, hi: int, seed: int = 0) -> list[tuple[list[int], int]]:
    g = torch.Generator().manual_seed(seed)
    lengths = torch.randint(lo, hi + 1, (n,), generator=g).tolist()
    return [(torch.randint(300, 150000, (L,), generator=g).tolist(), L // 4) for L in lengths]


def main(a) -> dict:
    from rlhf.actors.deepspeed_rank import OptimSettings
    from rlhf.actors.policy_trainer import PolicyTrainer
    from rlhf.scoring import fused_output_head
    from rlhf.data.examples import sft_micro_batches

    path = build(a.size)
    exs = examples(a.examples, a.min_len, a.max_len)
    shards, loss_tokens = sft_micro_batches(exs, 1, 0, a.packing, a.max_tokens, a.micro_batch)
    batch = shards[0]
    trainer = PolicyTrainer(path, OptimSettings(lr=1e-5, zero_stage=a.zero_stage,
                                                gradient_checkpointing=a.gradient_checkpointing),
                            rank=0, world_size=1, dtype="bfloat16")
    trainer.init_distributed(*trainer.rendezvous())
    model = trainer.engine.module
    tokens = sum(len(ids) for ids, _ in exs)
    trainer.train_sft(batch, loss_tokens)  # warm-up (kernels, allocator, optimizer state)
    sync()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        trainer.train_sft(batch, loss_tokens)
    sync()
    seconds = (time.perf_counter() - t0) / a.steps
    cfg = model.config
    # tied: the embedding counts once, as the output matmul; ZeRO-3 shards report their full size in ds_numel
    n_params = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
    mean_len = tokens / len(exs)
    flops_per_token = 6 * n_params + 6 * cfg.num_hidden_layers * cfg.hidden_size * mean_len
    tps = tokens / seconds
    return {"size": a.size, "zero_stage": a.zero_stage, "packing": a.packing, "attention": cfg._attn_implementation,
            "logprobs": "fused" if fused_output_head(trainer.engine) else "logits",
            "gradient_checkpointing": a.gradient_checkpointing, "examples": len(exs), "forwards": len(batch),
            "max_tokens": a.max_tokens if a.packing else None, "micro_batch": None if a.packing else a.micro_batch,
            "tokens_per_step": tokens, "padded_tokens_per_step": sum(int(mb["input_ids_BT"].numel()) for mb in batch),
            "step_seconds": seconds, "tokens_per_s": tps, "model_tflops": tps * flops_per_token / 1e12,
            "mfu": tps * flops_per_token / 1e12 / peak_tflops() if peak_tflops() else None, "params": n_params,
            "peak_memory_GiB": torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available() else None}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--size", choices=list(SIZES), default="0.5b")
    p.add_argument("--zero-stage", type=int, default=2)
    p.add_argument("--packing", type=lambda s: s == "true", default=True)
    p.add_argument("--gradient-checkpointing", type=lambda s: s == "true", default=False)
    p.add_argument("--examples", type=int, default=64)
    p.add_argument("--min-len", type=int, default=256)
    p.add_argument("--max-len", type=int, default=2048)
    p.add_argument("--micro-batch", type=int, default=4)
    p.add_argument("--max-tokens", type=int, default=16384)
    p.add_argument("--steps", type=int, default=3)
    args = p.parse_args()
    result = main(args) | {"device": device_name(), "date": time.strftime("%Y-%m-%d"),
                           "peak_bf16_tflops": peak_tflops()}
    print(json.dumps(result), flush=True)
