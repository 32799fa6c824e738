from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Protocol

import ray

log = logging.getLogger(__name__)


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


def choose_transport(trainer_gpus: list, generator_gpus: list[list[str]]) -> str:
    """`weight_sync=auto`: from where the actors run (GPU uuids: one per trainer rank, None on
    CPU; a list per generator, empty on CPU).
    Every generator worker on a trainer rank's GPU: CUDA IPC. Each on a GPU of its own, apart
    from trainer rank 0: an NCCL broadcast group. On CPU, or a mix: through the object store."""
    workers = [u for gpus in generator_gpus for u in gpus]
    if not all(trainer_gpus) or not workers or not all(generator_gpus):
        return "object_store"
    if all(u in set(trainer_gpus) for u in workers):
        return "ipc"
    if trainer_gpus[0] not in workers and len(set(workers)) == len(workers):  # NCCL: one rank per GPU
        return "broadcast"
    return "object_store"


def make_transport(g, trainers, generators) -> WeightTransport:
    """The transport named by `generator.weight_sync` (config section `g`), or the one the
    actors' placement calls for (`auto`)."""
    kind = g.weight_sync
    if kind == "auto":
        kind = choose_transport(trainers.each(lambda t: t.device_uuid.remote()),
                                generators.each(lambda x: x.device_uuids.remote()))
        log.info("weight sync: %s (generator.weight_sync=auto)", kind)
    if kind == "object_store":
        return ObjectStoreTransport()
    if kind == "broadcast":
        from rlhf.sync.broadcast import BroadcastTransport

        on_gpu = all(generators.each(lambda x: x.device_uuids.remote()))
        return BroadcastTransport(g.sync_bucket_mb, "nccl" if on_gpu else "gloo")
    if kind == "ipc":
        from rlhf.sync.ipc import IPCTransport

        return IPCTransport(g.sync_bucket_mb)
    raise ValueError(f"generator.weight_sync={kind!r}: use auto, object_store, broadcast or ipc")
