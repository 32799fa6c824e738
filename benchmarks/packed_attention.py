"""GPU: the attention kernel on packed rows. One training step (forward, backward, fused AdamW)
of a Qwen2.5-shaped model (random weights, bf16) on one packed row of --tokens tokens made of
sequences of random lengths in [--min-len, --max-len], per attention backend: `rlhf_varlen`
(rlhf.attention: PyTorch's variable-length flash kernel), `sdpa` (transformers' dense
document mask), `flex_attention`; and the per-token log-probs of the packed row against each
sequence scored alone (padded SDPA), as the check that the row keeps sequences apart.

    python benchmarks/packed_attention.py --size 1.5b --attention rlhf_varlen   # one JSON line

Plain transformers + torch (no DeepSpeed): it measures the kernel and layout, not the trainer.
FLOPs per token as in trainer_mfu.py.
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


def packed_row(tokens: int, lo: int, hi: int, seed: int = 0):
    g = torch.Generator().manual_seed(seed)
    seqs, total = [], 0
    while total < tokens:
        n = min(int(torch.randint(lo, hi + 1, (1,), generator=g)), tokens - total)
        seqs.append(torch.randint(300, 150000, (n,), generator=g))
        total += n
    ids = torch.cat(seqs)[None]
    pos = torch.cat([torch.arange(len(s)) for s in seqs])[None]
    return seqs, ids, pos


def main(a) -> dict:
    from transformers import AutoModelForCausalLM

    from rlhf.attention import register
    from rlhf.algorithms import token_logprobs

    register()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    model = AutoModelForCausalLM.from_pretrained(build(a.size, a.root), dtype=torch.bfloat16,
                                                 attn_implementation=a.attention).to(dev)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-6, fused=dev == "cuda")
    seqs, ids, pos = packed_row(a.tokens, a.min_len, a.max_len)
    ids, pos = ids.to(dev), pos.to(dev)

    def step():
        logits = model(input_ids=ids, position_ids=pos, use_cache=False).logits
        loss = -token_logprobs(logits[:, :-1], ids[:, 1:]).mean()
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    step()
    sync()
    if dev == "cuda":
        torch.cuda.reset_peak_memory_stats()
    t0 = time.perf_counter()
    for _ in range(a.steps):
        step()
    sync()
    seconds = (time.perf_counter() - t0) / a.steps
    with torch.no_grad():  # the packed row against its first sequences scored alone
        packed = token_logprobs(model(input_ids=ids, position_ids=pos, use_cache=False).logits[:, :-1], ids[:, 1:])[0]
        diff, start = 0.0, 0
        for s in seqs[:4]:
            alone = model(input_ids=s[None].to(dev), use_cache=False).logits
            lp = token_logprobs(alone[:, :-1], s[None, 1:].to(dev))[0]
            diff = max(diff, float((packed[start:start + len(s) - 1] - lp).abs().max()))
            start += len(s)
    cfg = model.config
    n_params = sum(p.numel() for p in model.parameters())
    mean_len = a.tokens / len(seqs)
    flops = 6 * n_params + 6 * cfg.num_hidden_layers * cfg.hidden_size * mean_len
    tps = a.tokens / seconds
    return {"size": a.size, "attention": a.attention, "tokens": a.tokens, "sequences": len(seqs),
            "step_seconds": seconds, "tokens_per_s": tps, "model_tflops": tps * flops / 1e12,
            "mfu": tps * flops / 1e12 / peak_tflops() if peak_tflops() else None,
            "peak_memory_GiB": torch.cuda.max_memory_allocated() / 2**30 if dev == "cuda" else None,
            "packed_vs_alone_max_abs_logprob_diff": diff}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--size", choices=list(SIZES), default="1.5b")
    p.add_argument("--attention", default="rlhf_varlen")
    p.add_argument("--tokens", type=int, default=16384)
    p.add_argument("--min-len", type=int, default=256)
    p.add_argument("--max-len", type=int, default=2048)
    p.add_argument("--steps", type=int, default=3)
    p.add_argument("--root", default="/tmp/bench-models")
    print(json.dumps(main(p.parse_args()) | {"device": device_name(), "date": time.strftime("%Y-%m-%d")}), flush=True)
