"""What an environment is: one instance per episode, started from a dataset row, then stepped
with each of the model's turns until it ends the episode.

    env = MyEnv()                      # a fresh instance per episode
    messages = env.start(row)          # the first messages (the prompt)
    step = env.step(Turn(text, ids))   # Observation(messages) -> the model takes another turn
                                       # End(reward, info)     -> the episode is over

`start` must give the same messages for the same row: the driver renders every row's prompt
from it once at load time (with the schemas of `tools`), and each episode calls it again to
begin. Rewards: the episode's text is scored by `reward.fns` (isolated, as for single-turn
runs); an `End.reward` other than None is added to that score.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional, Union

from rlhf.data.formats import as_messages


@dataclass
class Turn:
    """The model's turn as it was sampled: decoded text (special tokens dropped) and token ids."""

    text: str
    token_ids: list[int]
    index: int  # 0 for the first turn


@dataclass
class Observation:
    """Messages that answer the model's turn (e.g. `{"role": "tool", "content": "1665"}`)."""

    messages: list[dict]
    tool_calls: int = 0  # tool calls this step made (for tools/calls, tools/use_rate)
    tool_errors: int = 0  # of which failed (raised, timed out, crashed, unprintable result)


@dataclass
class End:
    """The episode is over. `reward` (None: none) is added to the reward functions' score;
    numeric `info` entries are logged as `env/<key>` means."""

    reward: Optional[float] = None
    info: dict = field(default_factory=dict)


StepResult = Union[Observation, End]


class Environment:
    """Base class. Subclass it, override `step` (and `start` when the first messages are not
    the row's prompt column), list the tool functions the model may call in `tools`."""

    tools: tuple[Callable, ...] = ()  # plain functions; their JSON schemas go into the prompt
    multi_turn: bool = True  # False: one turn, scored by the reward functions only

    def start(self, row: dict) -> list[dict]:
        """The first messages of an episode on `row` (the dataset row; `row["prompt"]` is the
        prompt column, text or a list of messages)."""
        return as_messages(row["prompt"])

    def step(self, turn: Turn) -> StepResult:
        raise NotImplementedError

    def close(self) -> None:
        """Called once when the episode ends (release sandboxes, files)."""


class SingleTurn(Environment):
    """The default: the prompt, one completion, scored by `reward.fns`."""

    multi_turn = False

    def step(self, turn: Turn) -> StepResult:
        return End()
