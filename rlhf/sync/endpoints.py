"""The actors' ends of the weight transports. Ray calls methods of an actor, so these are
mixins: `WeightSender` on the policy trainer, `WeightReceiver` on the generator. Each method
hands over to its transport's module in one call."""

from __future__ import annotations

from typing import Optional

from rlhf.sync import broadcast, ipc, object_store
from rlhf.sync.collective import device_uuid


class WeightSender:
    """For a DeepSpeed rank with `rank`, `world_size`, `device`, `_weight_export()` (an
    `rlhf.sync.export.WeightExport` of its module) and `named_weights()`."""

    def weight_metas(self) -> list:
        """Name, shape and dtype of every weight the generators load (Hugging Face names)."""
        return self._weight_export().metas()

    def weights_nbytes(self) -> int:
        return sum(m.nbytes for m in self.weight_metas())

    def device_uuid(self) -> Optional[str]:
        """This rank's GPU (None on CPU)."""
        return device_uuid() if self.device == "cuda" else None

    def publish_weights(self) -> Optional[list]:
        """Object-store transport: rank 0 puts the weights in the object store once; returns [ref]."""
        return object_store.publish(self.named_weights())

    def join_weight_group(self, addr: str, port: int, world_size: int, backend: str) -> None:
        """Broadcast transport: rank 0 becomes rank 0 of the group with every generator worker."""
        self._weight_group = broadcast.join_as_sender(addr, port, world_size, backend)

    def broadcast_weights(self, plan: list) -> int:
        """Broadcast transport: bucket by bucket, every rank gathers (ZeRO-3), rank 0 sends."""
        return broadcast.send_weights(self._weight_export(), plan, self._weight_group if self.rank == 0 else None)

    def share_weights_ipc(self, generators: list, plan: list, version: int) -> dict:
        """CUDA IPC transport (colocated): every rank shares its weights (its parameters
        themselves, or bucket by bucket through a buffer); each generator worker loads them in
        place from the memory on its own GPU."""
        sender = getattr(self, "_ipc_sender", None)
        if sender is None or (sender.mode == "direct" and sender.moved()):
            sender = self._ipc_sender = ipc.IPCSender(self._weight_export(), plan, self.rank, self.world_size)
        return sender.sync(generators, version)


class WeightReceiver:
    """For a generator with `engine` (an `rlhf.engines.Engine`) and `weights_version`, the
    version tagged on what it samples next."""

    def load_weights(self, named_tensors: dict, version: int) -> int:
        """Object-store transport (or any caller): the full weights, by Hugging Face name."""
        self.engine.load_weights(named_tensors)
        self.weights_version = version
        return version

    def num_workers(self) -> int:
        """Processes of the engine that hold weights (vLLM: one per tensor-parallel rank)."""
        return self.engine.num_workers()

    def join_weight_group(self, addr: str, port: int, first_rank: int, world_size: int, backend: str,
                          plan: list) -> None:
        """Broadcast transport: the engine's workers join as ranks first_rank, first_rank + 1, ..."""
        self.engine.join_weight_group(addr, port, first_rank, world_size, backend, plan)

    def receive_weights(self, version: int) -> int:
        """Broadcast transport: every bucket of the plan, loaded as it arrives."""
        self.engine.receive_weights()
        self.weights_version = version
        return version

    def device_uuids(self) -> list[str]:
        """The GPUs the engine's workers run on (empty on CPU)."""
        return self.engine.device_uuids()

    def load_ipc_bucket(self, key: str, source, version: Optional[int]) -> dict:
        """CUDA IPC transport: loads shared source `key` (an `ipc.SharedSource`, sent the first
        time only); the last source of a sync carries its `version`. Returns the engine's seconds
        by part, or {"unopened": 1} if this generator never got the source (it restarted)."""
        seconds = self.engine.load_ipc_bucket(key, source, reset_cache=version is not None)
        if version is not None and not seconds.get("unopened"):
            self.weights_version = version
        return seconds
