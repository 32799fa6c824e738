from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Protocol

import ray


@dataclass
class SyncStats:
    seconds: float
    num_bytes: int
    version: int
    pending: list = field(default_factory=list)  # refs of generator loads still running (wait=False)


class WeightTransport(Protocol):
    def sync(self, trainers, generators, version: int, wait: bool = True) -> SyncStats:
        """Make every generator hold the trainers' current weights, tagged `version`. With
        `wait=False` a transport may return once the trainers' part is done, leaving the
        generators' loads in `SyncStats.pending` (they run after calls already queued)."""


class ObjectStoreTransport:
    """CPU transport: one `ray.put` by trainer rank 0, one read per generator (zero-copy on a node)."""

    def __init__(self):
        self._nbytes = None  # the model's size does not change between syncs

    def sync(self, trainers, generators, version: int, wait: bool = True) -> SyncStats:
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


def make_transport(backend: str) -> WeightTransport:
    """The transport for a generator backend/placement."""
    if backend in ("hf", "vllm"):  # vllm: through host memory until the NCCL / CUDA IPC transports land
        return ObjectStoreTransport()
    raise NotImplementedError(f"no weight transport for generator backend {backend!r} yet")
