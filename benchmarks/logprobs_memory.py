"""Peak memory and time of chosen-token log-probs over a 152k vocabulary: the naive
full log-softmax versus rlhf.algorithms.token_logprobs (chunked logsumexp).

    python benchmarks/logprobs_memory.py            # prints one JSON line

Each variant runs in a fresh subprocess; peak memory is the process's max RSS growth
during the computation (CPU). On a GPU, torch.cuda.max_memory_allocated is used instead.
"""

from __future__ import annotations

import json
import subprocess
import sys

VOCAB, BATCH, SEQ = 152_064, 4, 1024  # 4096 positions: four 1024-row chunks

CHILD = r"""
import json, resource, sys, time, torch
from rlhf.algorithms import token_logprobs
variant, dtype = sys.argv[1], getattr(torch, sys.argv[2])
B, T, V = {B}, {T}, {V}
dev = "cuda" if torch.cuda.is_available() else "cpu"
torch.manual_seed(0)
logits = torch.randn(B, T, V, dtype=dtype, device=dev)
labels = torch.randint(0, V, (B, T), device=dev)
if dev == "cuda":
    torch.cuda.reset_peak_memory_stats(); base = torch.cuda.memory_allocated()
else:
    base = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
t0 = time.perf_counter()
for _ in range(3):
    if variant == "naive":
        out = torch.log_softmax(logits.float(), -1).gather(-1, labels[..., None]).squeeze(-1)
    else:
        out = token_logprobs(logits, labels)
if dev == "cuda":
    torch.cuda.synchronize(); peak = torch.cuda.max_memory_allocated() - base
else:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 - base
print(json.dumps({{"seconds": (time.perf_counter() - t0) / 3, "peak_extra_mb": peak / 2**20, "device": dev}}))
"""


def run(variant: str, dtype: str) -> dict:
    code = CHILD.format(B=BATCH, T=SEQ, V=VOCAB)
    out = subprocess.run([sys.executable, "-c", code, variant, dtype], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    result = {"vocab": VOCAB, "batch": BATCH, "seq": SEQ}
    for dtype in ("float32", "bfloat16"):
        for variant in ("naive", "chunked"):
            r = run(variant, dtype)
            result[f"{variant}_{dtype}_s"] = round(r["seconds"], 3)
            result[f"{variant}_{dtype}_peak_mb"] = round(r["peak_extra_mb"], 1)
            result["device"] = r["device"]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
