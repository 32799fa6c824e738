"""A multi-turn DAPO run through real Ray on CPU (the tiny model, calculator episodes that
always take two turns): resuming from a checkpoint in the middle of the run ends exactly
where the uninterrupted run ends (same metrics, bitwise-equal weights)."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from run_records import comparable, records
import torch
from safetensors.torch import load_file

HERE = Path(__file__).parent
RESUME_ARGS = [f"rollout.env={HERE / 'second_look_env.py'}:SecondLook", "rollout.max_turns=2",
               "rollout.max_new_tokens=24", "rollout.max_episode_tokens=72", "warmstart.steps=30", "data.num_eval=8",
               "rollout.prompts_per_step=4", "rollout.gen_prompts=4", "rollout.n=4", "run.steps=4",
               "run.eval_every=2", "run.progress=false",
               "rollout.turn_gather_s=30"]  # every step shares its round's batch, however loaded the machine


def _dapo(env, out_dir, name, args):
    cmd = [sys.executable, "-m", "rlhf.recipes.dapo", *args, f"run.output_dir={out_dir}", f"run.name={name}"]
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1500)


@pytest.mark.slow
@pytest.mark.timeout(3000)
def test_resume_in_the_middle_of_a_multi_turn_run_continues_exactly(tmp_path):
    env = dict(os.environ, RLHF_CACHE=str(tmp_path / "cache"))
    full = _dapo(env, tmp_path, "full", RESUME_ARGS + ["run.checkpoint_every=1", "run.keep_checkpoints=4"])
    assert full.returncode == 0, full.stderr[-3000:]
    steps = [r for r in records(tmp_path / "full") if "reward/mean" in r]
    assert all(r["episode/turns_mean"] > 1.0 for r in steps)  # every step had multi-turn episodes
    assert all(r["batch/loss_tokens"] < r["response/length_mean"] * r["batch/sequences"] for r in steps)

    cut = tmp_path / "cut"  # the same run, stopped after its step-2 checkpoint
    shutil.copytree(tmp_path / "full", cut)
    for debris in ("policy", "summary.json", "checkpoints/step_000003", "checkpoints/step_000004"):
        p = cut / debris
        shutil.rmtree(p) if p.is_dir() else p.unlink()
    resumed = _dapo(env, tmp_path, "cut", RESUME_ARGS + ["run.checkpoint_every=1", "run.keep_checkpoints=4"])
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert json.loads((cut / "summary.json").read_text())["resumed_from"] == str(cut / "checkpoints" / "step_000002")
    got, want = comparable(cut), comparable(tmp_path / "full")
    assert sorted(got) == sorted(want)
    for key in want:
        assert got[key] == want[key], key
    a, b = load_file(str(cut / "policy" / "model.safetensors")), load_file(str(tmp_path / "full" / "policy" / "model.safetensors"))
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)

