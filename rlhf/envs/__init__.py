"""Environments: single-turn prompting (the default) and multi-turn, tool-using episodes.

    from rlhf.envs import End, Observation, ToolEnv, environment

Selected by `rollout.env=<registered name | package.module:Class | path/file.py:Class>`; see
docs/environments.md. Importing this package imports neither torch nor Ray.
"""

from rlhf.envs.episode import Episode, ObservationRenderer, episode_metrics
from rlhf.envs.interface import End, Environment, Observation, SingleTurn, StepResult, Turn
from rlhf.envs.registry import EnvSpecError, env_task, environment, load_environment, registered_environments
from rlhf.envs.runner import EpisodeRunner, EpisodeSettings
from rlhf.envs.tool_calls import HermesCalls, TagCalls
from rlhf.envs.tool_env import ToolEnv
from rlhf.envs.tools import ToolCall, ToolResult, ToolRunner, tool_schema, tool_schemas

__all__ = ["End", "EnvSpecError", "env_task", "Environment", "Episode", "EpisodeRunner", "EpisodeSettings", "HermesCalls",
           "Observation", "ObservationRenderer", "SingleTurn", "StepResult", "TagCalls", "ToolCall", "ToolEnv",
           "ToolResult", "ToolRunner", "Turn", "environment", "episode_metrics", "load_environment",
           "registered_environments", "tool_schema", "tool_schemas"]
