"""Run directory, JSONL metrics, the accuracy/reward plot and summary.json."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any


def make_run_dir(output_dir: str, name: str | None, recipe: str) -> Path:
    run = Path(output_dir) / (name or f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}")
    run.mkdir(parents=True, exist_ok=True)
    return run.resolve()


class Tracker:
    """Appends one JSON object per event to `metrics.jsonl` (flushed, so a crash loses nothing)."""

    def __init__(self, run_dir: Path, config: dict):
        self.run_dir = run_dir
        (run_dir / "config.json").write_text(json.dumps(config, indent=2))
        self._fh = open(run_dir / "metrics.jsonl", "a", buffering=1)
        self.history: list[dict] = []

    def log(self, record: dict[str, Any]) -> None:
        record = {k: (float(v) if hasattr(v, "__float__") and not isinstance(v, (int, str)) else v)
                  for k, v in record.items()}
        self.history.append(record)
        self._fh.write(json.dumps(record) + "\n")

    def plot(self, filename: str = "curves.png") -> Path:
        """Held-out accuracy and mean training reward per step."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        train = [r for r in self.history if "reward/mean" in r]
        evals = [r for r in self.history if "eval/accuracy" in r]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r["step"] for r in evals], [r["eval/accuracy"] for r in evals], "o-", label="held-out accuracy")
        ax.plot([r["step"] for r in train], [r["reward/mean"] for r in train], ".-", alpha=0.7, label="mean reward")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend()
        fig.tight_layout()
        path = self.run_dir / filename
        fig.savefig(path, dpi=100)
        plt.close(fig)
        return path

    def write_summary(self, summary: dict) -> Path:
        path = self.run_dir / "summary.json"
        path.write_text(json.dumps(summary, indent=2))
        return path

    def close(self) -> None:
        self._fh.close()
