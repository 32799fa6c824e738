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


def _quiet_math_verify_logs() -> None:
    for name in ("math_verify", "math_verify.parser", "math_verify.grader", "math_verify.utils"):
        logging.getLogger(name).addFilter(_quiet)


def _score(pred: Optional[str], gold: str) -> float:
    if pred is None:
        return 0.0
    ok = verify(parse(_math(gold), parsing_timeout=None), parse(_math(pred), parsing_timeout=None),
                timeout_seconds=None)
    return 1.0 if ok else 0.0


def _judge(completion: str, answer, solution, strict: bool) -> dict:
    """The score and two rates to log: `has_answer` (an answer was found: the last \\boxed{} in
    strict mode, any of the lenient forms otherwise) and `format_rate` (the completion has the
    requested form, a non-empty last \\boxed{}, whichever mode scores it)."""
    _quiet_math_verify_logs()
    gold = gold_answer(answer, solution)
    if gold is None:
        raise ValueError("math_verify needs an `answer` or `solution` column")
    boxed = last_boxed(completion) or None  # an empty \boxed{} holds no answer
    pred = boxed if strict else extract_answer(completion)
    return {"score": _score(pred, gold), "has_answer": float(pred is not None), "format_rate": float(boxed is not None)}


@reward("math_verify", needs_any=("answer", "solution"))
def math_verify(prompt: str, completion: str, answer=None, solution=None, **_) -> dict:
    """1.0 when the completion's final answer (the last \\boxed{}, else "the answer is X", else the
    last number) equals the gold (`answer` or `solution` column) by math-verify's symbolic
    comparison. Its alarm-based timeouts are off (they only work on a main thread); the reward
    runner enforces the time limit instead."""
    return _judge(completion, answer, solution, strict=False)


@reward("math_verify_strict", needs_any=("answer", "solution"))
def math_verify_strict(prompt: str, completion: str, answer=None, solution=None, **_) -> dict:
    """As `math_verify`, but only the requested form counts: the last \\boxed{}. A completion
    without one scores 0 however right its last number or "the answer is X" is."""
    return _judge(completion, answer, solution, strict=True)
