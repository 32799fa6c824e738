"""Checkpoints load without unpickling anything, are verified against their manifest, and a
damaged newest one falls back to the one before it."""

import json
import pickle

import pytest
import torch

from rlhf import checkpoint


class _Payload:
    """Unpickling this runs `os.mkdir(marker)`: what a crafted checkpoint file would do."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return os.mkdir, (self.marker,)


def test_a_crafted_pickle_is_refused_without_running(tmp_path):
    marker = tmp_path / "pwned"
    evil = tmp_path / "rng_rank0.pt"
    with open(evil, "wb") as f:
        pickle.dump({"python": _Payload(str(marker))}, f)
    with pytest.raises(checkpoint.CheckpointError, match=r"rng_rank0\.pt: refused to load"):
        checkpoint.safe_load(evil)
    assert not marker.exists()
    torch.save({"torch": torch.get_rng_state(), "python": (3, (1, 2), None)}, tmp_path / "ok.pt")
    assert torch.equal(checkpoint.safe_load(tmp_path / "ok.pt")["torch"], torch.get_rng_state())


def _fake_checkpoint(run_dir, step: int):
    path = checkpoint.checkpoints_root(run_dir) / f"step_{step:06d}"
    (path / "policy").mkdir(parents=True)
    (path / "policy" / "model.safetensors").write_bytes(bytes(range(256)) * 4)
    (path / "trainer").mkdir()
    (path / "trainer" / "rng_rank0.pt").write_bytes(b"x" * 100)
    checkpoint.write_manifest(path)
    (path / checkpoint.STATE_FILE).write_text(json.dumps({"loop": {"step": step}}))
    return path


def test_manifest_catches_truncated_changed_and_missing_files(tmp_path):
    path = _fake_checkpoint(tmp_path, 1)
    assert checkpoint.verify(path) is None
    weights = path / "policy" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:500])
    assert "model.safetensors has 500 bytes" in checkpoint.verify(path)
    path = _fake_checkpoint(tmp_path, 2)
    (path / "trainer" / "rng_rank0.pt").write_bytes(b"y" * 100)  # same size, other bytes
    assert "does not match its checksum" in checkpoint.verify(path)
    path = _fake_checkpoint(tmp_path, 3)
    (path / "policy" / "model.safetensors").unlink()
    assert "is missing" in checkpoint.verify(path)
    path = _fake_checkpoint(tmp_path, 4)
    (path / checkpoint.STATE_FILE).write_text("{not json")
    assert "state.json unreadable" in checkpoint.verify(path)


def test_resume_falls_back_to_the_newest_checkpoint_that_verifies(tmp_path, caplog):
    older, newer = _fake_checkpoint(tmp_path, 2), _fake_checkpoint(tmp_path, 3)
    assert checkpoint.find_resume("auto", tmp_path) == newer
    (newer / "trainer" / "rng_rank0.pt").write_bytes(b"")
    assert checkpoint.find_resume("auto", tmp_path) == older
    assert "step_000003 is damaged" in caplog.text and "falling back" in caplog.text
    with pytest.raises(checkpoint.CheckpointError, match="damaged"):
        checkpoint.find_resume(str(newer), tmp_path)
    (older / checkpoint.MANIFEST_FILE).unlink()  # an older version's checkpoint: accepted unverified
    assert checkpoint.find_resume("auto", tmp_path) == older
