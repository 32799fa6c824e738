"""The built-in `tools` environment for a template that does not render tools (SmolLM2's):
the schemas and the Hermes call syntax go into the system message."""

import json

from rlhf.envs import tool_schemas
from rlhf.envs.builtins import ToolsEnv


class DescribedTools(ToolsEnv):
    def start(self, row):
        schemas = "\n".join(json.dumps(s) for s in tool_schemas(self.tools))
        system = ("You may call these tools, one per line as <tool_call>{\"name\": ..., \"arguments\": {...}}"
                  f"</tool_call>:\n{schemas}")
        return [{"role": "system", "content": system}] + super().start(row)
