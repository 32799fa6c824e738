"""Colocated placement: a generator worker and a trainer rank share each GPU, and the worker
loads the weights in place from the trainer rank's memory on its own GPU. Nothing goes
through the host or the network.

Two ways the weights are shared, chosen once at the first sync:
- `direct`: where the export is the parameters as they are (no ZeRO-3 gather, no LoRA merge,
  no dequantisation), each engine maps the trainer rank's parameter storage itself (DeepSpeed
  keeps it in a few flat buffers, updated in place) and reads the weights from it: no copy on
  the trainer's side at all.
- `buffer`: otherwise every rank gathers a bucket (ZeRO-3), computes it (LoRA merged) and
  copies it into a buffer of its own, one per dtype, allocated once and reused by every sync.

Either way what an engine reads is a `SharedSource`: the IPC handles of some memory and where
each weight lies in it. A source is sent with its first load and named by a key after that;
each engine opens the handles once (opening costs milliseconds) and, on GPU, records the
copies its model's `load_weights` makes from it (`rlhf.sync.replay`), so a later sync is one
call per source that replays the copies, then one prefix-cache reset.

The driver, trainer and engine sides of the transport, in that order. Ray is imported where
it is used: the engine side also runs where only torch is installed (vLLM's CPU environment)."""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from typing import Optional

import torch
import torch.distributed as dist

from rlhf.actors.runtime import shareable_allocations
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
        # Trainer rank 0 has the generators load each source itself: one driver call per sync.
        phases = trainers.each(lambda t: t.share_weights_ipc.remote(generators.actors, self.plan, version))[0]
        return SyncStats(time.perf_counter() - t0, sum(map(bucket_nbytes, self.plan)), version, phases=phases)


# ---- what an engine reads ------------------------------------------------------------------


@dataclass(frozen=True)
class SharedView:
    """One weight inside shared memory: storage `storage` of its source, at `offset` elements."""
    name: str
    storage: int
    offset: int
    shape: tuple
    stride: tuple


@dataclass(frozen=True)
class SharedSource:
    """`storages[i]`: GPU uuid -> the IPC handle of a tensor spanning storage i of the trainer rank
    on that GPU (every rank lays its weights out alike); `views`: where each weight lies."""
    key: str
    storages: tuple
    views: tuple


def _spanning(t: torch.Tensor) -> torch.Tensor:
    """A 1-D tensor over the whole of `t`'s storage, in `t`'s dtype."""
    n = t.untyped_storage().nbytes() // t.element_size()
    return t.new_empty(0).set_(t.untyped_storage(), 0, (n,), (1,))


def layout(tensors: dict[str, torch.Tensor]) -> Optional[tuple[list[torch.Tensor], tuple]]:
    """The storages `tensors` live in and each tensor's view of them; None if two tensors of
    different dtypes share a storage (a view could not be rebuilt from a typed base)."""
    storages, index, views = [], {}, []
    for name, t in tensors.items():
        ptr = t.untyped_storage().data_ptr()
        if ptr not in index:
            index[ptr] = len(storages)
            storages.append(_spanning(t))
        base = storages[index[ptr]]
        if base.dtype != t.dtype:
            return None
        views.append(SharedView(name, index[ptr], t.storage_offset(), tuple(t.shape), tuple(t.stride())))
    return storages, tuple(views)


def share(tensors: Optional[dict[str, torch.Tensor]], world_size: int) -> tuple[Optional[SharedSource], list]:
    """Every rank's `tensors` as one source (each rank's own on its GPU), and this rank's
    spanning tensors to keep alive; (None, []) unless every rank has tensors laid out alike.
    Every rank must call (one all-gather)."""
    placed = layout(tensors) if tensors else None
    mine = None if placed is None else ([(device_uuid(), ipc_handle(s)) for s in placed[0]], placed[1],
                                        uuid.uuid4().hex)
    everyone: list = [None] * world_size
    dist.all_gather_object(everyone, mine)
    if any(e is None or e[1] != everyone[0][1] for e in everyone):
        return None, []
    handles, views, key = everyone[0]
    storages = tuple(dict(e[0][i] for e in everyone) for i in range(len(handles)))
    return SharedSource(key, storages, views), placed[0]  # rank 0's fresh key names it on every rank


# ---- trainer -------------------------------------------------------------------------------


