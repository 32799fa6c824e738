"""Exact continuation: a run killed with SIGKILL after its step-3 checkpoint and resumed, and a
run whose generator and reward actors are killed mid-run, both end where an uninterrupted run
ends (same metrics, bitwise-equal weights). CPU, fixed seeds."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from run_records import comparable, records
import ray
import torch
from safetensors.torch import load_file
from transformers import AutoModelForCausalLM

from rlhf import checkpoint
from rlhf.config import RLConfig, load_config
from rlhf.recipes.dapo import dapo_defaults
from rlhf.loops.rl_run import run_rl
from rlhf.loops.rl import RLLoop

ARGS = ["warmstart.steps=30", "data.num_eval=16", "rollout.prompts_per_step=4", "rollout.gen_prompts=4",
        "rollout.n=4", "rollout.max_new_tokens=12", "run.progress=false", "run.steps=6", "run.eval_every=3",
        "run.eval_samples=2", "run.eval_pass_k=[1,2]"]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    return dict(os.environ, RLHF_CACHE=str(tmp_path_factory.mktemp("cache")))


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory, env):
    out = tmp_path_factory.mktemp("runs")
    _dapo(env, out, "full", ["run.checkpoint_every=1", "run.keep_checkpoints=3"]).check_returncode()
    return out / "full"


def _dapo(env, out_dir, name, extra=(), **kw):
    cmd = [sys.executable, "-m", "rlhf.recipes.dapo", *ARGS, f"run.output_dir={out_dir}", f"run.name={name}", *extra]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=600, **kw)


def _assert_same_run(run_dir: Path, reference: Path) -> None:
    got, want = comparable(run_dir), comparable(reference)
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == want[key], key
    a, b = load_file(str(run_dir / "policy" / "model.safetensors")), load_file(str(reference / "policy" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_sigkill_then_resume_equals_uninterrupted_run(tmp_path, env, uninterrupted):
    # the uninterrupted run kept only its newest three checkpoints, each loadable by transformers
    kept = checkpoint.complete_checkpoints(uninterrupted)
    assert [p.name for p in kept] == ["step_000004", "step_000005", "step_000006"]
    AutoModelForCausalLM.from_pretrained(kept[-1] / "policy")

    cmd = [sys.executable, "-m", "rlhf.recipes.dapo", *ARGS, f"run.output_dir={tmp_path}", "run.name=k",
           "run.checkpoint_every=3"]
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    step3 = tmp_path / "k" / "checkpoints" / "step_000003"
    deadline = time.time() + 600
    while not (step3 / checkpoint.STATE_FILE).exists():
        assert proc.poll() is None and time.time() < deadline, "no step-3 checkpoint"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)  # the driver and the Ray cluster it started
    assert proc.wait() == -signal.SIGKILL
    # debris of a checkpoint killed mid-write, and a directory that never got its state file
    (tmp_path / "k" / "checkpoints" / "step_000004.tmp-12345" / "trainer").mkdir(parents=True)
    (tmp_path / "k" / "checkpoints" / "step_000009").mkdir()
    assert checkpoint.find_resume("auto", tmp_path / "k") == step3

    resumed = _dapo(env, tmp_path, "k", ["run.checkpoint_every=3"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    summary = json.loads((tmp_path / "k" / "summary.json").read_text())
    assert summary["resumed_from"] == str(step3)
    assert not list((tmp_path / "k" / "checkpoints").glob("*.tmp-*"))
    assert [r["step"] for r in records(tmp_path / "k") if "reward/mean" in r] == [1, 2, 3, 4, 5, 6]
    _assert_same_run(tmp_path / "k", uninterrupted)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_a_damaged_newest_checkpoint_falls_back_and_continues_exactly(tmp_path, env, uninterrupted):
    """A copy of the finished run cut back to step 5, whose step-5 RNG file is replaced by a
    crafted pickle: resume refuses it (checksum), takes step 4, and ends as the original."""
    import pickle
    import shutil

    run = tmp_path / "c"
    shutil.copytree(uninterrupted, run)
    for debris in ("policy", "checkpoints/step_000006"):
        shutil.rmtree(run / debris)
    (run / "summary.json").unlink()
    marker = tmp_path / "pwned"
    rng = run / "checkpoints" / "step_000005" / "trainer" / "rng_rank0.pt"
    rng.write_bytes(pickle.dumps(_Payload(str(marker))))
    resumed = _dapo(env, tmp_path, "c", ["run.checkpoint_every=1", "run.keep_checkpoints=3"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "step_000005 is damaged" in resumed.stderr and not marker.exists()
    summary = json.loads((run / "summary.json").read_text())
    assert summary["resumed_from"] == str(run / "checkpoints" / "step_000004")
    _assert_same_run(run, uninterrupted)


def test_a_finished_run_is_not_run_again(tmp_path, env, uninterrupted):
    again = _dapo(env, uninterrupted.parent, uninterrupted.name, ["run.checkpoint_every=1"])
    assert again.returncode == 2 and "finished 6 steps" in again.stderr and "raise run.steps" in again.stderr


class _Payload:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):  # unpickling runs os.mkdir(marker)
        return os.mkdir, (self.marker,)


class KillingLoop(RLLoop):
    """Kills the process of generator 0 before step 2 and of reward actor 0 before step 4."""

    def collect(self):
        victims = {1: self.roles.generators, 3: self.roles.rewards}
        if self.step_idx in victims:
            actor = victims[self.step_idx].actors[0]
            os.kill(ray.get(actor.__ray_call__.remote(lambda _: os.getpid())), signal.SIGKILL)
        return super().collect()


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_killed_generator_and_reward_actors_are_recovered(tmp_path, env, uninterrupted, monkeypatch):
    monkeypatch.setenv("RLHF_CACHE", env["RLHF_CACHE"])
    cfg = load_config(RLConfig, dapo_defaults(), ARGS + [f"run.output_dir={tmp_path}", "run.name=f"])
    try:
        summary = run_rl(cfg, "dapo", loop_cls=KillingLoop)
    finally:
        ray.shutdown()
    events = [r for r in records(tmp_path / "f") if r.get("event") == "actor_restarted"]
    assert [(e["role"], e["rank"], e["step"]) for e in events] == [("generator", 0, 2), ("reward", 0, 4)]
    assert summary["actor_restarts"] == 2
    _assert_same_run(tmp_path / "f", uninterrupted)


def test_resume_rejects_an_incomplete_checkpoint(tmp_path):
    (tmp_path / "step_000002").mkdir()
    with pytest.raises(checkpoint.CheckpointError, match="state.json"):
        checkpoint.find_resume(str(tmp_path / "step_000002"), tmp_path)
    assert checkpoint.find_resume("auto", tmp_path) is None
    assert checkpoint.find_resume("never", tmp_path) is None
