"""Rule-reward role: `RewardRunner`s (isolated worker processes) inside a Ray CPU actor.
Several actors spread a large batch; the driver combines their scores and metrics."""

from __future__ import annotations

import os
from typing import Optional


class RewardWorker:
    """Scores with the training rewards (`split="train"`) or the held-out metric (`"eval"`)."""

    def __init__(self, fns: list[str], weights: Optional[list[float]], eval_fns: list[str], default: float,
                 timeout_s: float, processes: int, working_dir: Optional[str] = None):
        if working_dir:  # file-based reward specs are relative to the driver's directory
            os.chdir(working_dir)
        from rlhf.reward import RewardRunner

        self.runners = {
            "train": RewardRunner(list(fns), weights, default=default, timeout_s=timeout_s, num_workers=processes),
            "eval": RewardRunner(list(eval_fns), None, default=default, timeout_s=timeout_s, num_workers=processes),
        }

    def score(self, prompts: list[str], completions: list[str], columns: dict, response_lengths: list[int],
              truncated: list[bool], split: str = "train") -> tuple[list[float], dict]:
        return self.runners[split].score(prompts, completions, columns, response_lengths, truncated)