class IPCSender:
    """A trainer rank's side, set up at its first sync (every rank at once): the `direct`
    source of its parameters where the export allows it, else one buffer source per bucket."""

    def __init__(self, export: WeightExport, plan: list, rank: int, world_size: int):
        self.export, self.plan, self.rank, self.world_size = export, plan, rank, world_size
        with shareable_allocations():
            self._share()

    def _share(self) -> None:
        export, plan, world_size = self.export, self.plan, self.world_size
        self.sent: set = set()  # (generator index, key) pairs whose source was sent
        params = export.plain_tensors()
        self.direct, self._keep = share(params, world_size)
        if self.direct is not None:
            self.mode, self._addresses = "direct", export.addresses()
            return
        self.mode = "buffer"
        sizes: dict = {}
        for bucket in plan:
            sizes[bucket[0].dtype] = max(sizes.get(bucket[0].dtype, 0), sum(m.numel for m in bucket))
        self.buffers = {dtype: torch.empty(n, dtype=dtype, device="cuda") for dtype, n in sizes.items()}
        self.bucket_sources = []
        for bucket in plan:  # the bucket's views of its dtype's buffer, as the engines will see them
            buf = self.buffers[bucket[0].dtype]
            source, keep = share(unflatten(bucket, buf[:sum(m.numel for m in bucket)]), world_size)
            self.bucket_sources.append(source)
            self._keep += keep

    def moved(self) -> bool:
        """Whether any rank's parameters moved since the direct source was shared (a checkpoint
        load may re-allocate them); collective, so every rank rebuilds together."""
        changed = float(self.export.addresses() != self._addresses)
        flag = torch.tensor([changed], device="cuda")
        dist.all_reduce(flag, op=dist.ReduceOp.MAX)
        return bool(flag.item())

    def fill(self, bucket: list[TensorMeta], tensors: dict) -> None:
        """Buffer mode: the bucket copied into its dtype's buffer."""
        buf = self.buffers[bucket[0].dtype]
        offset = 0
        for m in bucket:
            buf[offset:offset + m.numel].view(m.shape).copy_(tensors[m.name])
            offset += m.numel

    def load_on_generators(self, generators: list, source: SharedSource, version: Optional[int]) -> dict:
        """Rank 0: every generator loads `source` (sent to those that have not got it); returns
        generator 0's seconds by part."""
        import ray

        def call(j, g, resend=False):
            first = resend or (j, source.key) not in self.sent
            self.sent.add((j, source.key))
            return g.load_ipc_bucket.remote(source.key, source if first else None, version)

        parts = ray.get([call(j, g) for j, g in enumerate(generators)])
        unopened = [j for j, p in enumerate(parts) if p.get("unopened")]  # a generator restarted since
        if unopened:
            again = ray.get([call(j, generators[j], resend=True) for j in unopened])
            for j, p in zip(unopened, again):
                parts[j] = p
        return parts[0]

    def sync(self, generators: list, version: int) -> dict:
        """Every rank shares its weights, rank 0 has each generator load them (the last source
        carries `version`). Every rank must call; returns rank 0's seconds per phase: gather and
        copy (buffer mode), load (the generators' calls, of which generator 0 reports model_load,
        rpc and cache_reset; `call` is the rest: Ray and pickling), barrier; and `replayed`, the
        sources generator 0 loaded by replaying recorded copies."""
        seconds = dict.fromkeys(("gather_s", "copy_s", "load_s", "model_load_s", "rpc_s", "cache_reset_s", "call_s",
                                 "barrier_s", "replayed"), 0.0)

        def load(source, last: bool):
            t0 = time.perf_counter()
            if self.rank == 0:
                parts = self.load_on_generators(generators, source, version if last else None)
                for k, v in parts.items():
                    seconds[k] = seconds.get(k, 0.0) + v
                seconds["call_s"] += time.perf_counter() - t0 - sum(v for k, v in parts.items() if k.endswith("_s"))
            t1 = time.perf_counter()
            dist.barrier()  # every generator has loaded before the memory is written again
            seconds["load_s"] += t1 - t0
            seconds["barrier_s"] += time.perf_counter() - t1

        if self.mode == "direct":
            torch.cuda.current_stream().synchronize()  # the update's kernels are done before an engine reads
            load(self.direct, True)
            return seconds
        for i, bucket in enumerate(self.plan):
            t0 = time.perf_counter()
            with self.export.gathered(bucket) as tensors:
                torch.cuda.current_stream().synchronize()  # gather_s is the all-gather's device time, not its launch
                t1 = time.perf_counter()
                self.fill(bucket, tensors)
            torch.cuda.current_stream().synchronize()  # the engine reads it from another process
            seconds["gather_s"] += t1 - t0
            seconds["copy_s"] += time.perf_counter() - t1
            load(self.bucket_sources[i], i == len(self.plan) - 1)
        return seconds


# ---- engine --------------------------------------------------------------------------------


_OPENED: dict = {}  # source key -> name -> views of a trainer's memory mapped into this process


def open_source(key: str, source: Optional[SharedSource]) -> Optional[dict[str, torch.Tensor]]:
    """The weights of source `key` as name -> views of the memory shared from this process's
    GPU (no copy), opened the first time (`source` given) and cached; None if the source was
    never sent to this process (it restarted): the sender then sends it again."""
    if key not in _OPENED:
        if source is None:
            return None
        gpu = device_uuid()
        bases = [open_ipc_handle(handles[gpu]) for handles in source.storages]
        _OPENED[key] = {v.name: bases[v.storage].as_strided(v.shape, v.stride, v.offset) for v in source.views}
    return _OPENED[key]
