"""Built-in synthetic tasks with verifiable answers, for runs without data or internet.

`addition`: "What is 37 + 45?" -> "7+5=12 3+4+1=8 \\boxed{82}" (units, then tens with the
carry, then the boxed sum). Every pair of two-digit numbers is one row; a fixed, seeded 10%
of pairs is held out, so the held-out split is never trained on.

`carry_addition` (the DAPO recipe's default): the same problems, but three in four of them carry
(every carrying pair is kept, enough others are dropped at random), so there are more mistakes
for RL to fix: the gain it can show is larger, and holds on any machine.

The `response` column (what a warm start imitates) is written by a sloppy student: in
`CARRY_SLIP` of the problems whose units carry, it forgets the carry ("3+4=7", so 72). A
model fitted to it learns a systematic reasoning error, as a pretrained model brings its
habits, which the verifiable reward (`answer` is always right) lets RL correct.
"""

from __future__ import annotations

import random


CARRY_SLIP = 0.6
CARRY_SHARE = 0.75  # carry_addition: the share of problems whose units carry


def carries(a: int, b: int) -> bool:
    return a % 10 + b % 10 >= 10


def addition_rows(split: str, seed: int = 0, carry_share: float | None = None) -> list[dict]:
    """Rows with `prompt` (user text), `answer` (gold sum) and `response` (the student's answer).
    With `carry_share`, non-carrying pairs are dropped at random until that share of the split carries."""
    rng = random.Random(seed)
    pairs = [(a, b) for a in range(10, 100) for b in range(10, 100)]
    rng.shuffle(pairs)
    cut = len(pairs) // 10  # the held-out split is cut before any subsampling: never trained on
    chosen = pairs[:cut] if split == "eval" else pairs[cut:]
    if carry_share is not None:
        n_carry = sum(carries(a, b) for a, b in chosen)
        keep = round(n_carry * (1 - carry_share) / carry_share)  # non-carrying pairs to keep
        chosen = [p for p in chosen if carries(*p) or (keep := keep - 1) >= 0]
    rows = []
    for a, b in chosen:
        rows.append({"prompt": f"What is {a} + {b}?", "answer": str(a + b),
                     "response": _worked_sum(a, b, slip=rng.random() < CARRY_SLIP)})
    return rows


def _worked_sum(a: int, b: int, slip: bool) -> str:
    units = a % 10 + b % 10
    carry = units // 10 if not slip else 0
    tens = a // 10 + b // 10 + carry
    plus = "+1" if carry else ""
    return f"{a % 10}+{b % 10}={units} {a // 10}+{b // 10}{plus}={tens} \\boxed{{{tens * 10 + units % 10}}}"


def addition_preference_rows(split: str, seed: int = 0) -> list[dict]:
    """Preference pairs over the same split: `chosen` is the correct worked sum, `rejected` the
    student's carry mistake -- the carry forgotten where the units carry, a carry added where
    they do not ("5+3=8 2+4+1=7 \\boxed{78}"). Judging a pair means checking the carry."""
    rows = []
    for row in addition_rows(split, seed):
        a, b = map(int, row["prompt"][len("What is "):-1].split(" + "))
        rows.append({"prompt": row["prompt"], "answer": row["answer"], "chosen": _worked_sum(a, b, slip=False),
                     "rejected": _wrong_carry(a, b)})
    return rows


def _wrong_carry(a: int, b: int) -> str:
    units = a % 10 + b % 10
    if units >= 10:
        return _worked_sum(a, b, slip=True)
    tens = a // 10 + b // 10 + 1
    return f"{a % 10}+{b % 10}={units} {a // 10}+{b // 10}+1={tens} \\boxed{{{tens * 10 + units}}}"


def carry_addition_rows(split: str, seed: int = 0) -> list[dict]:
    return addition_rows(split, seed, carry_share=CARRY_SHARE)


TASKS = {"addition": addition_rows, "carry_addition": carry_addition_rows}
PREFERENCE_TASKS = {"addition": addition_preference_rows}


def task_rows(task: str, split: str, seed: int = 0, preferences: bool = False) -> list[dict]:
    tasks = PREFERENCE_TASKS if preferences else TASKS
    if task not in tasks:
        raise ValueError(f"data.task={task!r} is not a built-in task; valid: {', '.join(tasks)}")
    if split not in ("train", "eval"):
        raise ValueError(f"split must be 'train' or 'eval', got {split!r}")
    return tasks[task](split, seed)
