"""Reading tool calls out of the model's turn, in the syntax its chat template teaches.

`HermesCalls`: `<tool_call>{"name": "calculator", "arguments": {"expression": "37*45"}}</tool_call>`,
the form of Qwen2/2.5, Hermes and most tool-trained models' templates.
`TagCalls`: a one-argument shorthand for small models, e.g. `<calc>37*45</calc>`.
"""

from __future__ import annotations

import json
import re

from rlhf.envs.tools import ToolCall


class HermesCalls:
    pattern = re.compile(r"<tool_call>\s*(.*?)\s*</tool_call>", re.DOTALL)

    def parse(self, text: str) -> list[ToolCall]:
        calls = []
        for body in self.pattern.findall(text):
            try:
                obj = json.loads(body)
                name, args = obj["name"], obj.get("arguments", {})
                if isinstance(args, str):  # some templates carry the arguments as a JSON string
                    args = json.loads(args)
                calls.append(ToolCall(str(name), args))
            except (ValueError, KeyError, TypeError) as e:
                calls.append(ToolCall("?", {}, error=f"could not read the tool call {body[:200]!r} ({e}); write "
                                                      '<tool_call>{"name": ..., "arguments": {...}}</tool_call>'))
        return calls


class TagCalls:
    """`<tag>value</tag>` calls `tool(**{argument: value})`."""

    def __init__(self, tag: str, tool: str, argument: str):
        self.tool, self.argument = tool, argument
        self.pattern = re.compile(rf"<{re.escape(tag)}>(.*?)</{re.escape(tag)}>", re.DOTALL)

    def parse(self, text: str) -> list[ToolCall]:
        return [ToolCall(self.tool, {self.argument: body.strip()}) for body in self.pattern.findall(text)]
