"""Built-in tools: a calculator (arithmetic through `ast`, never `eval`) and a Python executor
(code in a fresh interpreter with time and memory limits and no network)."""

from __future__ import annotations

import ast
import operator
import os
import subprocess
import sys

_BINARY = {ast.Add: operator.add, ast.Sub: operator.sub, ast.Mult: operator.mul, ast.Div: operator.truediv,
           ast.FloorDiv: operator.floordiv, ast.Mod: operator.mod, ast.Pow: operator.pow}
_UNARY = {ast.UAdd: operator.pos, ast.USub: operator.neg}
MAX_EXPONENT = 100  # 9**10**9 would hang the tool for hours


def _value(node):
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        return node.value
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _value(node.left), _value(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > MAX_EXPONENT:
            raise ValueError(f"exponent {right} is too large (at most {MAX_EXPONENT})")
        return _BINARY[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _UNARY:
        return _UNARY[type(node.op)](_value(node.operand))
    raise ValueError(f"not arithmetic: {ast.unparse(node)!r}")


def calculator(expression: str) -> str:
    """Evaluate an arithmetic expression with + - * / // % ** and parentheses.

    Args:
        expression: the arithmetic to evaluate, e.g. 372*45
    """
    value = _value(ast.parse(expression.replace("×", "*").strip(), mode="eval").body)
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


_NO_NETWORK = """
import socket as _s
def _blocked(*a, **k):
    raise OSError("network access is disabled in this sandbox")
_s.socket = _s.create_connection = _s.getaddrinfo = _blocked
del _s, _blocked
"""


def _limits(memory_mb: int, cpu_s: int):
    import resource

    def apply():
        limit = memory_mb * 2 ** 20
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
        resource.setrlimit(resource.RLIMIT_CPU, (cpu_s, cpu_s))
        if os.getuid() != 0:  # no forks (root is exempt from this limit)
            resource.setrlimit(resource.RLIMIT_NPROC, (0, 0))
        os.setsid()
    return apply


def python(code: str) -> str:
    """Run Python code and return what it prints (stdout, then stderr).

    Args:
        code: a Python program; print the values you need
    """
    timeout_s, memory_mb = 5, 512
    env = {"PATH": os.environ.get("PATH", ""), "PYTHONIOENCODING": "utf-8", "no_proxy": "*",
           "http_proxy": "http://0.0.0.0:9", "https_proxy": "http://0.0.0.0:9"}
    try:
        done = subprocess.run([sys.executable, "-I", "-c", _NO_NETWORK + code], capture_output=True, text=True,
                              timeout=timeout_s, env=env, cwd="/tmp", stdin=subprocess.DEVNULL,
                              preexec_fn=_limits(memory_mb, timeout_s))
    except subprocess.TimeoutExpired:
        return f"error: the program did not finish within {timeout_s} s"
    out = done.stdout + (done.stderr if done.returncode else "")
    return out.strip() or f"(no output; exit code {done.returncode})"
