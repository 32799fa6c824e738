"""N actors of one role. A role is a plain class; this wraps it in a thin `ray.remote` shell
and hands each actor its rank. Callers use the actor handles' methods directly."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import ray


class ActorGroup:
    def __init__(self, cls: type, num: int, *, name: str, num_cpus: float = 1.0, num_gpus: float = 0.0,
                 kwargs: Callable[[int], dict] = lambda rank: {}, env: dict | None = None,
                 placement: Sequence | None = None):
        """`placement`: one (placement group, `rlhf.placement.Slot`) per rank; the slot's GPU
        share replaces `num_gpus`."""
        self.cls, self.name, self.kwargs, self.placement = cls, name, kwargs, placement
        self.remote_cls = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus)(cls)
        self.options = {"runtime_env": {"env_vars": env}} if env else {}
        self.actors = [self._start(rank) for rank in range(num)]

    def _start(self, rank: int):
        options = dict(self.options)
        if self.placement is not None:
            from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

            pg, slot = self.placement[rank]
            options |= {"num_gpus": slot.gpus, "scheduling_strategy": PlacementGroupSchedulingStrategy(
                placement_group=pg, placement_group_bundle_index=slot.bundle)}
        return self.remote_cls.options(**options).remote(**self.kwargs(rank))

    def __len__(self) -> int:
        return len(self.actors)

    def each(self, call: Callable[[Any], ray.ObjectRef]) -> list:
        """`call(actor)` on every actor; waits and returns the results in rank order."""
        return ray.get([call(a) for a in self.actors])

    def scatter(self, call: Callable[[Any, Any], ray.ObjectRef], shards: Sequence) -> list:
        """`call(actor_i, shard_i)`; shards are dealt round-robin when there are more than actors."""
        refs = [call(self.actors[i % len(self.actors)], shard) for i, shard in enumerate(shards)]
        return ray.get(refs)

    def nodes(self) -> list[str]:
        """The Ray node id each actor runs on, in rank order."""
        return self.each(lambda a: a.__ray_call__.remote(lambda _: ray.get_runtime_context().get_node_id()))

    def dead_ranks(self, timeout_s: float = 60.0) -> list[int]:
        """Ranks whose actor no longer answers."""
        dead = []
        for rank, a in enumerate(self.actors):
            try:
                ray.get(a.__ray_ready__.remote(), timeout=timeout_s)
            except (ray.exceptions.RayActorError, ray.exceptions.GetTimeoutError):
                dead.append(rank)
        return dead

    def restart(self, rank: int) -> None:
        """A fresh actor for `rank`, built with the same arguments as the first."""
        ray.kill(self.actors[rank], no_restart=True)
        self.actors[rank] = self._start(rank)
        ray.get(self.actors[rank].__ray_ready__.remote())

    def kill(self) -> None:
        for a in self.actors:
            ray.kill(a)
