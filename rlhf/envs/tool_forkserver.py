"""Preloaded by the tools' fork server, and imported nowhere else: its children skip running
the parent's main module again.

multiprocessing prepares every child by re-running the parent's `__main__` (as `__mp_main__`).
A tool's child runs `rlhf.envs.tools._child`, which needs nothing from it, and in a Ray worker
that main imports Ray: about a second per tool call on two cores, instead of milliseconds. A
tool defined in a main script is still found (`rlhf.envs.tools._find` loads it from its file).
"""

from multiprocessing import spawn

_prepare = spawn.prepare
_MAIN_KEYS = ("init_main_from_path", "init_main_from_name")


def _prepare_without_main(data: dict) -> None:
    _prepare({k: v for k, v in data.items() if k not in _MAIN_KEYS})


spawn.prepare = _prepare_without_main  # this process is the fork server: its children inherit it
