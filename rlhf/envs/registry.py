"""The environment registry: `@environment("name")` makes an `Environment` subclass selectable
by `rollout.env=name`; `package.module:Class` and `path/file.py:Class` work without it (the
reward loader's resolution)."""

from __future__ import annotations

from typing import Optional

from rlhf.envs.interface import Environment

_REGISTRY: dict[str, type] = {}


class EnvSpecError(ValueError):
    """An environment that cannot be selected: unknown, unloadable or not an Environment."""


def environment(name: Optional[str] = None):
    """Register an `Environment` subclass under `name` (default: the class name)."""

    def wrap(cls):
        key = name or cls.__name__
        existing = _REGISTRY.get(key)
        if existing is not None and existing.__qualname__ != cls.__qualname__:
            raise EnvSpecError(f"environment name {key!r} is already registered by {existing.__module__}."
                               f"{existing.__qualname__}")
        _REGISTRY[key] = cls
        return cls

    return wrap


def registered_environments() -> list[str]:
    import rlhf.envs.builtins  # noqa: F401  (the built-ins are always listed)

    return sorted(_REGISTRY)


def load_environment(spec: str, key: str = "rollout.env") -> type:
    """The Environment subclass `spec` names; errors name the config `key`."""
    from rlhf.reward.loading import load_object

    import rlhf.envs.builtins  # noqa: F401

    spec = str(spec).strip()
    if ":" not in spec:
        if spec not in _REGISTRY:
            raise EnvSpecError(f"{key}={spec!r} is not a registered environment; registered: "
                               f"{', '.join(registered_environments())} (or give package.module:Class or "
                               "path/file.py:Class)")
        return _REGISTRY[spec]
    try:
        cls = load_object(spec, "environment", "class", EnvSpecError)
    except EnvSpecError as e:
        raise EnvSpecError(f"{key}: {e}") from None
    if not (isinstance(cls, type) and issubclass(cls, Environment)):
        raise EnvSpecError(f"{key}={spec!r} is {cls!r}, not a subclass of rlhf.envs.Environment")
    return cls


def env_task(cfg):
    """The environment's own task rows (`task_rows(split, seed)`) when `rollout.env` has one and
    `data.train` is empty, else None (the config's `data.task`); None for configs without rollouts."""
    rollout = getattr(cfg, "rollout", None)
    if rollout is None:
        return None
    return getattr(load_environment(rollout.env), "task_rows", None)
