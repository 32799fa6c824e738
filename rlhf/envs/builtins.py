"""The built-in environments: `single_turn` (the default), `calculator` (the tiny model's tool
task), `tools` (the calculator and the Python executor in the Hermes/Qwen tool-call syntax,
for models whose chat template has tools)."""

from __future__ import annotations

from rlhf.envs.builtin_tools import calculator, python
from rlhf.envs.calculator_task import CalculatorEnv  # noqa: F401  (registers `calculator`)
from rlhf.envs.interface import SingleTurn
from rlhf.envs.registry import environment
from rlhf.envs.tool_env import ToolEnv

environment("single_turn")(SingleTurn)


@environment("tools")
class ToolsEnv(ToolEnv):
    tools = (calculator, python)
