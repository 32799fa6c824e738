"""Tools: schemas from signatures, the built-in calculator and Python executor, call parsing,
and misbehaving tools turned into error observations within their limits."""

import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlhf.envs import HermesCalls, TagCalls, ToolCall, ToolRunner, tool_schemas
from rlhf.envs.builtin_tools import calculator, python
from rlhf.envs.tools import ToolSchemaError

import slow_tools  # noqa: E402  (tests/envs is on sys.path under pytest)


def test_schema_comes_from_signature_and_docstring():
    (schema,) = tool_schemas([calculator])
    assert schema["function"]["name"] == "calculator"
    assert schema["function"]["parameters"]["required"] == ["expression"]
    assert "e.g. 372*45" in schema["function"]["parameters"]["properties"]["expression"]["description"]


def test_a_tool_without_argument_docs_is_refused():
    def undocumented(x: int) -> int:
        return x
    with pytest.raises(ToolSchemaError, match="module-level"):
        tool_schemas([undocumented])
    with pytest.raises(ToolSchemaError, match="Args"):
        tool_schemas([slow_tools.undocumented])


@pytest.mark.parametrize("expr,want", [("372*45", "16740"), ("(2+3)/4", "1.25"), ("-7//2", "-4"), ("2**10", "1024"),
                                       ("10/2", "5"), ("37 × 45", "1665")])
def test_calculator(expr, want):
    assert calculator(expr) == want


@pytest.mark.parametrize("expr", ["__import__('os').system('true')", "open('x')", "9**10**9", "a+1", "[1]*3"])
def test_calculator_refuses_what_is_not_arithmetic(expr):
    with pytest.raises(ValueError):
        calculator(expr)


def test_python_executor_runs_code_and_limits_it():
    assert python("print(6*7)") == "42"
    assert "ZeroDivisionError" in python("1/0")
    assert "network access is disabled" in python("import socket; socket.create_connection(('127.0.0.1', 80))")
    t0 = time.monotonic()
    spin = python("while True: pass")  # the wall-clock limit, or the CPU limit first on an idle machine
    assert "did not finish within 5 s" in spin or "exit code -9" in spin
    assert time.monotonic() - t0 < 8
    assert "MemoryError" in python("x = bytearray(2 * 1024 ** 3)")


def test_call_formats():
    hermes = HermesCalls().parse('ok <tool_call>{"name": "calculator", "arguments": {"expression": "1+1"}}</tool_call>'
                                 '<tool_call>{"name": "python", "arguments": "{\\"code\\": \\"print(1)\\"}"}</tool_call>'
                                 "<tool_call>not json</tool_call>")
    assert [(c.name, c.arguments) for c in hermes[:2]] == [("calculator", {"expression": "1+1"}),
                                                           ("python", {"code": "print(1)"})]
    assert hermes[2].error.startswith("could not read the tool call")
    assert TagCalls("calc", "calculator", "expression").parse("<calc> 37*45 </calc> and <calc>1+1</calc>") == [
        ToolCall("calculator", {"expression": "37*45"}), ToolCall("calculator", {"expression": "1+1"})]
    assert HermesCalls().parse("no call here") == []


def test_misbehaving_tools_become_error_observations_within_their_limit():
    runner = ToolRunner([slow_tools.sleepy, slow_tools.crash, slow_tools.boom, slow_tools.unprintable,
                         slow_tools.hog, calculator], timeout_s=3.0, memory_mb=256)
    assert runner.call(ToolCall("calculator", {"expression": "372*45"})).text == "16740"
    t0 = time.monotonic()
    hung = runner.call(ToolCall("sleepy", {"seconds": 60}))
    assert not hung.ok and "did not answer within 3 s" in hung.text and time.monotonic() - t0 < 6
    crashed = runner.call(ToolCall("crash", {"code": 3}))
    assert not crashed.ok and "crashed (exit code 3)" in crashed.text
    raised = runner.call(ToolCall("boom", {"message": "kaput"}))
    assert not raised.ok and raised.text == "error: RuntimeError: kaput"
    assert "cannot print me" in runner.call(ToolCall("unprintable", {"x": 1})).text
    assert "MemoryError" in runner.call(ToolCall("hog", {"megabytes": 1024})).text
    assert "no tool named 'nope'" in runner.call(ToolCall("nope", {})).text
    assert "unexpected keyword argument 'wrong'" in runner.call(ToolCall("calculator", {"wrong": "1"})).text
    assert runner.call(ToolCall("sleepy", {"seconds": 0})).text == "slept 0"  # still serving


MAIN_SCRIPT = '''
import os, sys
with open(sys.argv[1], "a") as f:  # one line each time this script's top level runs
    f.write(f"{os.getpid()}\\n")

from rlhf.envs import ToolCall, ToolRunner
from rlhf.envs.builtin_tools import calculator


def shout(text: str) -> str:
    """Upper-case the text.

    Args:
        text: what to shout
    """
    return text.upper()


if __name__ == "__main__":
    runner = ToolRunner([calculator, shout])
    print(runner.call(ToolCall("calculator", {"expression": "372*45"})).text)
    print(runner.call(ToolCall("calculator", {"expression": "6*7"})).text)
    print(runner.call(ToolCall("shout", {"text": "hi"})).text)
'''


def test_tool_children_do_not_run_the_callers_main_script_again(tmp_path):
    """A Ray worker's main script imports Ray: re-running it in every tool child cost about a
    second a call. The children skip it, and a tool defined in the script itself still runs."""
    script, runs = tmp_path / "main_with_tools.py", tmp_path / "runs.txt"
    script.write_text(MAIN_SCRIPT)
    repo = str(Path(__file__).resolve().parents[2])  # where `rlhf` is, wherever pytest runs from
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([repo, os.environ.get("PYTHONPATH", "")]))
    out = subprocess.run([sys.executable, str(script), str(runs)], capture_output=True, text=True, env=env,
                         timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["16740", "42", "HI"]
    pids = runs.read_text().split()
    # the script's own run, and the one child that loads it to find `shout`; not one per call
    assert len(pids) == 2 and pids[0] != pids[1], pids
