"""Peak memory and wall time of response log-probs from the final hidden states: the output layer's
logits followed by `rlhf.algorithms.token_logprobs`, block by block in PyTorch (`blocks`) or by
the Triton kernels (`kernel`, CUDA only; the logits overwritten by their gradient, as the trainer
does), against `rlhf.algorithms.linear_token_logprobs` (the logits are never formed whole;
`fused`: its kernel path on CUDA, its PyTorch blocks elsewhere; `fused-blocks`: the PyTorch
blocks on CUDA too), forward only
(scoring pi_old / pi_ref) and forward + backward (training, gradients of the hidden states and
the output weight).

    python benchmarks/output_layer_logprobs.py [--positions 4096] [--hidden 1536] [--vocab 152064]
        [--dtypes bfloat16] [--device cuda]

prints one JSON line. Every (variant, dtype, pass) runs in a fresh subprocess. The hidden states
and the weight are allocated first; then, on CPU, the peak resident set size is read with
getrusage(RUSAGE_SELF).ru_maxrss before and after the computation, on CUDA
torch.cuda.max_memory_allocated: the difference is the computation's peak extra memory (the
logits and their gradient for the logits path, the scratch blocks and the gradients both paths
return). Time is the faster of two runs (synchronised on CUDA).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys

sys.path.insert(0, os.path.dirname(__file__))
from peak_memory import child_result, run_child  # noqa: E402

CHILD = r"""
import json, sys, torch
from peak_memory import measure
from rlhf.algorithms import token_logprobs
from rlhf.algorithms.linear_logprobs import linear_token_logprobs
variant, dtype, mode, dev = sys.argv[1], getattr(torch, sys.argv[2]), sys.argv[3], sys.argv[7]
K, H, V = map(int, sys.argv[4:7])
torch.manual_seed(0)
hidden = torch.empty(K, H, dtype=dtype, device=dev).normal_()
weight = torch.empty(V, H, dtype=dtype, device=dev).normal_(std=H ** -0.5)
labels = torch.randint(0, V, (K,), device=dev)

def run():
    h, w = (t.detach().requires_grad_(mode == "train") for t in (hidden, weight))
    with torch.set_grad_enabled(mode == "train"):
        if variant in ("blocks", "kernel"):
            lp = token_logprobs((h @ w.T)[None], labels[None], kernel=variant == "kernel", overwrite=True)[0]
        else:
            lp = linear_token_logprobs(h, w, labels, kernel=False if variant == "fused-blocks" else None)
        if mode == "train":
            lp.sum().backward()
            assert h.grad is not None and w.grad is not None

print(json.dumps(measure(run, dev)))
"""


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--positions", type=int, default=4096, help="response positions K")
    ap.add_argument("--hidden", type=int, default=1536, help="hidden size H (1,536: Qwen2.5-1.5B)")
    ap.add_argument("--vocab", type=int, default=152_064, help="vocabulary V (Qwen2.5)")
    ap.add_argument("--dtypes", default="bfloat16,float32")
    ap.add_argument("--device", default="cpu", help="cpu or cuda")
    args = ap.parse_args()
    K, H, V = args.positions, args.hidden, args.vocab
    result = {"positions": K, "hidden": H, "vocab": V, "device": args.device, "cpu_count": os.cpu_count(),
              "machine": platform.machine()}
    if args.device.startswith("cuda"):
        import torch
        result["gpu"] = torch.cuda.get_device_name()
    dtypes = args.dtypes.split(",")
    result["logits_mb"] = {d: round(K * V * (2 if d == "bfloat16" else 4) / 2**20, 1) for d in dtypes}
    cuda = args.device.startswith("cuda")
    variants = ("blocks", "kernel", "fused", "fused-blocks") if cuda else ("blocks", "fused")
    for mode in ("forward", "train"):
        for dtype in dtypes:
            for variant in variants:
                out = run_child(CHILD, [variant, dtype, mode, str(K), str(H), str(V), args.device])
                if out.returncode != 0:  # out of memory, say: record it and go on
                    result[f"{mode}_{dtype}_{variant}_error"] = out.stderr.strip().splitlines()[-1][:200]
                    continue
                r = child_result(out)
                result[f"{mode}_{dtype}_{variant}_peak_mb"] = round(r["peak_extra_mb"], 1)
                result[f"{mode}_{dtype}_{variant}_s"] = round(r["seconds"], 4)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
