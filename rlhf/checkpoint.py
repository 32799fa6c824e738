"""Checkpoints of a run: each one complete or absent, verified before it is resumed from.

    <run dir>/checkpoints/step_000030/
        policy/        Hugging Face model + tokenizer (`from_pretrained` loads it)
        trainer/       DeepSpeed engine state of every rank (weights, optimizer, scheduler), RNG per rank
        manifest.json  size and SHA-256 of every file above
        state.json     driver state: step, policy version, data position, metric history (written last)

A checkpoint is written into `step_000030.tmp-<pid>` and renamed when complete, so a run
killed mid-write leaves only a temporary directory, which is never resumed from and is
removed by the next run. `run.resume=auto` takes the newest checkpoint whose files match its
manifest and falls back, with a warning, to older ones. Nothing in a checkpoint is unpickled:
tensors and plain data only (`safe_load`). On several nodes the run directory must be shared
storage.
"""

from __future__ import annotations

import hashlib
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
MANIFEST_FILE = "manifest.json"


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
        for path in reversed(complete_checkpoints(run_dir)):
            problem = verify(path)
            if problem is None:
                return path
            log.warning("checkpoint %s is damaged (%s): falling back to the one before it", path, problem)
        return None
    path = Path(resume).expanduser()
    if not (path / STATE_FILE).is_file():
        raise CheckpointError(f"run.resume={resume}: not a complete checkpoint (no {STATE_FILE} in it)")
    problem = verify(path)
    if problem is not None:
        raise CheckpointError(f"run.resume={resume}: the checkpoint is damaged ({problem})")
    return path


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 24):
            h.update(chunk)
    return h.hexdigest()


def write_manifest(path: Path) -> None:
    """Size and SHA-256 of every file of the checkpoint (the manifest and state excluded)."""
    files = {str(p.relative_to(path)): [p.stat().st_size, _digest(p)] for p in sorted(path.rglob("*"))
             if p.is_file() and p.name not in (MANIFEST_FILE, STATE_FILE)}
    (path / MANIFEST_FILE).write_text(json.dumps(files, indent=1))


def verify(path: Path) -> Optional[str]:
    """None when every file the manifest lists is there with its size and checksum and the
    driver state parses; otherwise what is wrong. A checkpoint without a manifest (an older
    version's) is accepted unverified."""
    path = Path(path)
    try:
        json.loads((path / STATE_FILE).read_text())
    except (OSError, ValueError) as e:
        return f"{STATE_FILE} unreadable: {type(e).__name__}"
    if not (path / MANIFEST_FILE).is_file():
        log.warning("checkpoint %s has no %s (an older version wrote it): not verified", path, MANIFEST_FILE)
        return None
    try:
        files = json.loads((path / MANIFEST_FILE).read_text())
    except ValueError:
        return f"{MANIFEST_FILE} unreadable"
    for name, (size, digest) in files.items():
        p = path / name
        if not p.is_file():
            return f"{name} is missing"
        if p.stat().st_size != size:
            return f"{name} has {p.stat().st_size} bytes, the manifest {size}"
        if _digest(p) != digest:
            return f"{name} does not match its checksum"
    return None


def save(run_dir: Path, step: int, trainers, state: dict, keep: int) -> Path:
    """Writes checkpoint `step` atomically and keeps the newest `keep` complete ones."""
    root = checkpoints_root(run_dir)
    final = root / f"step_{step:06d}"
    tmp = root / f"{final.name}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    trainers.each(lambda a: a.save_checkpoint.remote(str(tmp / "trainer")))
    trainers.each(lambda a: a.save_pretrained.remote(str(tmp / "policy")))
    write_manifest(tmp)
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


# ---- loading without unpickling ------------------------------------------------------------

def _deepspeed_data_types() -> list:
    """Plain data classes DeepSpeed writes into its optimizer state (an enum, a dataclass and
    loss-scaler records): the only non-builtin types a checkpoint may hold."""
    from deepspeed.runtime.fp16.loss_scaler import DynamicLossScaler, LossScaler
    from deepspeed.runtime.zero.config import ZeroStageEnum
    from deepspeed.utils.tensor_fragment import fragment_address

    return [LossScaler, DynamicLossScaler, ZeroStageEnum, fragment_address]


def safe_load(path, map_location=None):
    """`torch.load` with `weights_only=True`: tensors, containers and numbers only (plus
    `_deepspeed_data_types`), so a crafted file can name no code to run; anything else is a
    `CheckpointError` naming the file."""
    import pickle

    import torch

    try:
        with torch.serialization.safe_globals(_deepspeed_data_types()):
            return torch.load(path, map_location=map_location, weights_only=True)
    except pickle.UnpicklingError as e:
        raise CheckpointError(f"{path}: refused to load: it holds more than tensors and plain data "
                              f"({str(e).splitlines()[0][:200]})") from None


def refuse_pickles(checkpoint_engine) -> None:
    """Makes a DeepSpeed checkpoint engine load every file with `safe_load` (DeepSpeed's own
    load unpickles anything)."""
    checkpoint_engine.load = lambda path, map_location=None: safe_load(path, map_location)
