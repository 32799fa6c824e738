"""Split placement: trainer rank 0 and every generator worker form a process group of their
own (NCCL on GPU, gloo on CPU); weights are broadcast bucket by bucket, each generator
worker loading a bucket as it arrives. Any number of generators, nodes and tensor-parallel
workers: the rendezvous is rank 0's node address as Ray registered it.

The driver, trainer and engine sides of the transport, in that order. Ray is imported where
it is used: the engine side also runs where only torch is installed (vLLM's CPU environment)."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Optional

from rlhf.sync.buckets import bucket_nbytes, flatten, plan_buckets
from rlhf.sync.collective import broadcast_bucket, receive_buckets, weight_group
from rlhf.sync.export import WeightExport
from rlhf.sync.stats import SyncStats

# ---- driver --------------------------------------------------------------------------------


class BroadcastTransport:
    def __init__(self, bucket_mb: float, backend: str):
        self.bucket_bytes, self.backend = int(bucket_mb * (1 << 20)), backend
        self.plan: list = []
        self._members: list = []  # actor ids of the group (a restarted generator means a new group)

    def connect(self, trainers, generators) -> None:
        import ray

        rank0 = trainers.actors[0]
        self.plan = plan_buckets(ray.get(rank0.weight_metas.remote()), self.bucket_bytes)
        workers = generators.each(lambda g: g.num_workers.remote())
        world = 1 + sum(workers)
        addr, port = ray.get(rank0.rendezvous.remote())
        first = [1 + sum(workers[:j]) for j in range(len(workers))]
        refs = [rank0.join_weight_group.remote(addr, port, world, self.backend)]
        refs += [g.join_weight_group.remote(addr, port, f, world, self.backend, self.plan)
                 for g, f in zip(generators.actors, first)]
        ray.get(refs)
        self._members = _ids(trainers, generators)

    def sync(self, trainers, generators, version: int, wait: bool = True) -> SyncStats:
        import ray

        if self._members != _ids(trainers, generators):
            self.connect(trainers, generators)
        t0 = time.perf_counter()
        sends = [t.broadcast_weights.remote(self.plan) for t in trainers.actors]  # all ranks: ZeRO-3 gathers
        loads = [g.receive_weights.remote(version) for g in generators.actors]
        nbytes = sum(map(bucket_nbytes, self.plan))
        if not wait:
            return SyncStats(time.perf_counter() - t0, nbytes, version, pending=loads + sends)
        ray.get(sends)
        assert ray.get(loads) == [version] * len(generators)
        return SyncStats(time.perf_counter() - t0, nbytes, version)


def _ids(*groups) -> list:
    return [a._actor_id for g in groups for a in g.actors]


# ---- trainer -------------------------------------------------------------------------------


def join_as_sender(addr: str, port: int, world_size: int, backend: str):
    """Trainer rank 0 becomes rank 0 of the broadcast group with every generator worker."""
    return weight_group(addr, port, 0, world_size, backend)


def send_weights(export: WeightExport, plan: list, group: Optional[object]) -> int:
    """Bucket by bucket, every rank gathers (ZeRO-3); the rank holding the `group` (rank 0)
    sends. Returns the number of buckets."""
    for bucket in plan:
        with export.gathered(bucket) as tensors:
            if group is not None:
                broadcast_bucket(group, flatten(bucket, tensors))
    return len(plan)


# ---- engine --------------------------------------------------------------------------------


@dataclass
class BroadcastReceiver:
    """A generator worker's place in the broadcast group, and the bucket plan it receives."""

    group: object
    plan: list

    def receive(self, device, load: Callable[[dict], None], whole: bool = False) -> None:
        """Hands each bucket, as name -> tensor views, to `load` as it arrives; `whole`: one
        call with every bucket, for a loader that needs each layer in one piece."""
        buckets = receive_buckets(self.group, self.plan, device)
        if whole:
            buckets = [{n: t for b in buckets for n, t in b.items()}]
        for tensors in buckets:
            load(tensors)


def join_as_receiver(addr: str, port: int, rank: int, world_size: int, backend: str, plan: list) -> BroadcastReceiver:
    return BroadcastReceiver(weight_group(addr, port, rank, world_size, backend), plan)
