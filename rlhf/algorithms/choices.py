"""One check for every mode string (aggregation modes, KL kinds, loss types, IS levels), so
that every error reads the same and lists the valid values."""

from __future__ import annotations

from typing import Iterable


def check_choice(what: str, value, valid: Iterable) -> None:
    """Raise ValueError unless `value` is one of `valid`."""
    valid = tuple(valid)
    if value not in valid:
        raise ValueError(f"unknown {what} {value!r}; valid: {', '.join(map(str, valid))}")
