"""Stopping a run whose updates keep failing: trainer ranks skip an optimizer step whose loss
or gradients are not finite (`rlhf.actors.deepspeed_rank`); after `trainer.max_skipped_steps`
skipped in a row the run stops, naming the last checkpoint written before the streak."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable, Optional

from rlhf import checkpoint


class TrainingDiverged(RuntimeError):
    """Too many optimizer steps in a row were skipped for non-finite values."""


class SkippedSteps:
    def __init__(self, limit: int, run_dir: Path):
        self.limit, self.run_dir = limit, run_dir
        self.streak = 0
        self.streak_start: Optional[int] = None

    def check(self, step: int, skipped: float, optimizer_steps: int, log: Callable[[dict], None]) -> None:
        """After training step `step`, in which `skipped` of `optimizer_steps` updates were
        skipped: logs an event when any was, and raises `TrainingDiverged` when the streak
        reaches the limit. A step with a good update ends the streak."""
        skipped = int(skipped)
        if skipped < optimizer_steps:
            self.streak, self.streak_start = 0, None
        else:
            self.streak += skipped
            self.streak_start = step if self.streak_start is None else self.streak_start
        if skipped == 0:
            return
        log({"event": "skipped_steps", "step": step, "skipped": skipped, "in_a_row": self.streak})
        if self.streak >= self.limit:
            raise TrainingDiverged(
                f"{self.streak} optimizer steps in a row were skipped for a non-finite loss or gradient (steps "
                f"{self.streak_start}-{step}); the run stops. Last good checkpoint: {self._last_good()}. Lower "
                "trainer.lr or check the rewards, then resume from it (run.resume=<that directory>)")

    def _last_good(self) -> str:
        good = [p for p in checkpoint.complete_checkpoints(self.run_dir)
                if int(re.search(r"(\d+)$", p.name).group(1)) < (self.streak_start or 0)]
        return str(good[-1]) if good else "none (no checkpoint was written before the streak)"
