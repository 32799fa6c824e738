"""A calculator episode that always takes two turns: a first answer without a tool call is
questioned once (so every episode of a test run is multi-turn, whatever the model does)."""

from rlhf.envs import Observation
from rlhf.envs.calculator_task import CalculatorEnv


class SecondLook(CalculatorEnv):
    def step(self, turn):
        if turn.index == 0 and not self.call_format.parse(turn.text):
            return Observation([{"role": "user", "content": "Check it with <calc>...</calc>."}])
        return super().step(turn)
