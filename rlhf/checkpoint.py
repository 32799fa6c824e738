"""Checkpoints of a run: each one complete or absent.

    <run dir>/checkpoints/step_000030/
        policy/      Hugging Face model + tokenizer (`from_pretrained` loads it)
        trainer/     DeepSpeed engine state of every rank (weights, optimizer, scheduler), RNG per rank
        state.json   driver state: step, policy version, data position, metric history (written last)

A checkpoint is written into `step_000030.tmp-<pid>` and renamed when complete, so a run
killed mid-write leaves only a temporary directory, which is never resumed from and is
removed by the next run. On several nodes the run directory must be shared storage.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
from pathlib import Path
from typing import Optional

log = logging.getLogger(__name__)
_COMPLETE = re.compile(r"^step_(\d+)$")
STATE_FILE = "state.json"


class CheckpointError(ValueError):
    """`run.resume` names something that is not a complete checkpoint."""


def checkpoints_root(run_dir: Path) -> Path:
    return Path(run_dir) / "checkpoints"


def complete_checkpoints(run_dir: Path) -> list[Path]:
    """Complete checkpoints, oldest first."""
    root = checkpoints_root(run_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir()
             if (m := _COMPLETE.match(p.name)) and (p / STATE_FILE).is_file()]
    return [p for _, p in sorted(found)]


def find_resume(resume: str, run_dir: Path) -> Optional[Path]:
    """The checkpoint to continue from: `auto` -> the newest complete one (or None),
    `never` -> None, anything else -> that checkpoint directory, which must be complete."""
    if resume == "never":
        return None
    if resume == "auto":
        found = complete_checkpoints(run_dir)
        return found[-1] if found else None
    path = Path(resume).expanduser()
    if not (path / STATE_FILE).is_file():
        raise CheckpointError(f"run.resume={resume}: not a complete checkpoint (no {STATE_FILE} in it)")
    return path


def save(run_dir: Path, step: int, trainers, state: dict, keep: int) -> Path:
    """Writes checkpoint `step` atomically and keeps the newest `keep` complete ones."""
    root = checkpoints_root(run_dir)
    final = root / f"step_{step:06d}"
    tmp = root / f"{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    trainers.each(lambda a: a.save_checkpoint.remote(str(tmp / "trainer")))
    trainers.each(lambda a: a.save_pretrained.remote(str(tmp / "policy")))
    (tmp / STATE_FILE).write_text(json.dumps(state))
    if final.exists():  # the same step written by an earlier attempt of this run
        shutil.rmtree(final)
    os.replace(tmp, final)
    for old in complete_checkpoints(run_dir)[:-keep]:
        shutil.rmtree(old, ignore_errors=True)
    return final


def remove_partial(run_dir: Path) -> None:
    """Temporary directories left by a run killed while writing a checkpoint."""
    root = checkpoints_root(run_dir)
    for p in root.glob("step_*.tmp-*") if root.is_dir() else []:
        log.info("removing partial checkpoint %s", p)
        shutil.rmtree(p, ignore_errors=True)


def load_state(path: Path) -> dict:
    return json.loads((Path(path) / STATE_FILE).read_text())
