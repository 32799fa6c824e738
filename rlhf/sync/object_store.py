"""CPU placement: trainer rank 0 puts the full weights in Ray's object store once, every
generator reads them (zero-copy on a node) and loads them by name (`load_weights`).

Ray is imported where it is used: the engine side of the transports also runs where only
torch is installed (vLLM's CPU environment)."""

from __future__ import annotations

import time
from typing import Optional

from rlhf.sync.stats import SyncStats


class ObjectStoreTransport:
    """Driver side: one `ray.put` by trainer rank 0, one read per generator."""

    def __init__(self):
        self._nbytes = None  # the model's size does not change between syncs

    def sync(self, trainers, generators, version: int, wait: bool = True) -> SyncStats:
        import ray

        if self._nbytes is None:
            self._nbytes = ray.get(trainers.actors[0].weights_nbytes.remote())
        t0 = time.perf_counter()
        published = trainers.each(lambda a: a.publish_weights.remote())
        (ref,) = published[0]  # rank 0 holds the weights; other ranks took part in the gather
        loads = [g.load_weights.remote(ref, version) for g in generators.actors]
        if not wait:
            return SyncStats(time.perf_counter() - t0, self._nbytes, version, pending=loads)
        assert ray.get(loads) == [version] * len(generators)
        return SyncStats(time.perf_counter() - t0, self._nbytes, version)


def publish(weights: Optional[dict]) -> Optional[list]:
    """Trainer side: [ref] of the full weights on rank 0 (`weights` is None on other ranks).
    The generator side is the engine's own `load_weights(named_tensors)`."""
    import ray

    return [ray.put(weights)] if weights is not None else None
