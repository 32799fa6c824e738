"""Process-side pieces of the weight transports: a process group of its own for weight
broadcasts, and CUDA IPC sharing. Used by both ends of the broadcast and IPC transports.

The broadcast group is built straight from a TCP store and a backend (NCCL on GPU, gloo on
CPU), next to, not through, `torch.distributed`'s default group: the trainer's DeepSpeed
group stays untouched, and a vLLM worker keeps its own.
"""

from __future__ import annotations

from datetime import timedelta

import torch

from rlhf.sync.buckets import TensorMeta, unflatten


def weight_group(addr: str, port: int, rank: int, world_size: int, backend: str, timeout_s: float = 600.0):
    """Rank `rank` of a `world_size` group rendezvousing at rank 0's `addr:port`."""
    import torch.distributed as dist

    from rlhf.actors.runtime import rendezvous_store

    timeout = timedelta(seconds=timeout_s)
    store = dist.PrefixStore("rlhf-weights", rendezvous_store(addr, port, world_size, rank, timeout_s))
    if backend == "nccl":
        return dist.ProcessGroupNCCL(store, rank, world_size)
    if backend == "gloo":
        return dist.ProcessGroupGloo(store, rank, world_size, timeout)
    raise ValueError(f"weight group backend {backend!r}: use nccl or gloo")


def broadcast_bucket(group, flat: torch.Tensor) -> None:
    """Rank 0 sends `flat`; every other rank receives into its own `flat`."""
    group.broadcast(flat, 0).wait()


def receive_buckets(group, plan: list[list[TensorMeta]], device):
    """Yields each bucket of `plan`, received from rank 0, as name -> tensor views."""
    for bucket in plan:
        flat = torch.empty(sum(m.numel for m in bucket), dtype=bucket[0].dtype, device=device)
        broadcast_bucket(group, flat)
        yield unflatten(bucket, flat)


def device_uuid() -> str:
    """The identity of this process's GPU, the same in every process that sees it."""
    return str(torch.cuda.get_device_properties(torch.cuda.current_device()).uuid)


def ipc_handle(flat: torch.Tensor) -> tuple:
    """A handle another process on the same GPU can open without a copy."""
    from torch.multiprocessing.reductions import reduce_tensor

    return reduce_tensor(flat)


def open_ipc_handle(handle: tuple) -> torch.Tensor:
    """The shared tensor, mapped into this process on its current device (device numbering may
    differ between processes that see the same GPU)."""
    rebuild, args = handle
    args = list(args)
    args[6] = torch.cuda.current_device()  # the rebuild arguments' device index
    return rebuild(*args)
