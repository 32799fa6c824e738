"""Reading a run directory's metrics.jsonl, for tests that compare two runs."""

import json
from pathlib import Path

NOISY = ("timing/", "throughput/", "sync/seconds", "eval/seconds")  # wall-clock figures differ run to run


def records(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def comparable(run_dir: Path) -> dict:
    """Step and eval records by (kind, step), without wall-clock figures."""
    out = {}
    for r in records(run_dir):
        kind = "train" if "reward/mean" in r else "eval" if "eval/accuracy" in r else None
        if kind:
            out[kind, r["step"]] = {k: v for k, v in r.items() if not k.startswith(NOISY)}
    return out
