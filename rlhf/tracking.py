"""Run directory, JSONL metrics (and Weights & Biases when asked), the curves plot, summary.json."""

from __future__ import annotations

import json
import logging
import os
import time
from pathlib import Path
from typing import Any, Optional

log = logging.getLogger(__name__)


def make_run_dir(output_dir: str, name: str | None, recipe: str) -> Path:
    run = Path(output_dir) / (name or f"{recipe}-{time.strftime('%Y%m%d-%H%M%S')}")
    run.mkdir(parents=True, exist_ok=True)
    return run.resolve()


class Tracker:
    """Appends one JSON object per event to `metrics.jsonl` (line-buffered, so a crash loses
    nothing). `history` restores a resumed run's records: the file is rewritten to hold
    exactly them, dropping records written after the checkpoint."""

    def __init__(self, run_dir: Path, config: dict, history: Optional[list[dict]] = None,
                 wandb_project: Optional[str] = None, wandb_id: Optional[str] = None):
        self.run_dir = run_dir
        (run_dir / "config.json").write_text(json.dumps(config, indent=2))
        path = run_dir / "metrics.jsonl"
        self.history: list[dict] = list(history or [])
        if history is not None:
            tmp = path.with_suffix(".jsonl.tmp")
            tmp.write_text("".join(json.dumps(r) + "\n" for r in self.history))
            os.replace(tmp, path)
        self._fh = open(path, "a", buffering=1)
        self.wandb = _start_wandb(run_dir, config, wandb_project, wandb_id) if wandb_project else None

    @property
    def wandb_id(self) -> Optional[str]:
        return self.wandb.id if self.wandb else None

    def log(self, record: dict[str, Any]) -> None:
        record = {k: (float(v) if hasattr(v, "__float__") and not isinstance(v, (int, str)) else v)
                  for k, v in record.items()}
        self.history.append(record)
        self._fh.write(json.dumps(record) + "\n")
        if self.wandb is not None:
            numbers = {k: v for k, v in record.items() if isinstance(v, (int, float)) and k != "step"}
            self.wandb.log(numbers, step=int(record.get("step", 0)))

    def plot(self, keys: Optional[list[str]] = None, filename: str = "curves.png") -> Path:
        """Per step: the given evaluation `keys`, or for RL the held-out accuracy (and pass@k /
        avg@k when sampled) and the mean training reward."""
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        train = [r for r in self.history if "reward/mean" in r]
        evals = [r for r in self.history if any(k.startswith("eval/") for k in r)]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        keys = keys or ["eval/accuracy"] + sorted({k for r in evals for k in r if "@" in k})
        for key in keys:
            pts = [(r["step"], r[key]) for r in evals if key in r]
            if pts:
                ax.plot(*zip(*pts), "o-", label=key.replace("eval/accuracy", "held-out accuracy (greedy)"))
        if train:
            ax.plot([r["step"] for r in train], [r["reward/mean"] for r in train], ".-", alpha=0.7,
                    label="mean reward")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
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
        if self.wandb is not None:
            self.wandb.finish()


def _start_wandb(run_dir: Path, config: dict, project: str, run_id: Optional[str]):
    """Online when an API key is configured, else offline into `<run dir>/wandb` (sync it
    later with `wandb sync`); WANDB_MODE, when set, decides."""
    import wandb

    mode = os.environ.get("WANDB_MODE") or ("online" if os.environ.get("WANDB_API_KEY") else "offline")
    run = wandb.init(project=project, name=run_dir.name, config=config, dir=str(run_dir), mode=mode,
                     id=run_id, resume="allow" if run_id else None)
    log.info("wandb: %s run %s in %s", mode, run.id, run_dir / "wandb")
    return run


def run_summary(history: list[dict]) -> dict:
    """End-of-run figures from the metric history: evaluation before/after/best, reward,
    mean seconds per phase and their share of the step, throughput, restarts."""
    steps = [r for r in history if "reward/mean" in r]
    evals = [r for r in history if "eval/accuracy" in r]
    out: dict[str, Any] = {}
    if evals:
        out |= {"accuracy_before": evals[0]["eval/accuracy"], "accuracy_after": evals[-1]["eval/accuracy"],
                "accuracy_best": max(r["eval/accuracy"] for r in evals),
                "eval_final": {k: v for k, v in evals[-1].items() if k.startswith("eval/")}}
    if steps:
        mean = lambda key: sum(r.get(key, 0.0) for r in steps) / len(steps)  # noqa: E731
        step_s = mean("timing/step_s")
        phases = sorted({k for r in steps for k in r if k.startswith("timing/") and k != "timing/step_s"})
        out |= {"reward_first": steps[0]["reward/mean"], "reward_last": steps[-1]["reward/mean"],
                "step_seconds_mean": step_s,
                "phase_seconds_mean": {k[7:-2]: mean(k) for k in phases},
                "phase_share": {k[7:-2]: mean(k) / step_s for k in phases} if step_s else {},
                "response_tokens_per_s_mean": mean("throughput/response_tokens_per_s")}
    out["actor_restarts"] = sum(r.get("event") == "actor_restarted" for r in history)
    return out
