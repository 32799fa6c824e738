"""Tools that misbehave, for the tool runner's tests (module level: the runner's child process
finds a tool by module and name)."""

import os
import time


def sleepy(seconds: float) -> str:
    """Sleep, then answer.

    Args:
        seconds: how long to sleep
    """
    time.sleep(seconds)
    return f"slept {seconds}"


def crash(code: int) -> str:
    """End the process at once.

    Args:
        code: exit code
    """
    os._exit(code)


def boom(message: str) -> str:
    """Raise.

    Args:
        message: the error's text
    """
    raise RuntimeError(message)


class _Unprintable:
    def __str__(self):
        raise ValueError("cannot print me")


def unprintable(x: int):
    """Return an object whose str() raises.

    Args:
        x: ignored
    """
    return _Unprintable()


def hog(megabytes: int) -> str:
    """Allocate memory.

    Args:
        megabytes: how much
    """
    block = bytearray(megabytes * 2 ** 20)
    return str(len(block))


def undocumented(x: int) -> int:
    return x
