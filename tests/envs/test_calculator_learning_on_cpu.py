"""The built-in tool task learns end to end: multi-turn DAPO through real Ray on CPU, from a
short warm start that shows the calculator call in half its examples. Greedy decoding on
held-out problems starts out answering alone (and wrong); a few steps later it calls the
tool and copies its result, and training episodes reach for the tool more often."""

import os
import subprocess
import sys

import pytest
from run_records import records

ARGS = ["rollout.env=calculator", "rollout.max_turns=2", "rollout.max_new_tokens=24", "rollout.max_episode_tokens=72",
        "warmstart.steps=300", "rollout.prompts_per_step=4", "rollout.gen_prompts=6", "rollout.n=8",
        "trainer.lr=2e-4", "run.steps=4", "run.eval_every=4", "data.num_eval=16", "run.progress=false",
        "run.save_policy=false"]


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_tool_use_and_held_out_accuracy_rise(tmp_path):
    env = dict(os.environ, RLHF_CACHE=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "rlhf.recipes.dapo", *ARGS, f"run.output_dir={tmp_path}", "run.name=calc"]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=1400)
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = records(tmp_path / "calc")
    evals = [r for r in rows if "eval/accuracy" in r]
    steps = [r for r in rows if "reward/mean" in r]
    before, after = evals[0], evals[-1]
    assert (before["step"], after["step"]) == (0, 4)
    assert after["eval/tools/use_rate"] >= before["eval/tools/use_rate"] + 0.5
    assert after["eval/accuracy"] >= before["eval/accuracy"] + 0.2
    assert steps[-1]["tools/use_rate"] > steps[0]["tools/use_rate"]
    assert sum(r["tools/calls"] for r in steps) > 0 and all(r["tools/errors"] < 16 for r in steps)
