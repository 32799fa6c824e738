"""`ToolEnv`: the model calls tools until it answers without a call; each call's result (or
its error) comes back as a `tool` message. Subclasses set `tools` and `call_format`, and may
override `finish` to give the episode a reward of its own."""

from __future__ import annotations

from rlhf.envs.interface import End, Environment, Observation, StepResult, Turn
from rlhf.envs.tool_calls import HermesCalls
from rlhf.envs.tools import ToolRunner


class ToolEnv(Environment):
    call_format = HermesCalls()
    max_calls_per_turn = 4  # calls beyond this in one turn are answered with an error
    tool_runner: ToolRunner = None  # set by the episode runner (one per generator, shared by its episodes)

    def step(self, turn: Turn) -> StepResult:
        calls = self.call_format.parse(turn.text)
        if not calls:
            return self.finish(turn)
        messages, errors = [], 0
        for i, call in enumerate(calls):
            if i < self.max_calls_per_turn:
                result = self.tool_runner.call(call)
                text, ok = result.text, result.ok
            else:
                text, ok = f"error: at most {self.max_calls_per_turn} tool calls per turn", False
            errors += not ok
            messages.append({"role": "tool", "name": call.name, "content": text})
        return Observation(messages, tool_calls=len(calls), tool_errors=errors)

    def finish(self, turn: Turn) -> End:
        """The turn without a tool call ends the episode; the reward functions score it."""
        return End()
