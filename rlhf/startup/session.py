"""The frame of every run: logging, the run directory and its tracker, and Ray."""

from __future__ import annotations

import logging
from contextlib import contextmanager
from pathlib import Path
from typing import Optional

from rlhf.actors.runtime import quiet_libraries
from rlhf.cluster import init_ray
from rlhf.config import to_dict
from rlhf.tracking import Tracker, make_run_dir


def start_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    quiet_libraries()


def run_dir_of(cfg, recipe: str) -> Path:
    return make_run_dir(cfg.run.output_dir, cfg.run.name, recipe)


@contextmanager
def run_session(cfg, run_dir: Path, needed_cpus: float, state: Optional[dict] = None):
    """Yields the run's tracker (continuing `state`'s history on resume) once Ray is up; the
    tracker is closed however the run ends."""
    state = state or {}
    tracker = Tracker(run_dir, to_dict(cfg), history=state.get("history"),
                      wandb_project=cfg.run.wandb_project if cfg.run.wandb else None, wandb_id=state.get("wandb_id"))
    try:
        init_ray(cfg.ray.address, cfg.ray.num_cpus, needed_cpus)
        yield tracker
    finally:
        tracker.close()
