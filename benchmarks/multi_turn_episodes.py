"""Episodes on one CPU generator (the tiny model, HF engine): episodes/s of two-turn episodes
with the calculator as the tool, and the case of one episode whose tool call takes SLOW_S
seconds: when do the other episodes finish, with and without it?

    python benchmarks/multi_turn_episodes.py [--prompts 8] [--n 4] [--slow 5]

The untrained tiny model is given a likely end-of-turn token through its generation config
(turns of ~8 tokens), and the environment calls the real calculator in a child process on
each first turn, so the numbers measure the rollout machinery, not a policy's skill.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import time

from rlhf.config.base import TinyModelConfig
from rlhf.engines.hf import HFEngine
from rlhf.engines.interface import SamplingSettings
from rlhf.envs import End, EpisodeRunner, EpisodeSettings, Observation
from rlhf.envs.builtin_tools import calculator
from rlhf.envs.tool_env import ToolEnv
from rlhf.envs.tools import ToolCall
from rlhf.models import load_tokenizer, tiny_model_path

SLOW_S = 0.0


class TimedCalc(ToolEnv):
    """Turn 0: a calculator call (slow for the row marked slow); turn 1 ends the episode."""

    tools = (calculator,)

    def start(self, row):
        self.row = row
        return super().start(row)

    def step(self, turn):
        if turn.index == 0:
            if self.row.get("slow"):
                time.sleep(SLOW_S)
            result = self.tool_runner.call(ToolCall("calculator", {"expression": "372*45"}))
            return Observation([{"role": "tool", "content": result.text}], tool_calls=1, tool_errors=not result.ok)
        self.ended_at = time.monotonic()
        return End()


def run(engine, tok, prompts, rows, n, seed):
    runner = EpisodeRunner(engine, tok, TimedCalc, EpisodeSettings(max_turns=2, max_episode_tokens=200), engine.eos_id)
    envs = []
    start = runner._start
    runner._start = lambda *a: envs.append(start(*a)) or envs[-1]
    t0 = time.monotonic()
    comps = runner.run(prompts, rows, SamplingSettings(n=n, max_new_tokens=24, seed=seed))
    wall = time.monotonic() - t0
    ends = {i: e.env.ended_at - t0 for i, e in enumerate(envs) if hasattr(e.env, "ended_at")}
    return comps, wall, ends


def main() -> None:
    global SLOW_S
    ap = argparse.ArgumentParser()
    ap.add_argument("--prompts", type=int, default=8)
    ap.add_argument("--n", type=int, default=4)
    ap.add_argument("--slow", type=float, default=5.0)
    args = ap.parse_args()
    path = tiny_model_path(TinyModelConfig(), tempfile.mkdtemp(), 0)
    engine, tok = HFEngine(path, "float32", "cpu"), load_tokenizer(path)
    engine.model.generation_config.sequence_bias = {(engine.eos_id,): 3.0}
    texts = [tok.apply_chat_template([{"role": "user", "content": f"What is {100 + i} * 45?"}], tokenize=False,
                                     add_generation_prompt=True) for i in range(args.prompts)]
    prompts = [tok(t, add_special_tokens=False)["input_ids"] for t in texts]
    rows = [{"prompt": t} for t in texts]
    run(engine, tok, prompts, rows, args.n, 0)  # warm-up: the tool runner's fork server, first kernels
    comps, wall, base_ends = run(engine, tok, prompts, rows, args.n, 1)
    two = sum(c.episode["turns"] == 2 for c in comps)
    print(f"load average {os.getloadavg()[0]:.1f}; {len(comps)} episodes ({two} of two turns) in {wall:.2f} s: "
          f"{len(comps) / wall:.2f} episodes/s, {sum(c.episode['tool_calls'] for c in comps)} tool calls")
    SLOW_S = args.slow
    slow_rows = [r | {"slow": i == 0} for i, r in enumerate(rows)]
    _, wall, ends = run(engine, tok, prompts, slow_rows, args.n, 1)
    others = [t for i, t in ends.items() if i >= args.n]  # episodes of the other prompts
    base_others = [t for i, t in base_ends.items() if i >= args.n]
    print(f"one slow tool call ({SLOW_S:g} s, prompt 0): the other prompts' episodes finished by "
          f"{max(others):.2f} s (without the slow call: {max(base_others):.2f} s); the slow prompt's by "
          f"{max(t for i, t in ends.items() if i < args.n):.2f} s; wall {wall:.2f} s")


if __name__ == "__main__":
    main()
