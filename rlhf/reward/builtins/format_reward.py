import re

from rlhf.reward.registry import reward

_TAGGED = re.compile(r"<think>.+?</think>\s*(\\boxed\{.+\}|<answer>.+?</answer>)\s*", re.DOTALL)


@reward("format")
def format_reward(prompt: str, completion: str, **_) -> float:
    """1.0 when the completion is `<think>...</think>` followed by an answer, else 0.0.

    >>> format_reward("", "<think>2 + 2 = 4</think> <answer>4</answer>")
    1.0
    >>> format_reward("", "4")
    0.0
    """
    return 1.0 if _TAGGED.fullmatch(completion.strip()) else 0.0
