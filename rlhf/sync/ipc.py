"""Colocated placement: a generator worker and a trainer rank share each GPU. Every trainer
rank gathers a bucket (ZeRO-3) into one buffer and shares it through CUDA IPC; each
generator worker opens the buffer on its own GPU and loads it in place. Nothing goes
through the host or the network.

The driver, trainer and engine sides of the transport, in that order. Ray is imported where
it is used: the engine side also runs where only torch is installed (vLLM's CPU environment)."""

from __future__ import annotations

import time

import torch
import torch.distributed as dist

from rlhf.sync.buckets import TensorMeta, bucket_nbytes, flatten, plan_buckets, unflatten
from rlhf.sync.collective import device_uuid, ipc_handle, open_ipc_handle
from rlhf.sync.export import WeightExport
from rlhf.sync.stats import SyncStats

# ---- driver --------------------------------------------------------------------------------


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
        import ray

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


# ---- trainer -------------------------------------------------------------------------------


def share_weights(export: WeightExport, plan: list, generators: list, version: int, rank: int,
                  world_size: int) -> int:
    """Bucket by bucket, every rank gathers and shares its copy; rank 0 has each generator
    load the bucket (the last one carries `version`). Every rank must call; returns the
    number of buckets."""
    import ray

    uuid = device_uuid()
    for i, bucket in enumerate(plan):
        with export.gathered(bucket) as tensors:
            flat = flatten(bucket, tensors)  # a fresh buffer: it outlives the gather
        handles: list = [None] * world_size
        dist.all_gather_object(handles, (uuid, ipc_handle(flat)))
        if rank == 0:
            last = version if i == len(plan) - 1 else None
            ray.get([g.load_ipc_bucket.remote(dict(handles), bucket, last) for g in generators])
        dist.barrier()  # every generator has loaded before the buffers are freed
        del flat
    return len(plan)


# ---- engine --------------------------------------------------------------------------------


def open_bucket(handles: dict, bucket: list[TensorMeta]) -> dict[str, torch.Tensor]:
    """The bucket shared from this process's GPU (`handles`: GPU uuid -> handle), as name ->
    tensor views of the trainer's buffer (no copy)."""
    return unflatten(bucket, open_ipc_handle(handles[device_uuid()]))
