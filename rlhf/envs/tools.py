"""Tools: plain Python functions the model calls by name. The JSON schema the chat template
shows the model comes from the signature and docstring (transformers' `get_json_schema`, the
form `apply_chat_template(..., tools=[...])` takes), so a tool is five lines:

    def calculator(expression: str) -> str:
        \"\"\"Evaluate arithmetic.

        Args:
            expression: e.g. 37*45
        \"\"\"

Every call runs in a child process of its own, forked from a fork server that holds the tool
modules but not the caller's main script (`rlhf.envs.tool_forkserver`), under a wall time limit
and an address-space limit: a tool that raises, hangs, crashes or returns something that cannot
be printed costs that call an error message for the model, never the run, and never another
episode's call.
"""

from __future__ import annotations

import importlib
import importlib.util
import json
import multiprocessing
import resource
import runpy
import sys
import types
from dataclasses import dataclass
from typing import Callable

MAX_RESULT_CHARS = 2000  # a tool's answer is cut here (the episode's token budget is the real bound)


class ToolSchemaError(ValueError):
    """A tool whose schema cannot be built from its signature and docstring."""


def tool_schema(fn: Callable) -> dict:
    """The function's JSON schema as chat templates take it (`{"type": "function", ...}`)."""
    from transformers.utils import get_json_schema

    try:
        return get_json_schema(fn)
    except Exception as e:  # noqa: BLE001  (transformers raises its own TypeError subclasses)
        raise ToolSchemaError(f"tool {getattr(fn, '__name__', fn)!r}: {e} (a tool needs type hints and a "
                              "Google-style docstring with an Args: section describing each parameter)") from None


def tool_schemas(tools) -> list[dict]:
    for fn in tools:
        if "<locals>" in getattr(fn, "__qualname__", "<locals>") or getattr(fn, "__name__", "") == "<lambda>":
            raise ToolSchemaError(f"tool {fn!r} must be a module-level function (it runs in a child process, "
                                  "which finds it by module and name)")
    return [tool_schema(fn) for fn in tools]


@dataclass
class ToolCall:
    name: str
    arguments: dict
    error: str = ""  # set when the call itself could not be parsed


@dataclass
class ToolResult:
    text: str
    ok: bool


def error_text(message: str) -> str:
    return f"error: {message}"


# ---- the child process -------------------------------------------------------------------

def _locate(fn: Callable) -> tuple[str, str, str]:
    module = sys.modules.get(fn.__module__)
    return fn.__module__, getattr(module, "__file__", "") or "", fn.__qualname__


def _find(module_name: str, file: str, qualname: str) -> Callable:
    if module_name == "__main__":  # a tool of the parent's main script (the child does not run it)
        module = types.SimpleNamespace(**runpy.run_path(file, run_name="__mp_main__"))
    elif module_name in sys.modules:
        module = sys.modules[module_name]
    else:
        try:
            module = importlib.import_module(module_name)
        except ImportError:  # a module loaded from a file path (`path/file.py:Class`)
            spec = importlib.util.spec_from_file_location(module_name, file)
            module = importlib.util.module_from_spec(spec)
            sys.modules[module_name] = module
            spec.loader.exec_module(module)
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj


def _printable(value) -> str:
    text = value if isinstance(value, str) else json.dumps(value) if isinstance(value, (dict, list)) else str(value)
    text.encode("utf-8")  # lone surrogates cannot reach the tokenizer
    return text[:MAX_RESULT_CHARS]


def _child(where: tuple, arguments: dict, memory_mb: int, conn) -> None:
    if memory_mb > 0:
        limit = memory_mb * 2 ** 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    try:
        conn.send((True, _printable(_find(*where)(**arguments))))
    except BaseException as e:  # noqa: BLE001  (the tool's failure is the model's observation)
        conn.send((False, f"{type(e).__name__}: {e}"[:MAX_RESULT_CHARS]))


def _context():
    ctx = multiprocessing.get_context("forkserver")
    ctx.set_forkserver_preload(["rlhf.envs.tool_forkserver", "rlhf.envs.tools", "rlhf.envs.builtin_tools"])
    return ctx


class ToolRunner:
    """Calls tools by name in child processes; `calls` and `errors` count what it did."""

    def __init__(self, tools, timeout_s: float = 10.0, memory_mb: int = 1024):
        self.tools = {fn.__name__: fn for fn in tools}
        self.timeout_s, self.memory_mb = timeout_s, memory_mb
        self._ctx = _context()

    def call(self, call: ToolCall) -> ToolResult:
        if call.error:
            return ToolResult(error_text(call.error), ok=False)
        fn = self.tools.get(call.name)
        if fn is None:
            return ToolResult(error_text(f"no tool named {call.name!r}; tools: {', '.join(self.tools)}"), ok=False)
        if not isinstance(call.arguments, dict):
            return ToolResult(error_text(f"arguments must be a JSON object, got {call.arguments!r}"), ok=False)
        receive, send = self._ctx.Pipe(duplex=False)
        child = self._ctx.Process(target=_child, args=(_locate(fn), call.arguments, self.memory_mb, send),
                                  daemon=True)
        child.start()
        send.close()
        try:
            if receive.poll(self.timeout_s):
                ok, text = receive.recv()
                return ToolResult(text if ok else error_text(text), ok=ok)
            if child.is_alive():
                return ToolResult(error_text(f"{call.name} did not answer within {self.timeout_s:g} s"), ok=False)
            child.join(1.0)
            return ToolResult(error_text(f"{call.name} crashed (exit code {child.exitcode})"), ok=False)
        except EOFError:  # the child died before it could answer
            child.join(1.0)
            return ToolResult(error_text(f"{call.name} crashed (exit code {child.exitcode})"), ok=False)
        finally:
            receive.close()
            if child.is_alive():
                child.kill()
            child.join(1.0)
