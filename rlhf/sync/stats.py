"""What every weight transport promises the driver: `sync` and the `SyncStats` it returns."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol


@dataclass
class SyncStats:
    seconds: float
    num_bytes: int
    version: int
    pending: list = field(default_factory=list)  # refs of generator loads still running (wait=False)
    phases: dict = field(default_factory=dict)  # seconds per phase, where the transport reports them


class WeightTransport(Protocol):
    def sync(self, trainers, generators, version: int, wait: bool = True) -> SyncStats:
        """Make every generator hold the trainers' current weights, tagged `version`. With
        `wait=False` a transport may return once the trainers' part is done, leaving the
        generators' loads in `SyncStats.pending` (they run after calls already queued)."""
