"""`math_verify`: extract the final answer and check it against the gold with math-verify."""

from __future__ import annotations

import logging
import re
from typing import Optional

# Imported with the built-ins (a reward worker loads them before its first call), not inside
# the first call, whose time limit would otherwise include sympy's import.
from math_verify import parse, verify

from rlhf.reward.registry import reward

_NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:/\d+)?")
_ANSWER_IS = re.compile(r"answer is[:\s]*\$?([^\n$]+?)\$?\s*\.?\s*$", re.IGNORECASE | re.MULTILINE)


def last_boxed(text: str) -> Optional[str]:
    """Content of the last `\\boxed{...}` (or `\\fbox{...}`), nested braces included."""
    start = max(text.rfind("\\boxed{"), text.rfind("\\fbox{"))
    if start < 0:
        return None
    i = text.index("{", start) + 1
    depth, j = 1, i
    while j < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[j], 0)
        j += 1
    return text[i:j - 1].strip() if depth == 0 else None


def extract_answer(completion: str) -> Optional[str]:
    """The final answer: the last \\boxed{}, else "the answer is X", else the last number."""
    boxed = last_boxed(completion)
    if boxed:
        return boxed
    stated = _ANSWER_IS.findall(completion)
    if stated:
        return stated[-1].strip()
    numbers = _NUMBER.findall(completion)
    return numbers[-1] if numbers else None


def gold_answer(answer: Optional[str] = None, solution: Optional[str] = None) -> Optional[str]:
    """The gold from common dataset forms: GSM8K `... #### 72`, a MATH solution's \\boxed{},
    or a plain value."""
    for text in (answer, solution):
        if text is None:
            continue
        text = str(text)
        if "####" in text:
            return text.rsplit("####", 1)[1].strip()
        boxed = last_boxed(text)
        return boxed if boxed is not None else text.strip()
    return None


def _math(text: str) -> str:
    text = text.strip().strip("$").strip()
    if re.fullmatch(r"-?\d{1,3}(,\d{3})+(\.\d+)?", text):  # 1,000 -> 1000 (not a tuple)
        text = text.replace(",", "")
    return f"${text}$"


class _QuietTimeoutWarning(logging.Filter):
    """math-verify warns on every call that its own timeout is off; ours is in the runner."""

    def filter(self, record: logging.LogRecord) -> bool:
        return "Timeout is disabled" not in record.getMessage()


_quiet = _QuietTimeoutWarning()


@reward("math_verify", needs_any=("answer", "solution"))
def math_verify(prompt: str, completion: str, answer=None, solution=None, **_) -> dict:
    """1.0 when the completion's final answer equals the gold (`answer` or `solution` column)
    by math-verify's symbolic comparison. Its alarm-based timeouts are off (they only work
    on a main thread); the reward runner enforces the time limit instead."""
    for name in ("math_verify", "math_verify.parser", "math_verify.grader", "math_verify.utils"):
        logging.getLogger(name).addFilter(_quiet)
    gold = gold_answer(answer, solution)
    if gold is None:
        raise ValueError("math_verify needs an `answer` or `solution` column")
    pred = extract_answer(completion)
    if pred is None:
        return {"score": 0.0, "has_answer": 0.0}
    ok = verify(parse(_math(gold), parsing_timeout=None), parse(_math(pred), parsing_timeout=None),
                timeout_seconds=None)
    return {"score": 1.0 if ok else 0.0, "has_answer": 1.0}
