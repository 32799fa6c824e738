"""Combining metrics from shards (micro-batches, data-parallel ranks) and from repeats."""

from __future__ import annotations


def combine_shards(shards: list[dict]) -> dict:
    """Losses add up over shards (each shard's loss uses the batch's global normalisers);
    every other metric is averaged."""
    out = {}
    for k in shards[0]:
        vals = [m[k] for m in shards if k in m]
        out[k] = sum(vals) if k.endswith("_loss") else sum(vals) / len(vals)
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
