"""Prompt sets for RL: rows from a file or a built-in task, tokenized with the chat template."""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Callable, Optional

from rlhf.data.files import DataError, read_rows, require_columns
from rlhf.data.synthetic import task_rows


@dataclass
class PromptSet:
    """Prompt token ids and the row columns rewards receive, in a fixed order."""

    prompt_ids: list[list[int]]
    prompts: list[str]  # the chat-formatted prompt text, as the policy sees it
    columns: dict[str, list]  # every other column of the rows (e.g. answer), for rewards
    raw: Optional[list] = None  # the prompt column as the data holds it (an environment starts from it)

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def select(self, idx: list[int]) -> "PromptSet":
        return PromptSet([self.prompt_ids[i] for i in idx], [self.prompts[i] for i in idx],
                         {k: [v[i] for i in idx] for k, v in self.columns.items()},
                         [self.raw[i] for i in idx] if self.raw is not None else None)

    def rows(self) -> list[dict]:
        """The dataset rows: `prompt` (the prompt column) and every other column."""
        raw = self.raw if self.raw is not None else self.prompts
        return [{"prompt": raw[i]} | {k: v[i] for k, v in self.columns.items()} for i in range(len(self))]


def load_rows(cfg, split: str, builtin: Optional[Callable] = None) -> tuple[list[dict], str]:
    """Rows of `data.train` / `data.eval`, or when empty of the built-in task: `builtin(split,
    seed)` (an environment's own task) or else `data.task`'s."""
    path = cfg.train if split == "train" else cfg.eval
    if path:
        rows = read_rows(path)
        require_columns(rows, [cfg.prompt_key], path)
        return rows, path
    if builtin is not None:
        return builtin(split, cfg.seed), f"the environment's built-in task ({split})"
    return task_rows(cfg.task, split, cfg.seed), f"built-in task '{cfg.task}' ({split})"


def build_prompt_set(rows: list[dict], tokenizer, cfg, source: str, first_messages: Optional[Callable] = None,
                     tools: Optional[list] = None) -> PromptSet:
    """`first_messages(row)`: an environment's start of an episode (default: the prompt
    column); `tools`: JSON schemas the chat template shows the model."""
    texts, ids = [], []
    for i, row in enumerate(rows):
        messages = first_messages(row | {"prompt": row[cfg.prompt_key]}) if first_messages else row[cfg.prompt_key]
        text = _chat_text(messages, tokenizer, tools)
        toks = tokenizer(text, add_special_tokens=False)["input_ids"]
        if len(toks) > cfg.max_prompt_len:
            raise DataError(f"{source}: row {i + 1}: prompt has {len(toks)} tokens > data.max_prompt_len="
                            f"{cfg.max_prompt_len}")
        texts.append(text)
        ids.append(toks)
    names = dict.fromkeys(k for row in rows for k in row if k != cfg.prompt_key)  # every row's, in order
    columns = {k: [row.get(k) for row in rows] for k in names}
    if cfg.answer_key != "answer" and cfg.answer_key in columns:
        columns["answer"] = columns[cfg.answer_key]  # rewards read the gold as `answer`
    return PromptSet(ids, texts, columns, [row[cfg.prompt_key] for row in rows])


def _chat_text(prompt, tokenizer, tools: Optional[list] = None) -> str:
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
    extra = {"tools": tools} if tools else {}  # a template without tools would still be handed `tools=None`
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True, **extra)


class PromptSampler:
    """Endless seeded shuffled passes over a prompt set; `state`/`load_state` give the position."""

    def __init__(self, size: int, seed: int):
        self.size, self.seed, self.epoch, self.pos = size, seed, 0, 0
        self._order = self._shuffle()

    def _shuffle(self) -> list[int]:
        order = list(range(self.size))
        random.Random(self.seed * 100_003 + self.epoch).shuffle(order)
        return order

    def next(self, k: int) -> list[int]:
        out = []
        while len(out) < k:
            if self.pos == self.size:
                self.epoch, self.pos = self.epoch + 1, 0
                self._order = self._shuffle()
            take = min(k - len(out), self.size - self.pos)
            out += self._order[self.pos:self.pos + take]
            self.pos += take
        return out

    def state(self) -> dict:
        return {"epoch": self.epoch, "pos": self.pos}

    def load_state(self, state: dict) -> None:
        self.epoch, self.pos = state["epoch"], state["pos"]
        self._order = self._shuffle()
