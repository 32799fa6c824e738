"""Prompt sets for RL: rows from a file or a built-in task, tokenized with the chat template."""

from __future__ import annotations

import random
from dataclasses import dataclass

from rlhf.data.files import DataError, read_rows, require_columns
from rlhf.data.synthetic import task_rows


@dataclass
class PromptSet:
    """Prompt token ids and the row columns rewards receive, in a fixed order."""

    prompt_ids: list[list[int]]
    prompts: list[str]  # the chat-formatted prompt text, as the policy sees it
    columns: dict[str, list]  # every other column of the rows (e.g. answer), for rewards

    def __len__(self) -> int:
        return len(self.prompt_ids)

    def select(self, idx: list[int]) -> "PromptSet":
        return PromptSet([self.prompt_ids[i] for i in idx], [self.prompts[i] for i in idx],
                         {k: [v[i] for i in idx] for k, v in self.columns.items()})


def load_rows(cfg, split: str) -> tuple[list[dict], str]:
    """Rows of `data.train` / `data.eval`, or of the built-in task when empty."""
    path = cfg.train if split == "train" else cfg.eval
    if path:
        rows = read_rows(path)
        require_columns(rows, [cfg.prompt_key], path)
        return rows, path
    return task_rows(cfg.task, split, cfg.seed), f"built-in task '{cfg.task}' ({split})"


def build_prompt_set(rows: list[dict], tokenizer, cfg, source: str) -> PromptSet:
    texts, ids = [], []
    for i, row in enumerate(rows):
        text = _chat_text(row[cfg.prompt_key], tokenizer)
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
    return PromptSet(ids, texts, columns)


def _chat_text(prompt, tokenizer) -> str:
    messages = prompt if isinstance(prompt, list) else [{"role": "user", "content": str(prompt)}]
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


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
