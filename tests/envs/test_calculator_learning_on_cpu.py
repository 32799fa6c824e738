"""The built-in tool task learned by multi-turn DAPO through real Ray on CPU (about 12 minutes
on 2 cores, so behind `-m long`): the warm start shows the calculator call in a quarter of its
examples and the model, answering alone, gets almost none right; DAPO raises how often episodes
call the calculator, and with it the training reward and the held-out accuracy."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

# the settings of benchmarks/calculator_task.py's recorded run (benchmarks/README.md)
LEARN_ARGS = ["rollout.env=calculator", "rollout.max_turns=2", "rollout.max_new_tokens=24",
              "rollout.max_episode_tokens=72", "warmstart.steps=1000", "trainer.lr=2e-4", "data.num_eval=64",
              "rollout.prompts_per_step=8", "rollout.gen_prompts=12", "rollout.n=8", "run.steps=24",
              "run.eval_every=8", "run.progress=false", "run.save_policy=false"]


def _mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


@pytest.mark.long
@pytest.mark.timeout(2400)
def test_tool_use_reward_and_accuracy_rise_in_a_multi_turn_dapo_run(tmp_path):
    env = dict(os.environ, RLHF_CACHE=str(tmp_path / "cache"))
    cmd = [sys.executable, "-m", "rlhf.recipes.dapo", *LEARN_ARGS, f"run.output_dir={tmp_path}", "run.name=learn"]
    done = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=2300, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    records = [json.loads(line) for line in (Path(tmp_path) / "learn" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "reward/mean" in r]
    first, last = steps[:3], steps[-3:]
    assert _mean(last, "tools/use_rate") > _mean(first, "tools/use_rate") + 0.2, [r["tools/use_rate"] for r in steps]
    assert _mean(last, "reward/math_verify/mean") > _mean(first, "reward/math_verify/mean") + 0.05
    evals = [r for r in records if "eval/accuracy" in r]
    assert evals[-1]["eval/tools/use_rate"] > evals[0]["eval/tools/use_rate"] + 0.3
    assert evals[-1]["eval/accuracy"] > evals[0]["eval/accuracy"] + 0.2
    assert all(r["tools/errors"] <= r["tools/calls"] * r["batch/sequences"] for r in steps)
