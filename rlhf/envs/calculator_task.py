"""The built-in tool task: 3-digit x 2-digit multiplication, which the tiny model cannot do
in its head but can with a calculator.

    user       What is 372 * 45?
    assistant  <calc>372*45</calc>            (a tool call in the tiny model's shorthand)
    tool       16740
    assistant  \\boxed{16740}

`rollout.env=calculator` (with `data.train` empty) uses these rows. Their `response` column,
which the warm start imitates (on the model's turns only: the tool's reply is context), shows
the call in `TOOL_SHARE` of the problems and a direct guess in the rest: the model starts out
knowing the format but answering alone, and wrong, in most of its episodes (greedy decoding
guesses), and RL raises how often it reaches for the calculator. Below one half, so that greedy
decoding starts on the guess: at one half it fell on either side from one warm start to the
next. (With a quarter, and the tool's reply in the loss, sampled calls were too rare, and too
often miscopied, for runs to learn reliably.)
"""

from __future__ import annotations

import random

from rlhf.envs.builtin_tools import calculator
from rlhf.envs.registry import environment
from rlhf.envs.tool_calls import TagCalls
from rlhf.envs.tool_env import ToolEnv

TOOL_SHARE = 0.4


def tool_transcript(call: str, result: str, answer: str) -> list[dict]:
    """The rest of an episode after the prompt, as messages: what a warm start shows the model
    (trained on the assistant turns; the tool's reply is context, as in an episode)."""
    return [{"role": "assistant", "content": f"<calc>{call}</calc>"}, {"role": "tool", "content": result},
            {"role": "assistant", "content": f"\\boxed{{{answer}}}"}]


def multiplication_rows(split: str, seed: int = 0) -> list[dict]:
    """`prompt`, `answer` and `response` rows; a fixed, seeded 10% of pairs is held out."""
    rng = random.Random(seed)
    pairs = [(a, b) for a in range(100, 1000) for b in range(10, 100)]
    rng.shuffle(pairs)
    cut = len(pairs) // 10
    rows = []
    for a, b in pairs[:cut] if split == "eval" else pairs[cut:]:
        answer = str(a * b)
        use_tool = rng.random() < TOOL_SHARE
        response = tool_transcript(f"{a}*{b}", answer, answer) if use_tool else f"\\boxed{{{answer}}}"
        rows.append({"prompt": f"What is {a} * {b}?", "answer": answer, "response": response})
    return rows


@environment("calculator")
class CalculatorEnv(ToolEnv):
    """Tool calls as `<calc>expression</calc>`; the turn without one is the answer, scored by
    `reward.fns` (math_verify on the episode's text, whose last \\boxed{} is the model's)."""

    tools = (calculator,)
    call_format = TagCalls("calc", "calculator", "expression")
    task_rows = staticmethod(multiplication_rows)
