"""N actors of one role. A role is a plain class; this wraps it in a thin `ray.remote` shell
and hands each actor its rank. Callers use the actor handles' methods directly."""

from __future__ import annotations

from typing import Any, Callable, Sequence

import ray


class ActorGroup:
    def __init__(self, cls: type, num: int, *, name: str, num_cpus: float = 1.0, num_gpus: float = 0.0,
                 kwargs: Callable[[int], dict] = lambda rank: {}, env: dict | None = None,
                 max_restarts: int = 0):
        self.cls, self.name = cls, name
        self.remote_cls = ray.remote(num_cpus=num_cpus, num_gpus=num_gpus, max_restarts=max_restarts)(cls)
        runtime_env = {"env_vars": env} if env else None
        self.actors = [
            self.remote_cls.options(runtime_env=runtime_env).remote(**kwargs(rank)) for rank in range(num)
        ]

    def __len__(self) -> int:
        return len(self.actors)

    def each(self, call: Callable[[Any], ray.ObjectRef]) -> list:
        """`call(actor)` on every actor; waits and returns the results in rank order."""
        return ray.get([call(a) for a in self.actors])

    def scatter(self, call: Callable[[Any, Any], ray.ObjectRef], shards: Sequence) -> list:
        """`call(actor_i, shard_i)`; shards are dealt round-robin when there are more than actors."""
        refs = [call(self.actors[i % len(self.actors)], shard) for i, shard in enumerate(shards)]
        return ray.get(refs)

    def kill(self) -> None:
        for a in self.actors:
            ray.kill(a)
