"""Colocated placement: a generator worker and a trainer rank share each GPU. Every trainer
rank gathers a bucket (ZeRO-3) into its shared buffer and each generator worker loads it in
place from the buffer on its own GPU. Nothing goes through the host or the network.

The buffers (one per dtype, as large as the largest bucket) are allocated at the first sync
and reused by every later one: their IPC handles are exchanged once and each engine opens
them once (opening a handle costs milliseconds), so a sync is, per bucket, a device copy and
one load call; the engine's prefix cache is reset once, after the last bucket.

The driver, trainer and engine sides of the transport, in that order. Ray is imported where
it is used: the engine side also runs where only torch is installed (vLLM's CPU environment)."""

from __future__ import annotations

import time

import torch
import torch.distributed as dist

from rlhf.sync.buckets import TensorMeta, bucket_nbytes, plan_buckets, unflatten
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
        phases = trainers.each(lambda t: t.share_weights_ipc.remote(generators.actors, self.plan, version))[0]
        return SyncStats(time.perf_counter() - t0, sum(map(bucket_nbytes, self.plan)), version, phases=phases)


# ---- trainer -------------------------------------------------------------------------------


class SharedBuffers:
    """A trainer rank's IPC buffers, one per dtype, and every rank's handles to them."""

    def __init__(self, plan: list, rank: int, world_size: int):
        uuid = device_uuid()
        sizes: dict = {}
        for bucket in plan:
            sizes[bucket[0].dtype] = max(sizes.get(bucket[0].dtype, 0), sum(m.numel for m in bucket))
        self.buffers = {dtype: torch.empty(n, dtype=dtype, device="cuda") for dtype, n in sizes.items()}
        mine = {str(dtype): (uuid, ipc_handle(buf)) for dtype, buf in self.buffers.items()}
        everyone: list = [None] * world_size
        dist.all_gather_object(everyone, mine)
        # per dtype: GPU uuid -> handle, and a key the engines cache the opened buffer under
        self.handles = {dtype: {"key": f"{uuid}-{rank}-{id(self)}-{dtype}", "by_gpu": dict(h[dtype] for h in everyone)}
                        for dtype in mine}

    def fill(self, bucket: list[TensorMeta], tensors: dict) -> dict:
        """The bucket copied into its dtype's buffer; the handles the engines open it by."""
        buf = self.buffers[bucket[0].dtype]
        offset = 0
        for m in bucket:
            buf[offset:offset + m.numel].view(m.shape).copy_(tensors[m.name])
            offset += m.numel
        torch.cuda.current_stream().synchronize()  # the engine reads it from another process
        return self.handles[str(bucket[0].dtype)]


def share_weights(export: WeightExport, plan: list, generators: list, version: int, rank: int,
                  world_size: int, buffers: SharedBuffers) -> dict:
    """Bucket by bucket, every rank gathers and copies into its shared buffer; rank 0 has each
    generator load the bucket (the last one carries `version`). Every rank must call; returns
    rank 0's seconds per phase: gather, copy, load (the generators' calls, of which generator 0
    reports model_load, rpc and cache_reset; `call` is the rest: Ray and pickling) and barrier."""
    import ray

    seconds = dict.fromkeys(("gather_s", "copy_s", "load_s", "model_load_s", "rpc_s", "cache_reset_s", "call_s",
                             "barrier_s"), 0.0)
    for i, bucket in enumerate(plan):
        t0 = time.perf_counter()
        with export.gathered(bucket) as tensors:
            t1 = time.perf_counter()
            handles = buffers.fill(bucket, tensors)
        t2 = time.perf_counter()
        if rank == 0:
            last = version if i == len(plan) - 1 else None
            parts = ray.get([g.load_ipc_bucket.remote(handles, bucket, last) for g in generators])[0]
            for k, v in parts.items():
                seconds[k] += v
            seconds["call_s"] += time.perf_counter() - t2 - sum(parts.values())
        t3 = time.perf_counter()
        dist.barrier()  # every generator has loaded before a buffer is written again
        t4 = time.perf_counter()
        for k, dt in zip(("gather_s", "copy_s", "load_s", "barrier_s"), (t1 - t0, t2 - t1, t3 - t2, t4 - t3)):
            seconds[k] += dt
    return seconds


# ---- engine --------------------------------------------------------------------------------


_OPENED: dict = {}  # key -> a trainer's shared buffer mapped into this process (opened once)


def open_bucket(handles: dict, bucket: list[TensorMeta]) -> dict[str, torch.Tensor]:
    """The bucket in the buffer shared from this process's GPU (`handles` as from
    `SharedBuffers`), as name -> tensor views of it (no copy)."""
    key = handles["key"]
    if key not in _OPENED:
        _OPENED[key] = open_ipc_handle(handles["by_gpu"][device_uuid()])
    return unflatten(bucket, _OPENED[key][:sum(m.numel for m in bucket)])
