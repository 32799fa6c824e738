"""What the generator asks of an engine, and how it asks for samples."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from rlhf.batch import Completion


@dataclass
class SamplingSettings:
    n: int = 1
    temperature: float = 1.0  # 0 = greedy
    top_p: float = 1.0
    max_new_tokens: int = 16
    seed: int = 0
    ignore_eos: bool = False  # fixed-length responses (benchmarks)
    logprobs: bool = True  # per-token log-probs of the sampling distribution (False: `Completion.logprobs` is None)


class Engine(Protocol):
    """Sampling, scoring and in-place weight loads; the last five serve the bucketed
    transports of `rlhf.sync` (their engine side)."""

    def generate(self, prompt_ids: list[list[int]], s: SamplingSettings) -> list[Completion]:
        """`s.n` completions per prompt, prompt-major, with the sampling distribution's log-probs
        (if `s.logprobs`)."""

    def logprobs(self, batch: dict, temperature: float) -> torch.Tensor:
        """Log-probs [B, R] of the batch's response tokens."""

    def load_weights(self, named_tensors: dict) -> None:
        """Every weight, by Hugging Face name, copied into the live model."""

    def sleep(self) -> None:
        """Release what the engine can while the trainer needs the device (colocated)."""

    def wake_up(self) -> None:
        ...

    def num_workers(self) -> int:
        """Processes that hold weights: each one joins the broadcast group."""

    def device_uuids(self) -> list[str]:
        """The GPU of each worker (empty on CPU)."""

    def join_weight_group(self, addr: str, port: int, first_rank: int, world_size: int, backend: str,
                          plan: list) -> None:
        ...

    def receive_weights(self) -> None:
        ...

    def load_ipc_bucket(self, key: str, source, reset_cache: bool = True) -> dict:
        """Load shared source `key` in place from a colocated trainer's memory (`source`, an
        `rlhf.sync.ipc.SharedSource`, comes with the first load only); reset cached state (vLLM's
        prefix cache) if `reset_cache`. Returns seconds by part (`model_load_s`, ...), or
        {"unopened": 1} for a key this engine was never sent."""
