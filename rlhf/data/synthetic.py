"""Built-in synthetic tasks with verifiable answers, for runs without data or internet.

`addition`: "What is 37 + 45?" -> "\\boxed{82}". Every pair of two-digit numbers is one
row; a fixed, seeded 10% of pairs is held out, so the held-out split is never trained on.
"""

from __future__ import annotations

import random


def addition_rows(split: str, seed: int = 0) -> list[dict]:
    """Rows with `prompt` (user text), `answer` (gold number) and `response` (a worked answer)."""
    pairs = [(a, b) for a in range(10, 100) for b in range(10, 100)]
    random.Random(seed).shuffle(pairs)
    cut = len(pairs) // 10
    chosen = pairs[:cut] if split == "eval" else pairs[cut:]
    return [
        {"prompt": f"What is {a} + {b}?", "answer": str(a + b), "response": f"\\boxed{{{a + b}}}"}
        for a, b in chosen
    ]


TASKS = {"addition": addition_rows}


def task_rows(task: str, split: str, seed: int = 0) -> list[dict]:
    if task not in TASKS:
        raise ValueError(f"data.task={task!r} is not a built-in task; valid: {', '.join(TASKS)}")
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    return TASKS[task](split, seed)
