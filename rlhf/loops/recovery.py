"""Restarting dead generator and reward actors: the call that met the dead actor runs again."""

from __future__ import annotations

import logging
from typing import Callable, Optional

import ray

log = logging.getLogger(__name__)


class ActorRecovery:
    """At most `max_restarts` restarts over the whole run; each is logged as an event of the
    step `step_of()` returns."""

    def __init__(self, max_restarts: int, step_of: Callable[[], int]):
        self.max_restarts, self.step_of = max_restarts, step_of
        self.restarts = 0
        self.events: list[dict] = []  # actor restarts, for the run's log

    def call(self, group, call: Callable, after_restart: Optional[Callable[[], None]] = None):
        """`call()`; when an actor of `group` has died, restart it, run `after_restart()` (new
        weights, the requests it lost) and call again."""
        while True:
            try:
                return call()
            except ray.exceptions.RayActorError as e:
                dead = group.dead_ranks()
                if not dead or self.restarts + len(dead) > self.max_restarts:
                    raise
                for rank in dead:
                    self.restarts += 1
                    log.warning("%s actor %d died (%s); restarting it (%d/%d restarts)", group.name, rank,
                                type(e).__name__, self.restarts, self.max_restarts)
                    group.restart(rank)
                    self.events.append({"event": "actor_restarted", "role": group.name, "rank": rank,
                                        "step": self.step_of(), "error": str(e).splitlines()[0][:200]})
                if after_restart is not None:
                    after_restart()
