"""Selecting a reward: a registered name, `package.module:function` or `path/file.py:function`."""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path

from rlhf.reward.registry import RewardFn, RewardSpecError, make_reward_fn, registered, registered_rewards


def load_reward(spec: str) -> RewardFn:
    import rlhf.reward.builtins  # noqa: F401  (registers the built-ins)

    spec = str(spec).strip()
    if ":" not in spec:
        found = registered(spec)
        if found is None:
            raise RewardSpecError(f"unknown reward {spec!r}; registered: {', '.join(registered_rewards())} "
                                  f"(or give package.module:function or path/file.py:function)")
        return found
    fn = load_object(spec, "reward", "function", RewardSpecError)
    name = getattr(fn, "__reward_name__", spec.rsplit(":", 1)[1])
    existing = registered(name)
    if existing is not None and existing.fn is fn:
        return existing
    return make_reward_fn(fn, name, getattr(fn, "__reward_batched__", False), spec,
                          getattr(fn, "__reward_needs_any__", ()))


def load_object(spec: str, kind: str, what: str, error: type) -> object:
    """The object a `package.module:name` or `path/file.py:name` spec names (shared by every
    extension point selected this way); failures raise `error` with a message naming `kind`."""
    target, attr = str(spec).strip().rsplit(":", 1)
    module = _load_file(target, spec, kind, error) if target.endswith(".py") else _import(target, spec, kind, error)
    if not hasattr(module, attr):
        names = sorted(n for n in dir(module) if not n.startswith("_") and callable(getattr(module, n)))
        raise error(f"{kind} {spec!r}: {target} has no {what} {attr!r} (it has: {', '.join(names)})")
    return getattr(module, attr)


def absolute_spec(spec: str) -> str:
    """The same spec with a file path made absolute (for worker processes elsewhere)."""
    if ":" in spec:
        target, attr = spec.rsplit(":", 1)
        if target.endswith(".py"):
            return f"{Path(target).expanduser().resolve()}:{attr}"
    return spec


def _import(module: str, spec: str, kind: str, error: type):
    try:
        return importlib.import_module(module)
    except ImportError as e:
        raise error(f"{kind} {spec!r}: cannot import module {module!r} ({e})") from None


def _load_file(path: str, spec: str, kind: str, error: type):
    p = Path(path).expanduser().resolve()
    if not p.is_file():
        raise error(f"{kind} {spec!r}: file not found: {p}")
    name = f"rlhf_user_{kind}_{abs(hash(str(p)))}"
    if name in sys.modules:
        return sys.modules[name]
    module_spec = importlib.util.spec_from_file_location(name, p)
    module = importlib.util.module_from_spec(module_spec)
    sys.modules[name] = module
    try:
        module_spec.loader.exec_module(module)
    except BaseException as e:  # noqa: BLE001  (SystemExit and KeyboardInterrupt at import too)
        del sys.modules[name]
        raise error(f"{kind} {spec!r}: importing {p} failed: {type(e).__name__}: {e}") from None
    return module


def _probe(spec: str, results) -> None:
    try:
        load_reward(spec)
        results.put(None)
    except RewardSpecError as e:
        results.put(str(e))


def probe_reward(spec: str, timeout_s: float = 120.0) -> None:
    """Loads a user reward (`module:fn`, `file.py:fn`) in a child process first, so that code that
    ends its process at import (`os._exit`, a crash) is reported by name instead of ending the
    run's driver without a word."""
    import multiprocessing
    import queue

    if ":" not in str(spec):
        return  # a registered name: already imported
    ctx = multiprocessing.get_context("spawn")
    results = ctx.Queue()
    child = ctx.Process(target=_probe, args=(absolute_spec(spec), results), daemon=True)
    child.start()
    child.join(timeout_s)
    if child.is_alive():
        child.kill()
        raise RewardSpecError(f"reward {spec!r}: importing it did not finish within {timeout_s:.0f} s")
    try:
        message = results.get(timeout=1.0)
    except queue.Empty:
        raise RewardSpecError(f"reward {spec!r}: importing it ended the process (exit code {child.exitcode}) "
                              "before it could report; a reward module must not exit at import") from None
    if message is not None:
        raise RewardSpecError(message)
