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
        """CUDA IPC transport (colocated): bucket by bucket, every rank gathers into its shared
        buffer; each generator worker loads it in place from the buffer on its own GPU."""
        if getattr(self, "_ipc_buffers", None) is None:
            self._ipc_buffers = ipc.SharedBuffers(plan, self.rank, self.world_size)
        return ipc.share_weights(self._weight_export(), plan, generators, version, self.rank, self.world_size,
                                 self._ipc_buffers)


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

    def load_ipc_bucket(self, handles: dict, bucket: list, version: Optional[int]) -> dict:
        """CUDA IPC transport: loads one bucket (`handles`: GPU uuid -> handle); the last
        bucket of a sync carries its `version`. Returns the engine's seconds by part."""
        seconds = self.engine.load_ipc_bucket(handles, bucket, reset_cache=version is not None)
        if version is not None:
            self.weights_version = version
        return seconds
