"""Split placement: trainer rank 0 and every generator worker form a process group of their
own (NCCL on GPU, gloo on CPU); weights are broadcast bucket by bucket, each generator
worker loading a bucket as it arrives. Any number of generators, nodes and tensor-parallel
workers: the rendezvous is rank 0's node address as Ray registered it."""

from __future__ import annotations

import time

import ray

from rlhf.sync.base import SyncStats
from rlhf.sync.buckets import bucket_nbytes, plan_buckets


class BroadcastTransport:
    def __init__(self, bucket_mb: float, backend: str):
        self.bucket_bytes, self.backend = int(bucket_mb * (1 << 20)), backend
        self.plan: list = []
        self._members: list = []  # actor ids of the group (a restarted generator means a new group)

    def connect(self, trainers, generators) -> None:
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
