"""The measurement both log-prob memory benchmarks make, in a fresh subprocess per cell:
the peak extra memory and the time of a computation whose inputs are already allocated.

On CPU the peak is the growth of the process's max resident set size
(getrusage(RUSAGE_SELF).ru_maxrss), on CUDA that of torch.cuda.max_memory_allocated; the time is
the faster of two runs (synchronised on CUDA)."""

from __future__ import annotations

import json
import os
import resource
import subprocess
import sys
import time


def measure(run, device: str) -> dict:
    """{"peak_extra_mb", "seconds"} of `run()`, called twice."""
    import torch

    cuda = device.startswith("cuda")
    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        peak = torch.cuda.max_memory_allocated
    else:
        peak = lambda: resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # noqa: E731  (KiB on Linux)
    base = peak()
    times = []
    for _ in range(2):
        t0 = time.perf_counter()
        run()
        if cuda:
            torch.cuda.synchronize()
        times.append(time.perf_counter() - t0)
    return {"peak_extra_mb": (peak() - base) / 2**20, "seconds": min(times)}


def run_child(code: str, args: list[str]) -> subprocess.CompletedProcess:
    """`python -c code args...` with this checkout and this folder importable; `code` prints
    `measure(...)` as its last line of JSON."""
    here = os.path.dirname(os.path.abspath(__file__))
    path = os.pathsep.join([os.path.dirname(here), here, os.environ.get("PYTHONPATH", "")])
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=path))


def child_result(out: subprocess.CompletedProcess) -> dict:
    return json.loads(out.stdout.strip().splitlines()[-1])
