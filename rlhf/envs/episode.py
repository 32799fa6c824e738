"""One episode's token ids, assembled without ever re-tokenising: the model's sampled ids as
they came, then each observation rendered by the chat template for that turn alone and
appended as ids. The response part of a batch row is exactly this sequence:

    prompt ids | turn 1 (sampled)  | observation 1  | turn 2 (sampled) | ...
    loss_mask  | 1 1 1 ... 1 (EOS) | 0 0 0 ... 0    | 1 1 ... 1 (EOS)  |
    logprobs   | engine's          | 0 (none)       | engine's         |
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Optional

from rlhf.envs.interface import Environment

_BASE = [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]


class ObservationRenderer:
    """Token ids of observation messages as they follow a finished assistant turn: what the
    template writes after the assistant's end-of-turn token, the messages, and the next
    assistant header (the generation prompt)."""

    def __init__(self, tokenizer, end_of_turn_id: int):
        self.tokenizer = tokenizer
        eot = tokenizer.convert_ids_to_tokens(end_of_turn_id)
        self.base_text = tokenizer.apply_chat_template(_BASE, tokenize=False)
        if eot not in self.base_text:
            raise ValueError(f"the chat template does not end an assistant turn with {eot!r}, the token that "
                             "ends generation: observations cannot be placed after a turn")
        self.after_turn = self.base_text[self.base_text.rindex(eot) + len(eot):]  # e.g. "\n" in ChatML

    def ids(self, messages: list[dict]) -> list[int]:
        full = self.tokenizer.apply_chat_template(_BASE + list(messages), tokenize=False, add_generation_prompt=True)
        if not full.startswith(self.base_text):
            raise ValueError("the chat template renders earlier messages differently once observations follow; "
                             "observations cannot be appended as ids")
        text = self.after_turn + full[len(self.base_text):]
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]


@dataclass
class Episode:
    index: int  # position in the generation batch (prompt-major)
    prompt_ids: list[int]
    env: Environment
    budget: int  # response tokens at most (model and observation tokens together)
    token_ids: list[int] = field(default_factory=list)
    loss_mask: list[int] = field(default_factory=list)
    logprobs: Optional[list[float]] = field(default_factory=list)  # None: the engine gave none
    turns: int = 0
    tool_calls: int = 0
    tool_errors: int = 0
    done: bool = False
    finished: bool = False  # the environment ended it (False: cut by max_turns or the token budget)
    reward: Optional[float] = None
    info: dict = field(default_factory=dict)
    env_error: str = ""

    @property
    def context(self) -> list[int]:
        return self.prompt_ids + self.token_ids

    @property
    def room(self) -> int:
        return self.budget - len(self.token_ids)

    def add_turn(self, token_ids: list[int], logprobs: Optional[list[float]]) -> None:
        """A sampled turn; log-probs None when the engine was not asked for them (then the
        episode carries none)."""
        self.token_ids += token_ids
        if self.logprobs is not None and logprobs is not None:
            self.logprobs += logprobs
        else:
            self.logprobs = None
        self.loss_mask += [1] * len(token_ids)
        self.turns += 1

    def add_observation(self, token_ids: list[int]) -> None:
        self.token_ids += token_ids
        if self.logprobs is not None:
            self.logprobs += [0.0] * len(token_ids)
        self.loss_mask += [0] * len(token_ids)

    def end(self, finished: bool, reward: Optional[float] = None, info: Optional[dict] = None) -> None:
        self.done, self.finished, self.reward, self.info = True, finished, reward, dict(info or {})

    def completion(self):
        from rlhf.batch import Completion  # torch: not imported where tools run

        stats = {"turns": self.turns, "tool_calls": self.tool_calls, "tool_errors": self.tool_errors,
                 "reward": self.reward, "env_error": bool(self.env_error),
                 "info": {k: float(v) for k, v in self.info.items()
                          if isinstance(v, (int, float)) and not isinstance(v, bool)}}
        logprobs = list(self.logprobs) if self.logprobs is not None else None
        return Completion(list(self.token_ids), logprobs, self.finished, loss_mask=list(self.loss_mask),
                          episode=stats)


def episode_metrics(completions: list, prefix: str = "") -> dict:
    """tools/calls (per episode), tools/errors (count), tools/use_rate (episodes with a call),
    episode/turns_mean, env/<info> means; empty for single-turn completions."""
    eps = [c.episode for c in completions if c.episode is not None]
    if not eps:
        return {}
    n = len(eps)
    out = {"tools/calls": sum(e["tool_calls"] for e in eps) / n,
           "tools/errors": float(sum(e["tool_errors"] for e in eps)),
           "tools/use_rate": sum(e["tool_calls"] > 0 for e in eps) / n,
           "episode/turns_mean": sum(e["turns"] for e in eps) / n,
           "env/step_errors": float(sum(e["env_error"] for e in eps))}
    keys = {k for e in eps for k in e["info"]}
    for k in sorted(keys):
        vals = [e["info"][k] for e in eps if k in e["info"]]
        out[f"env/{k}"] = sum(vals) / len(vals)
    return {prefix + k: v for k, v in out.items()}
