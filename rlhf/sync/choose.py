"""Which transport a run uses: the one `generator.weight_sync` names, or the one the actors'
placement calls for (`auto`)."""

from __future__ import annotations

import logging

from rlhf.sync.broadcast import BroadcastTransport
from rlhf.sync.ipc import IPCTransport
from rlhf.sync.object_store import ObjectStoreTransport
from rlhf.sync.stats import WeightTransport

log = logging.getLogger(__name__)


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
        on_gpu = all(generators.each(lambda x: x.device_uuids.remote()))
        return BroadcastTransport(g.sync_bucket_mb, "nccl" if on_gpu else "gloo")
    if kind == "ipc":
        return IPCTransport(g.sync_bucket_mb)
    raise ValueError(f"generator.weight_sync={kind!r}: use auto, object_store, broadcast or ipc")
