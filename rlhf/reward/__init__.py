"""Rewards: plain functions of (prompt, completion, **columns) -> float | {"score": ..., ...}.

    from rlhf.reward import reward

    @reward("ends_politely")
    def ends_politely(prompt: str, completion: str, **sample) -> float:
        return 1.0 if completion.rstrip().endswith("Thanks!") else 0.0

Select by registered name, `package.module:function` or `path/file.py:function`
(`reward.fns=[math_verify,./my_rewards.py:concise] reward.weights=[1.0,0.2]`).
"""

from rlhf.reward.loading import load_reward
from rlhf.reward.registry import RewardFn, RewardSpecError, registered_rewards, reward
from rlhf.reward.runner import RewardRunner

__all__ = ["RewardFn", "RewardRunner", "RewardSpecError", "load_reward", "registered_rewards", "reward"]
