"""Colocated placement: a generator worker and a trainer rank share each GPU. Every trainer
rank gathers a bucket (ZeRO-3) into one buffer and shares it through CUDA IPC; each
generator worker opens the buffer on its own GPU and loads it in place. Nothing goes
through the host or the network."""

from __future__ import annotations

import time

import ray

from rlhf.sync.base import SyncStats
from rlhf.sync.buckets import bucket_nbytes, plan_buckets


def check_colocated(trainer_gpus: list[str], generator_gpus: list[list[str]]) -> None:
    """Every generator worker's GPU must hold a trainer rank (its IPC source)."""
    have = set(trainer_gpus)
    for j, gpus in enumerate(generator_gpus):
        if not gpus:
            raise RuntimeError(f"generator {j} has no GPU: CUDA IPC weight sync needs colocated GPUs")
        alone = [u for u in gpus if u not in have]
        if alone:
            raise RuntimeError(f"generator {j} runs on GPU(s) {alone} where no trainer rank runs: CUDA IPC needs "
                               "colocated roles (placement.mode=colocate), or use generator.weight_sync=broadcast")


class IPCTransport:
    def __init__(self, bucket_mb: float):
        self.bucket_bytes = int(bucket_mb * (1 << 20))
        self.plan: list = []

    def connect(self, trainers, generators) -> None:
        check_colocated(trainers.each(lambda t: t.device_uuid.remote()),
                        generators.each(lambda g: g.device_uuids.remote()))
        self.plan = plan_buckets(ray.get(trainers.actors[0].weight_metas.remote()), self.bucket_bytes)

    def sync(self, trainers, generators, version: int, wait: bool = True) -> SyncStats:
        if not self.plan:
            self.connect(trainers, generators)
        t0 = time.perf_counter()
        # Trainer rank 0 hands each bucket to the generators itself: one driver call per sync.
        trainers.each(lambda t: t.share_weights_ipc.remote(generators.actors, self.plan, version))
        return SyncStats(time.perf_counter() - t0, sum(map(bucket_nbytes, self.plan)), version)
