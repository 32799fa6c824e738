"""CPU: the built-in tool task (`rollout.env=calculator`, 3-digit x 2-digit multiplication that
the tiny model can only get right with the calculator) trained by multi-turn DAPO through Ray.

    python benchmarks/calculator_task.py [--steps 24] [--warmstart 1000] [extra key=value ...]

Runs `python -m rlhf.recipes.dapo rollout.env=calculator ...` (from an empty cache unless --cache) and prints
one JSON line: held-out accuracy and tool-use rate at the first and last evaluation (greedy,
and over 4 samples per problem), the training reward and tool-use rate over the first and last
three steps, episodes per second of rollout (episodes generated / seconds of generation and
rewards) and the wall time.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ARGS = ["rollout.env=calculator", "rollout.max_turns=2", "rollout.max_new_tokens=24", "rollout.max_episode_tokens=72",
        "data.num_eval=64", "rollout.prompts_per_step=8", "rollout.gen_prompts=12", "rollout.n=8",
        "trainer.lr=2e-4", "run.eval_samples=4", "run.progress=false", "run.save_policy=false"]


def mean(rows: list[dict], key: str) -> float:
    return sum(r[key] for r in rows) / len(rows)


def main(a, extra: list[str]) -> dict:
    out = Path(tempfile.mkdtemp(prefix="calc-bench-"))
    env = dict(os.environ, RLHF_CACHE=a.cache or str(out / "cache"))
    cmd = [sys.executable, "-m", "rlhf.recipes.dapo", *ARGS, f"warmstart.steps={a.warmstart}",
           f"run.steps={a.steps}", f"run.eval_every={a.eval_every}", f"run.output_dir={out}", "run.name=calc", *extra]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
    wall = time.perf_counter() - t0
    if proc.returncode:
        sys.exit(f"the run failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return summarise(out / "calc") | {"warmstart_steps": a.warmstart, "wall_s": wall}


def summarise(run_dir: Path) -> dict:
    rollout = json.loads((run_dir / "config.json").read_text())["rollout"]
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "reward/mean" in r]
    evals = [r for r in records if "eval/accuracy" in r]
    episodes = sum(r["dynamic_sampling/gen_batches"] for r in steps) * rollout["gen_prompts"] * rollout["n"]
    first, last = steps[:3], steps[-3:]
    return {"steps": len(steps),
            "eval_accuracy_before": evals[0]["eval/accuracy"], "eval_accuracy_after": evals[-1]["eval/accuracy"],
            "eval_tool_use_before": evals[0]["eval/tools/use_rate"], "eval_tool_use_after": evals[-1]["eval/tools/use_rate"],
            # 4 samples per held-out problem: the policy's mix, which greedy decoding hides
            "eval_avg4_before": evals[0]["eval/avg@4"], "eval_avg4_after": evals[-1]["eval/avg@4"],
            "eval_sampled_tool_use_before": evals[0]["eval/sampled/tools/use_rate"],
            "eval_sampled_tool_use_after": evals[-1]["eval/sampled/tools/use_rate"],
            "train_reward_first3": mean(first, "reward/math_verify/mean"),
            "train_reward_last3": mean(last, "reward/math_verify/mean"),
            "train_tool_use_first3": mean(first, "tools/use_rate"), "train_tool_use_last3": mean(last, "tools/use_rate"),
            "tool_errors": sum(r["tools/errors"] for r in steps), "episodes": episodes,
            # rollout: generation (every turn, tool calls included) and rewards
            "episodes_per_s": episodes / sum(r["timing/generate_s"] + r["timing/reward_s"] for r in steps),
            "step_s_median": sorted(r["timing/step_s"] for r in steps)[len(steps) // 2]}


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--steps", type=int, default=24)
    p.add_argument("--warmstart", type=int, default=1000)
    p.add_argument("--cache", help="RLHF_CACHE to use (a cached warm start is reused); default: an empty one")
    p.add_argument("--eval-every", type=int, default=8)
    args, rest = p.parse_known_args()
    print(json.dumps(main(args, rest) | {"date": time.strftime("%Y-%m-%d")}), flush=True)
