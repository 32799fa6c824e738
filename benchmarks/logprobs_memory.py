"""Peak memory and wall time of chosen-token log-probs over a 152k vocabulary (Qwen2.5):
the naive `log_softmax(logits.float()).gather(...)` versus `rlhf.algorithms.token_logprobs`
(block-wise logsumexp, custom backward), in fp32 and bf16, forward only (scoring pi_old /
pi_ref) and forward + backward (training).

    python benchmarks/logprobs_memory.py [--batch 4] [--seq 512] [--chunk-size N] [--device cuda]

prints one JSON line. Every (variant, dtype, pass) runs in a fresh subprocess. The logits
are allocated first, in place (no temporary); then, on CPU, the peak resident set size is
read with getrusage(RUSAGE_SELF).ru_maxrss before and after the computation, on CUDA
torch.cuda.max_memory_allocated: the difference is the peak extra memory of the computation
(its intermediates, plus the logits' gradient when training, which both variants must
produce). Time is the faster of two runs (synchronised on CUDA).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(__file__))
from peak_memory import child_result, run_child  # noqa: E402

VOCAB = 152_064

CHILD = r"""
import json, sys, torch
from peak_memory import measure
from rlhf.algorithms import token_logprobs
variant, dtype, mode, B, T, V, chunk = sys.argv[1], getattr(torch, sys.argv[2]), sys.argv[3], *map(int, sys.argv[4:8])
dev = sys.argv[8]
torch.manual_seed(0)
logits = torch.empty(B, T, V, dtype=dtype, device=dev).normal_()  # in place: no fp32 temporary
labels = torch.randint(0, V, (B, T), device=dev)
kw = {} if chunk <= 0 else {"chunk_size": chunk}

def run():
    x = logits.detach().requires_grad_(mode == "train")
    with torch.set_grad_enabled(mode == "train"):
        if variant == "naive":
            lp = torch.log_softmax(x.float(), -1).gather(-1, labels[..., None]).squeeze(-1)
        else:
            lp = token_logprobs(x, labels, **kw)
        if mode == "train":
            lp.sum().backward()
            assert x.grad is not None

print(json.dumps(measure(run, dev)))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batch", type=int, default=4)
    ap.add_argument("--seq", type=int, default=512)
    ap.add_argument("--chunk-size", type=int, default=0, help="token_logprobs chunk_size (0: its default)")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    result = {"vocab": VOCAB, "batch": args.batch, "seq": args.seq, "chunk_size": args.chunk_size or "default",
              "device": args.device, "cpu_count": os.cpu_count(), "machine": platform.machine()}
    if args.device.startswith("cuda"):
        import torch
        result["gpu"] = torch.cuda.get_device_name()
    positions = args.batch * args.seq
    result["logits_mb"] = {"float32": round(positions * VOCAB * 4 / 2**20, 1),
                           "bfloat16": round(positions * VOCAB * 2 / 2**20, 1)}
    for mode in ("forward", "train"):
        for dtype in ("float32", "bfloat16"):
            for variant in ("naive", "chunked"):
                out = run_child(CHILD, [variant, dtype, mode, str(args.batch), str(args.seq), str(VOCAB),
                                        str(args.chunk_size), args.device])
                out.check_returncode()
                r = child_result(out)
                key = f"{mode}_{dtype}_{variant}"
                result[f"{key}_peak_mb"] = round(r["peak_extra_mb"], 1)
                result[f"{key}_s"] = round(r["seconds"], 3)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
