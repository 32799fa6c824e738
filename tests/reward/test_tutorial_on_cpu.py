"""Follows docs/rewards.md literally: writes its file, runs its command, checks its metric."""

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

DOC = Path(__file__).resolve().parents[2] / "docs" / "rewards.md"


def _blocks(lang: str) -> list[str]:
    return re.findall(rf"```{lang}\n(.*?)```", DOC.read_text(), re.DOTALL)


@pytest.mark.slow
@pytest.mark.timeout(600)
def test_tutorial_runs_as_written(tmp_path):
    code = _blocks("python")[0]
    assert code.startswith("# my_rewards.py")
    (tmp_path / "my_rewards.py").write_text(code)
    (command,) = [b.strip() for b in _blocks("bash") if "rlhf.recipes.dapo" in b]
    args = shlex.split(command)
    assert args[:3] == ["python", "-m", "rlhf.recipes.dapo"]
    env = dict(os.environ, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER="0",
               RLHF_CACHE=os.environ.get("RLHF_CACHE", str(tmp_path / "cache")),
               PYTHONPATH=str(DOC.parents[1]))
    proc = subprocess.run([sys.executable] + args[1:] + ["run.progress=false"], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=580)
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(l) for l in (tmp_path / "runs" / "concise" / "metrics.jsonl").read_text().splitlines()]
    steps = [r for r in records if "reward/mean" in r]
    assert len(steps) == 2
    for r in steps:
        assert 0.0 <= r["reward/concise/mean"] <= 1.0 and r["reward/concise/failures"] == 0
        assert r["reward/concise/tokens"] > 0 and "reward/math_verify/mean" in r
