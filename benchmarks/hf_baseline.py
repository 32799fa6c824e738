"""GPU: the baseline for benchmarks/trainer_mfu.py — a plain Hugging Face bf16 training loop
(no DeepSpeed, no packing): fixed-length rows of random tokens, SDPA attention, fused AdamW,
one optimizer step per batch. Same model builder and FLOP count as trainer_mfu.py.

    python benchmarks/hf_baseline.py --size 1.5b --rows 8 --seq-len 1024    # one JSON line
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
from trainer_mfu import device_name, peak_tflops, sync  # noqa: E402


def main(a) -> dict:
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(build(a.size), dtype=torch.bfloat16,
                                                 attn_implementation="sdpa").cuda()
    model.gradient_checkpointing_enable() if a.gradient_checkpointing else None
    opt = torch.optim.AdamW(model.parameters(), lr=1e-5, fused=True)
    g = torch.Generator().manual_seed(0)
    ids = torch.randint(300, 150000, (a.rows, a.seq_len), generator=g).cuda()

    def step():
        loss = model(input_ids=ids, labels=ids, use_cache=False).loss
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()  # warm-up
    sync()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    seconds = (time.perf_counter() - t0) / a.steps
    cfg = model.config
    n_params = sum(p.numel() for p in model.parameters())
    flops_per_token = 6 * n_params + 6 * cfg.num_hidden_layers * cfg.hidden_size * a.seq_len
    tps = a.rows * a.seq_len / seconds
    return {"baseline": "hf", "size": a.size, "rows": a.rows, "seq_len": a.seq_len, "step_seconds": seconds,
            "tokens_per_s": tps, "model_tflops": tps * flops_per_token / 1e12,
            "mfu": tps * flops_per_token / 1e12 / peak_tflops() if peak_tflops() else None,
            "peak_memory_GiB": torch.cuda.max_memory_allocated() / 2**30}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--size", choices=list(SIZES), default="0.5b")
    p.add_argument("--rows", type=int, default=8)
    p.add_argument("--seq-len", type=int, default=1024)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--gradient-checkpointing", action="store_true")
    print(json.dumps(main(p.parse_args()) | {"device": device_name(), "date": time.strftime("%Y-%m-%d")}), flush=True)
