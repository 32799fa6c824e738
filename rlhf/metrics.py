"""Combining metrics from shards (micro-batches, data-parallel ranks) and from repeats."""

from __future__ import annotations

import time
from contextlib import contextmanager


def combine_shards(shards: list[dict]) -> dict:
    """Losses add up over shards (each shard's loss uses the batch's global normalisers);
    every other metric is averaged over the shards that report it (a rank with only empty
    micro-batches reports no loss of its own). No shards: {}."""
    out = {}
    for k in dict.fromkeys(k for m in shards for k in m):
        vals = [m[k] for m in shards if k in m]
        out[k] = sum(vals) if k.endswith("_loss") else sum(vals) / len(vals)
    return out


def combine_reward_metrics(parts: list[dict], sizes: list[int]) -> dict:
    """Counts (`/failures`, `/timeouts`) add up over reward actors; means are weighted by items scored."""
    out: dict[str, float] = {}
    total = sum(sizes)
    for metrics, size in zip(parts, sizes):
        for k, v in metrics.items():
            out[k] = out.get(k, 0.0) + (v if k.endswith(("/failures", "/timeouts")) else v * size / max(total, 1))
    return out


def mean_dicts(dicts: list[dict]) -> dict:
    """Per-key mean over the dicts that have the key."""
    keys = {k for d in dicts for k in d}
    return {k: sum(d[k] for d in dicts if k in d) / sum(k in d for d in dicts) for k in keys}


def pass_at_k(n: int, c: int, k: int) -> float:
    """Unbiased pass@k from n samples of which c passed (Chen et al. 2021, eq. 1):
    1 - C(n-c, k) / C(n, k), the chance that k of the n samples drawn without replacement
    contain at least one that passed."""
    from math import comb

    if not 0 <= c <= n or not 1 <= k <= n:
        raise ValueError(f"pass_at_k needs 0 <= c <= n and 1 <= k <= n, got n={n} c={c} k={k}")
    return 1.0 - comb(n - c, k) / comb(n, k)


class PhaseTimer:
    """Seconds per named phase of a step; a phase may run several times in a step and adds up."""

    def __init__(self):
        self.seconds: dict[str, float] = {}

    def reset(self) -> None:
        self.seconds = {}

    @contextmanager
    def timed(self, phase: str):
        t0 = time.perf_counter()
        try:
            yield
        finally:
            self.seconds[phase] = self.seconds.get(phase, 0.0) + time.perf_counter() - t0
