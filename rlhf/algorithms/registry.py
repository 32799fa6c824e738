"""A name -> function registry: a name registered twice is an error, an unknown name lists the valid ones."""

from __future__ import annotations

from typing import Callable


class Registry(dict):
    def __init__(self, kind: str):
        super().__init__()
        self.kind = kind

    def register(self, name: str) -> Callable:
        def wrap(fn: Callable) -> Callable:
            if name in self:
                raise ValueError(f"{self.kind} {name!r} is already registered")
            self[name] = fn
            return fn
        return wrap

    def get(self, name: str) -> Callable:  # noqa: D401  (dict.get without a default: strict)
        if name not in self:
            raise ValueError(f"unknown {self.kind} {name!r}; valid: {', '.join(sorted(self))}")
        return self[name]
