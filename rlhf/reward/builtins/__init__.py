"""Built-in rewards, registered on import."""

from rlhf.reward.builtins import format_reward, math_reward  # noqa: F401
