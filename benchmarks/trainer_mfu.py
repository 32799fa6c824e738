"""GPU: tokens/s and model FLOPs utilisation (MFU) of the DeepSpeed trainer's update, on a
Qwen2.5-sized model (random weights), bf16, one GPU.

    python benchmarks/trainer_mfu.py --size 0.5b --zero-stage 2 --max-tokens 16384   # one JSON line
    python benchmarks/trainer_mfu.py --size 0.5b --packing false --micro-batch 4     # padded rows
    RLHF_ATTENTION=flex_attention python benchmarks/trainer_mfu.py ...               # attention kernel
    RLHF_LOGPROBS=blocks|fused python benchmarks/trainer_mfu.py ...                  # log-probs path

The batch is examples of random lengths (uniform in [--min-len, --max-len], 1/4 prompt and
3/4 response, as in SFT/RL updates): packed end to end into token-budget micro-batches of
--max-tokens (`rlhf.packing`, the trainers' layout), or padded --micro-batch rows per forward.
Tokens/s counts real tokens only. FLOPs: 6 N per token (forward and backward through the N
parameters) plus attention 6 L d s (causal: half of 12 L d s), where s is the mean example
length (Kaplan et al. 2020; Chowdhery et al. 2022, appendix B); the output projection (V x d,
the tied embedding counted once) only at the positions the loss reads, since the trainer
computes it nowhere else.

    python benchmarks/trainer_mfu.py --size 1.5b --profile true   # + the top GPU kernels, to stderr
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


def profile_step(step) -> None:
    """One step under the PyTorch profiler: the 25 GPU ops that took longest, and how much of
    the step the GPU was busy, printed to stderr."""
    from torch.profiler import ProfilerActivity, profile

    t0 = time.perf_counter()
    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        step()
        sync()
    wall = time.perf_counter() - t0
    events = prof.key_averages()
    print(events.table(sort_by="self_device_time_total", row_limit=25), file=sys.stderr)
    busy = sum(e.self_device_time_total for e in events) / 1e6
    print(f"profiled step: {wall:.3f} s wall (profiler on), GPU busy {busy:.3f} s", file=sys.stderr, flush=True)


def main(a) -> dict:
    from rlhf.actors.deepspeed_rank import OptimSettings
    from rlhf.actors.policy_trainer import PolicyTrainer
    from rlhf.algorithms.logprobs import kernel_available
    from rlhf.scoring import fused_output_head, logprobs_path
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
    if a.profile:
        profile_step(lambda: trainer.train_sft(batch, loss_tokens))
    t0 = time.perf_counter()
    for _ in range(a.steps):
        trainer.train_sft(batch, loss_tokens)
    sync()
    seconds = (time.perf_counter() - t0) / a.steps
    cfg = model.config
    # tied: the embedding counts once, as the output matmul; ZeRO-3 shards report their full size in ds_numel
    n_params = sum(getattr(p, "ds_numel", p.numel()) for p in model.parameters())
    mean_len = tokens / len(exs)
    head = cfg.vocab_size * cfg.hidden_size
    step_flops = (6 * (n_params - head) * tokens + 6 * head * loss_tokens
                  + 6 * cfg.num_hidden_layers * cfg.hidden_size * mean_len * tokens)
    flops_per_token = step_flops / tokens
    tps = tokens / seconds
    return {"size": a.size, "zero_stage": a.zero_stage, "packing": a.packing, "attention": cfg._attn_implementation,
            "logprobs": "fused" if fused_output_head(trainer.engine) else "kernel" if logprobs_path() == "logits"
            and kernel_available(torch.empty(0, device=trainer.device)) else "blocks",
            "gradient_checkpointing": a.gradient_checkpointing, "examples": len(exs), "forwards": len(batch),
            "max_tokens": a.max_tokens if a.packing else None, "micro_batch": None if a.packing else a.micro_batch,
            "kernels": os.environ.get("RLHF_KERNELS", "auto"), "tokens_per_step": tokens, "loss_tokens": loss_tokens,
            "padded_tokens_per_step": sum(int(mb["input_ids_BT"].numel()) for mb in batch),
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
    p.add_argument("--profile", type=lambda s: s == "true", default=False)
    args = p.parse_args()
    result = main(args) | {"device": device_name(), "date": time.strftime("%Y-%m-%d"),
                           "peak_bf16_tflops": peak_tflops()}
    print(json.dumps(result), flush=True)
