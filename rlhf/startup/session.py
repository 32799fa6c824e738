"""The frame of every run: logging, the run directory (one live run at a time), its tracker,
and Ray."""

from __future__ import annotations

import fcntl
import logging
import os
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Optional

from rlhf.actors.runtime import quiet_libraries
from rlhf.cluster import init_ray
from rlhf.config import to_dict
from rlhf.tracking import Tracker, make_run_dir

LOCK_FILE = ".lock"


class RunDirError(ValueError):
    """The run directory is in use, or holds a run that this command would not continue."""


def start_logging() -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    quiet_libraries()


@dataclass
class Session:
    run_dir: Path
    tracker: Tracker
    resume_from: Optional[Path] = None  # the checkpoint this run continues from
    state: dict = field(default_factory=dict)  # the driver state saved with it


@contextmanager
def run_dir_lock(run_dir: Path):
    """Held while a run uses `run_dir`. The OS drops the lock when the process ends however it
    ends, so a killed run never leaves it stuck."""
    fh = open(run_dir / LOCK_FILE, "a+")
    try:
        fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        fh.seek(0)
        holder = fh.read().strip() or "?"
        fh.close()
        raise RunDirError(f"run directory {run_dir} is in use by a live run (pid {holder}); wait for it to end or "
                          "choose another run.name") from None
    try:
        fh.seek(0)
        fh.truncate()
        fh.write(str(os.getpid()))
        fh.flush()
        yield
    finally:
        fcntl.flock(fh, fcntl.LOCK_UN)
        fh.close()


def _check_reuse(run_dir: Path, resume_from: Optional[Path]) -> None:
    if resume_from is None and (run_dir / "metrics.jsonl").exists():
        raise RunDirError(
            f"run directory {run_dir} already holds a run (metrics.jsonl) and there is no checkpoint to continue "
            "from: choose a new run.name (or delete the directory); runs with run.checkpoint_every > 0 continue "
            "with run.resume=auto")


@contextmanager
def run_session(cfg, recipe: str, needed_cpus: float, resume: Callable[[Path], Optional[Path]] = lambda _: None,
                load_state: Callable[[Path], dict] = lambda _: {}):
    """Claims the run directory, finds what to continue from (`resume(run_dir)`, its driver
    state `load_state(checkpoint)`), opens the tracker (continuing that state's history) and
    starts or joins Ray; the tracker is closed and the directory released however the run ends."""
    run_dir = make_run_dir(cfg.run.output_dir, cfg.run.name, recipe)
    with run_dir_lock(run_dir):
        resume_from = resume(run_dir)
        _check_reuse(run_dir, resume_from)
        state = load_state(resume_from) if resume_from else {}
        tracker = Tracker(run_dir, to_dict(cfg), history=state.get("history"),
                          wandb_project=cfg.run.wandb_project if cfg.run.wandb else None,
                          wandb_id=state.get("wandb_id"))
        try:
            init_ray(cfg.ray.address, cfg.ray.num_cpus, needed_cpus)
            yield Session(run_dir, tracker, resume_from, state)
        finally:
            tracker.close()
