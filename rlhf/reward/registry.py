"""The reward registry: `@reward("name")` makes a function selectable by name."""

from __future__ import annotations

import asyncio
import inspect
from dataclasses import dataclass, field
from typing import Callable, Optional

_REGISTRY: dict[str, "RewardFn"] = {}


class RewardSpecError(ValueError):
    """A reward that cannot be selected: unknown, unloadable or with the wrong signature."""


@dataclass
class RewardFn:
    name: str
    fn: Callable
    batched: bool = False
    is_async: bool = False
    accepts_any_kwargs: bool = True
    keyword_params: tuple = ()  # named keyword parameters (when **kwargs is absent)
    required_columns: tuple = field(default=())  # keyword parameters without a default
    needs_any: tuple = ()  # columns of which each row must have at least one (e.g. answer or solution)

    def missing_columns(self, row: dict) -> list[str]:
        """What this function needs that the row (dataset columns, None where absent) lacks."""
        missing = [c for c in self.required_columns if row.get(c) is None]
        if self.needs_any and all(row.get(c) is None for c in self.needs_any):
            missing.append(" or ".join(self.needs_any))
        return missing

    def call_kwargs(self, columns: dict) -> dict:
        """The dataset columns (and reserved keywords) this function accepts."""
        if self.accepts_any_kwargs:
            return columns
        return {k: v for k, v in columns.items() if k in self.keyword_params}

    def __call__(self, prompt, completion, **columns):
        out = self.fn(prompt, completion, **self.call_kwargs(columns))
        return asyncio.run(out) if self.is_async else out


def make_reward_fn(fn: Callable, name: str, batched: bool = False, spec: Optional[str] = None,
                   needs_any: tuple = ()) -> RewardFn:
    """Check the signature: two positional parameters (prompt(s), completion(s)), then keywords."""
    where = spec or name
    if not callable(fn):
        raise RewardSpecError(f"reward {where!r} is not callable (got {type(fn).__name__})")
    try:
        params = list(inspect.signature(fn).parameters.values())
    except (TypeError, ValueError) as e:
        raise RewardSpecError(f"reward {where!r}: cannot read its signature ({e})") from None
    positional = [p for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
    has_var_pos = any(p.kind == p.VAR_POSITIONAL for p in params)
    if len(positional) < 2 and not has_var_pos:
        expected = "(prompts: list[str], completions: list[str], **columns)" if batched else \
            "(prompt: str, completion: str, **columns)"
        raise RewardSpecError(f"reward {where!r} has signature {inspect.signature(fn)}; expected {expected}")
    extra_required = [p.name for p in positional[2:] if p.default is p.empty]
    keyword = tuple(p.name for p in params[2:] if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY))
    required = tuple(extra_required + [p.name for p in params if p.kind == p.KEYWORD_ONLY and p.default is p.empty])
    return RewardFn(name=name, fn=fn, batched=batched, is_async=inspect.iscoroutinefunction(fn),
                    accepts_any_kwargs=any(p.kind == p.VAR_KEYWORD for p in params), keyword_params=keyword,
                    required_columns=required, needs_any=tuple(needs_any))


def reward(name: Optional[str] = None, *, batched: bool = False, needs_any: tuple = ()):
    """Register a reward function under `name` (default: the function's name).

    A reward takes (prompt, completion, **columns) and returns a float, or a dict with
    `score` and extra numbers to log; `batched=True` takes and returns lists. Columns without
    a default are required in every row; `needs_any` names optional columns of which every
    row must hold at least one (checked when the data is loaded)."""

    def wrap(fn):
        key = name or fn.__name__
        existing = _REGISTRY.get(key)
        if existing is not None and existing.fn is not fn and _qualname(existing.fn) != _qualname(fn):
            raise RewardSpecError(f"reward name {key!r} is already registered by {_qualname(existing.fn)}; "
                                  f"cannot register {_qualname(fn)} under it")
        _REGISTRY[key] = make_reward_fn(fn, key, batched, needs_any=needs_any)
        fn.__reward_name__, fn.__reward_batched__, fn.__reward_needs_any__ = key, batched, tuple(needs_any)
        return fn

    return wrap


def _qualname(fn) -> str:
    return f"{getattr(fn, '__module__', '?')}.{getattr(fn, '__qualname__', fn)}"


def registered_rewards() -> list[str]:
    import rlhf.reward.builtins  # noqa: F401  (the built-ins are always listed)

    return sorted(_REGISTRY)


def registered(name: str) -> Optional[RewardFn]:
    return _REGISTRY.get(name)
